"""Does a per-image length follow image complexity, and does it spend tokens well?

* **Complexity**: an image's lossless PNG size and its JPEG (quality 90) size, in bytes, encoded in
  memory from the image as evaluated (uint8, at the model's size). ``length_complexity`` gives the
  Spearman rank correlation (``scipy.stats.spearmanr``) of the chosen lengths with each, and its
  two-sided p-value (null: no monotone association).
* **Allocation**: ``allocation_check`` compares the mean PSNR at the chosen lengths with (a) one
  length for every image at the same mean token count — the set's fixed-length curve (mean PSNR at
  each swept length) linearly interpolated there — and (b) the same multiset of lengths shuffled
  across images (a fixed seed, averaged over ``shuffles`` permutations). A selection that reads
  the image beats (b); beating (a) means the length varies usefully from image to image.

Per-image curves come from ``rate_distortion`` (``TokenizerSweep.curves``: T x B PSNR at each
swept length, 8-bit reconstructions); images are float ``B x 3 x H x W`` in [0, 1].
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import InputError
from .rate_distortion import to_uint8

__all__ = ["png_bytes", "jpeg_bytes", "image_complexity", "spearman", "length_complexity", "allocation_check"]


def png_bytes(image: np.ndarray) -> int:
    """Size of ``image`` (``H x W x 3`` uint8) as a PNG file (Pillow, default compression)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return len(buf.getvalue())


def jpeg_bytes(image: np.ndarray, quality: int = 90) -> int:
    """Size of ``image`` (``H x W x 3`` uint8) as a JPEG file at ``quality``."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return len(buf.getvalue())


def image_complexity(images: torch.Tensor) -> dict:
    """``{"png_bytes": [...], "jpeg90_bytes": [...]}`` of each image (B x 3 x H x W in [0, 1])."""
    u8 = to_uint8(images)
    return {"png_bytes": [png_bytes(im) for im in u8], "jpeg90_bytes": [jpeg_bytes(im, 90) for im in u8]}


def spearman(x: Sequence[float], y: Sequence[float]) -> dict:
    """``{"rho", "p", "n"}``: Spearman's rank correlation of ``x`` and ``y`` and its two-sided
    p-value; NaN (with the reason in ``note``) when either is constant or there are < 3 pairs."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise InputError(f"spearman needs two 1-d sequences of one length, got shapes {x.shape} and {y.shape}")
    n = len(x)
    if n < 3:
        return {"rho": float("nan"), "p": float("nan"), "n": n, "note": "fewer than 3 images"}
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"rho": float("nan"), "p": float("nan"), "n": n,
                "note": "every image has the same value (e.g. one chosen length for all): no rank correlation"}
    res = spearmanr(x, y)
    return {"rho": float(res.statistic), "p": float(res.pvalue), "n": n}


def length_complexity(lengths: Sequence[int], complexity: dict) -> dict:
    """Spearman of the chosen ``lengths`` with each complexity measure of ``image_complexity``."""
    return {name: spearman(lengths, values) for name, values in complexity.items()}


def allocation_check(curves, lengths: Sequence[int], chosen: Sequence[int], *, seed: int = 0,
                     shuffles: int = 100) -> dict:
    """Mean PSNR at the ``chosen`` per-image lengths against a fixed length at the same mean and
    against the chosen lengths shuffled across images.

    ``curves``: T x B per-image PSNR at each of ``lengths`` (ascending, T >= 1); ``chosen``: B lengths,
    each among ``lengths``. Returns ``mean_tokens``, ``chosen_psnr``, ``fixed_psnr`` (the mean
    curve interpolated at ``mean_tokens``), ``shuffled_psnr`` (mean over ``shuffles`` permutations
    drawn with ``seed``) and ``shuffled_std``, and the two gains ``vs_fixed_db`` / ``vs_shuffled_db``."""
    curves = np.asarray(curves, dtype=np.float64)
    lengths = [int(n) for n in lengths]
    chosen = np.asarray(chosen, dtype=np.int64)
    if curves.ndim != 2 or curves.shape[0] != len(lengths) or curves.shape[1] != len(chosen) or not len(chosen):
        raise InputError(f"allocation_check needs curves T x B ({len(lengths)} x {len(chosen)}), got {curves.shape}")
    if lengths != sorted(set(lengths)):
        raise InputError(f"allocation_check needs ascending distinct lengths, got {lengths}")
    bad = sorted(set(chosen.tolist()) - set(lengths))
    if bad:
        raise InputError(f"chosen lengths {bad} are not among the swept lengths {lengths}: sweep every allowed length")
    if isinstance(shuffles, bool) or not isinstance(shuffles, int) or shuffles < 1:
        raise InputError(f"shuffles must be a positive int, got {shuffles!r}")
    row = np.searchsorted(lengths, chosen)
    cols = np.arange(len(chosen))
    chosen_psnr = float(curves[row, cols].mean())
    mean_tokens = float(chosen.mean())
    fixed_psnr = float(np.interp(mean_tokens, lengths, curves.mean(axis=1)))
    rng = np.random.default_rng(seed)
    shuffled = np.array([curves[rng.permutation(row), cols].mean() for _ in range(shuffles)])
    return {"mean_tokens": mean_tokens, "chosen_psnr": chosen_psnr, "fixed_psnr": fixed_psnr,
            "shuffled_psnr": float(shuffled.mean()), "shuffled_std": float(shuffled.std()),
            "vs_fixed_db": chosen_psnr - fixed_psnr, "vs_shuffled_db": chosen_psnr - float(shuffled.mean()),
            "seed": seed, "shuffles": shuffles}
