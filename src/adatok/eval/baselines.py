"""Classical codecs on the same images, on the same bits-per-pixel axis as the tokenizers.

* **thumbnail**: for a budget of ``n`` bytes an image, the largest square side ``s`` with
  ``3 * s * s <= n`` (raw uint8 RGB, no header: the side is known to both ends, as a token count
  is); the image is area-averaged down to ``s x s`` (Pillow's box filter), stored as uint8, and
  upsampled back with bicubic interpolation.
* **JPEG** (Pillow/libjpeg, 4:2:0, baseline) and **WebP** (Pillow/libwebp, lossy) at their lowest
  qualities, encoded in memory: the rate is each image's *actual* file size in bytes (headers
  included: Pillow's JPEG of a flat image is over 600 bytes of header and tables, more than a small
  tokenizer's whole code).

Every reconstruction is uint8 (8-bit rounding is built in) and scored like the tokenizers (PSNR,
SSIM, LPIPS when given; rFID / IS against the inputs' Inception statistics when an Inception or an
``InceptionReference`` is given) against the images as loaded. Images: float ``B x 3 x H x W`` in [0, 1].
"""

from __future__ import annotations

import io
import math
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import InputError
from .metrics import psnr, ssim
from .rate_distortion import LpipsFn, RDPoint, to_uint8
from .rd_inception import InceptionReference, PointInception, as_reference

__all__ = ["JPEG_QUALITIES", "WEBP_QUALITIES", "thumbnail_side", "thumbnail", "encode_jpeg", "encode_webp",
           "baseline_points"]

JPEG_QUALITIES = (1, 5, 10, 20, 40)
WEBP_QUALITIES = (0, 5, 10, 20, 40)


def thumbnail_side(budget_bytes: float) -> int:
    """Largest square side whose uint8 RGB pixels fit in ``budget_bytes`` (0 when not even 1 x 1)."""
    if not budget_bytes >= 0:
        raise InputError(f"budget_bytes must be a number >= 0, got {budget_bytes!r}")
    side = math.isqrt(int(budget_bytes) // 3)
    return side


def same_bytes_thumbnails(images: torch.Tensor, budgets_bytes: Sequence[float]) -> list:
    """For each byte budget, ``(side, PSNR)`` of the thumbnail baseline that fits it (``(0, None)`` below
    one pixel): ``baseline_points``' thumbnails, each side measured once, looked up per budget."""
    psnr_of_side = {int(round(math.sqrt(p.bytes_per_image[0] / 3))): p.psnr
                    for p in baseline_points(images, budgets_bytes, (), ())}
    return [(side, psnr_of_side.get(side)) for side in (thumbnail_side(b) for b in budgets_bytes)]


def thumbnail(image: np.ndarray, side: int) -> np.ndarray:
    """``H x W x 3`` uint8 -> the same size after an area downsample to ``side x side`` (uint8) and a
    bicubic upsample back."""
    h, w = image.shape[:2]
    small = Image.fromarray(image).resize((side, side), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.BICUBIC))


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """``H x W x 3`` uint8 -> JPEG file bytes (Pillow, in memory)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def encode_webp(image: np.ndarray, quality: int) -> bytes:
    """``H x W x 3`` uint8 -> lossy WebP file bytes (Pillow, in memory)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="WEBP", quality=int(quality), lossless=False)
    return buf.getvalue()


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _point(method, label, images, recon: np.ndarray, nbytes: Sequence[int], lpips,
           reference: Optional[InceptionReference] = None, batch_size: int = 8) -> RDPoint:
    rec = torch.from_numpy(np.ascontiguousarray(recon)).permute(0, 3, 1, 2).double() / 255
    ref = images.double().cpu()
    p = psnr(rec, ref)
    bits = float(np.mean(nbytes)) * 8
    lp = None
    if lpips is not None:
        lp = float(torch.as_tensor(lpips(rec.float(), ref.float())).double().mean())
    rfid = score = None
    if reference is not None:  # the uint8 reconstructions, streamed batch by batch
        acc = PointInception(reference)
        u8 = torch.from_numpy(np.ascontiguousarray(recon)).permute(0, 3, 1, 2)
        for i in range(0, len(u8), batch_size):
            acc.add(u8[i:i + batch_size])
        rfid, score = acc.result()
    return RDPoint(method=method, label=label, kind="baseline", tokens=None, bits=bits,
                   bpp=bits / (images.shape[-1] * images.shape[-2]), psnr=float(p.mean()),
                   ssim=float(ssim(rec, ref).mean()), lpips=lp, rfid=rfid, inception_score=score,
                   psnr_per_image=[float(v) for v in p], bytes_per_image=[int(n) for n in nbytes])


def baseline_points(images: torch.Tensor, budgets_bytes: Sequence[float] = (),
                    jpeg_qualities: Sequence[int] = JPEG_QUALITIES, webp_qualities: Sequence[int] = WEBP_QUALITIES,
                    lpips: Optional[LpipsFn] = None, inception=None, batch_size: int = 8) -> list:
    """Baseline points on ``images`` (B x 3 x H x W in [0, 1]): a thumbnail per byte budget (e.g.
    each tokenizer point's ``bits / 8``; budgets below 3 bytes, and repeated sides, are dropped), and
    JPEG / WebP at each quality with their actual bytes. ``inception``: the FID Inception or, to
    share the inputs' statistics with a tokenizer sweep, its ``InceptionReference``
    (``rate_distortion(...).reference``); each point then gains ``rfid`` / ``inception_score``
    (Inception batches of ``batch_size``)."""
    if not torch.is_tensor(images) or images.dim() != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        raise InputError("baseline_points needs a non-empty B x 3 x H x W image batch in [0, 1]")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
    reference = as_reference(inception, images, batch_size, "baseline_points")
    u8 = to_uint8(images)
    points = []
    sides = sorted({thumbnail_side(b) for b in budgets_bytes} - {0})
    for side in sides:
        recon = np.stack([thumbnail(im, side) for im in u8])
        points.append(_point("thumbnail", f"{side}x{side} px", images, recon, [3 * side * side] * len(u8), lpips,
                             reference, batch_size))
    for name, encode, qualities in (("jpeg", encode_jpeg, jpeg_qualities), ("webp", encode_webp, webp_qualities)):
        for q in sorted(qualities):
            data = [encode(im, q) for im in u8]
            recon = np.stack([_decode(d) for d in data])
            points.append(_point(name, f"q={q}", images, recon, [len(d) for d in data], lpips, reference,
                                 batch_size))
    return points
