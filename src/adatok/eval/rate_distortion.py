"""Rate–distortion points of a tokenizer over a set of images (docs/rate_distortion.md).

A point is one way of coding every image of the set: a fixed tokenizer gives one (all its tokens);
an adaptive tokenizer (``adatok.interface.AdaptiveTokenizer``: ALIT, the prefix TiTok) gives one
per allowed length (every image at that length: ``sweep``) and one per per-image selection rule
(``select(images, "psnr", target)`` at a few dB targets; for a prefix tokenizer also the
Lagrangian rule ``select_lagrangian(model, images, lam)``).

The rate of a point is counted in bits: an image of ``L`` discrete tokens costs
``L * log2(codebook_size)`` bits; a per-image selection adds ``log2(len(allowed_lengths))`` bits
per image, the cost of telling the decoder which length was chosen (a length shared by the whole
set is free). Bits per pixel divide by ``image_size ** 2``. Distortion: PSNR and SSIM of the
reconstructions rounded to 8 bits (as ``adatok eval`` and saved images are), and LPIPS when an
LPIPS function is passed; rFID and the Inception Score of each point's 8-bit reconstructions
against the input images when an Inception is passed (``eval/rd_inception.py``: the inputs'
statistics are computed once and shared by every point). Per-image values (PSNR at every length, the chosen length) are kept for
``eval/complexity.py``.

Images are float ``B x 3 x H x W`` in [0, 1] at the model's ``image_size``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..interface import AdaptiveTokenizer, Tokenizer
from .metrics import psnr, ssim
from .rd_inception import InceptionReference, PointInception, as_reference

__all__ = ["RDPoint", "TokenizerSweep", "token_bits", "round8", "rate_distortion", "default_psnr_targets",
           "default_lambdas"]

LpipsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (recon, images) B x 3 x H x W -> (B,)


@dataclass
class RDPoint:
    """One coding of the whole image set.

    ``kind``: ``fixed`` (a fixed-length tokenizer), ``length`` (an adaptive tokenizer, every image at
    one length), ``selection`` (per-image lengths), ``baseline`` (thumbnail / JPEG / WebP).
    ``tokens``: mean tokens per image (None for baselines); ``bits``: mean bits per image (None for
    continuous tokens, which have no bit count); ``bpp``: ``bits / pixels``. ``lengths`` (per image,
    tokenizer points) and ``bytes_per_image`` (baselines) keep the per-image rate. ``rfid`` /
    ``inception_score``: of the 8-bit reconstructions against the input images (None without an
    Inception)."""

    method: str
    label: str
    kind: str
    tokens: Optional[float]
    bits: Optional[float]
    bpp: Optional[float]
    psnr: float
    ssim: float
    lpips: Optional[float] = None
    rfid: Optional[float] = None
    inception_score: Optional[float] = None
    psnr_per_image: list = field(default_factory=list)
    lengths: Optional[list] = None
    bytes_per_image: Optional[list] = None

    def row(self) -> dict:
        """The point without its per-image lists (one CSV row)."""
        return {"method": self.method, "label": self.label, "kind": self.kind, "tokens": self.tokens,
                "bits": self.bits, "bpp": self.bpp, "psnr": self.psnr, "ssim": self.ssim, "lpips": self.lpips,
                "rfid": self.rfid, "inception_score": self.inception_score, "images": len(self.psnr_per_image)}

    def to_dict(self) -> dict:
        return {**self.row(), "psnr_per_image": self.psnr_per_image, "lengths": self.lengths,
                "bytes_per_image": self.bytes_per_image}


@dataclass
class TokenizerSweep:
    """Everything ``rate_distortion`` measured.

    ``lengths``: the swept lengths (``(max_tokens,)`` for a fixed tokenizer); ``curves``: T x B
    per-image PSNR (8-bit reconstructions) at each of them; ``allowed_lengths``: all the model's
    lengths (the selection side cost counts them); ``preview``: uint8 ``N x H x W x 3`` originals
    and ``preview_recon`` T x N x H x W x 3 reconstructions of the first N images (the report's grid);
    ``reference``: the inputs' Inception statistics when rFID was measured (pass it on to
    ``baseline_points(..., inception=sweep.reference)`` to score the baselines against the same
    statistics without recomputing them)."""

    method: str
    image_size: int
    codebook_size: Optional[int]
    allowed_lengths: tuple
    lengths: tuple
    points: list
    curves: np.ndarray
    preview: np.ndarray
    preview_recon: np.ndarray
    reference: Optional[InceptionReference] = None

    @property
    def selections(self) -> list:
        return [p for p in self.points if p.kind == "selection"]


def token_bits(lengths, codebook_size: int, num_allowed: int = 1) -> np.ndarray:
    """Bits of each image: ``lengths * log2(codebook_size)``, plus ``log2(num_allowed)`` when the
    length is chosen per image among ``num_allowed`` lengths (``num_allowed=1``: a set-wide length,
    no side cost). ``lengths``: per-image token counts (any shape)."""
    if isinstance(codebook_size, bool) or not isinstance(codebook_size, int) or codebook_size < 1:
        raise InputError(f"codebook_size must be a positive int, got {codebook_size!r}")
    if isinstance(num_allowed, bool) or not isinstance(num_allowed, int) or num_allowed < 1:
        raise InputError(f"num_allowed (the number of allowed lengths) must be a positive int, got {num_allowed!r}")
    lengths = np.asarray(lengths, dtype=np.float64)
    return lengths * math.log2(codebook_size) + math.log2(num_allowed)


def round8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] rounded to the 256 levels of an 8-bit file (values stay in [0, 1])."""
    return (images.float().clamp(0, 1) * 255).round() / 255


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``B x 3 x H x W`` float in [0, 1] -> ``B x H x W x 3`` uint8 (rounded)."""
    return (images.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def default_psnr_targets(curves: np.ndarray) -> tuple:
    """Quality targets spread over the model's own range: the set's mean PSNR at each swept length
    but the longest, rounded to 0.1 dB (duplicates dropped). ``curves``: T x B."""
    means = np.nanmean(np.where(np.isfinite(curves), curves, np.nan), axis=1)[:-1]
    return tuple(sorted({round(float(m), 1) for m in means if np.isfinite(m)}))


def default_lambdas(curves: np.ndarray, lengths: Sequence[int]) -> tuple:
    """Prices in dB per token spread over the set's mean curve: the slope of each segment between
    consecutive swept lengths (positive ones, 3 significant digits, duplicates dropped)."""
    means = np.nanmean(np.where(np.isfinite(curves), curves, np.nan), axis=1)
    slopes = np.diff(means) / np.diff(np.asarray(lengths, dtype=np.float64))
    return tuple(sorted({float(f"{s:.3g}") for s in slopes if np.isfinite(s) and s > 0}))


def _chunks(images: torch.Tensor, batch_size: int):
    for i in range(0, images.shape[0], batch_size):
        yield images[i:i + batch_size]


def _check(model, images) -> None:
    if not isinstance(model, Tokenizer):
        raise InputError(f"rate_distortion needs an adatok.interface.Tokenizer, got {type(model).__name__}")
    if not torch.is_tensor(images) or images.dim() != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise InputError(f"rate_distortion needs a non-empty B x 3 x H x W image batch, got {shape}")
    if tuple(images.shape[-2:]) != (model.image_size, model.image_size):
        raise InputError(f"images are {tuple(images.shape[-2:])}, the model reads {model.image_size}x"
                         f"{model.image_size}: load them at the model's size")


class _Accumulator:
    """Per-image metrics of one point, gathered batch by batch."""

    def __init__(self, lpips: Optional[LpipsFn], reference: Optional[InceptionReference] = None):
        self.lpips_fn = lpips
        self.inception = PointInception(reference) if reference is not None else None
        self.psnr, self.ssim, self.lpips, self.lengths = [], [], [], []

    def add(self, recon: torch.Tensor, images: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        recon = round8(recon)
        p = psnr(recon, images.float())
        self.psnr.append(p.cpu())
        self.ssim.append(ssim(recon, images.float()).cpu())
        if self.lpips_fn is not None:
            self.lpips.append(torch.as_tensor(self.lpips_fn(recon, images.float())).double().cpu().reshape(-1))
        if self.inception is not None:
            self.inception.add(recon)
        self.lengths.append(lengths.long().cpu())
        return p

    def point(self, method, label, kind, codebook_size, num_allowed, pixels) -> RDPoint:
        lengths = torch.cat(self.lengths).numpy()
        bits = None if codebook_size is None else float(token_bits(lengths, codebook_size, num_allowed).mean())
        p = torch.cat(self.psnr).numpy()
        rfid, score = self.inception.result() if self.inception is not None else (None, None)
        return RDPoint(method=method, label=label, kind=kind, tokens=float(lengths.mean()), bits=bits,
                       bpp=None if bits is None else bits / pixels, psnr=float(p.mean()),
                       ssim=float(torch.cat(self.ssim).mean()),
                       lpips=float(torch.cat(self.lpips).mean()) if self.lpips else None, rfid=rfid,
                       inception_score=score,
                       psnr_per_image=[float(v) for v in p], lengths=[int(n) for n in lengths])


@torch.no_grad()
def rate_distortion(model: Tokenizer, images: torch.Tensor, *, method: Optional[str] = None,
                    lengths: Optional[Sequence[int]] = None, psnr_targets: Optional[Sequence[float]] = None,
                    lambdas: Optional[Sequence[float]] = None, lpips: Optional[LpipsFn] = None,
                    batch_size: int = 8, seed: int = 0, preview: int = 6, inception=None) -> TokenizerSweep:
    """Rate–distortion points of ``model`` on ``images`` (B x 3 x H x W in [0, 1], at the model's size).

    Fixed tokenizer: one ``fixed`` point. Adaptive: a ``length`` point at each of ``lengths``
    (default: every allowed length), a ``selection`` point per PSNR target (``select(x, "psnr", t)``;
    default targets: ``default_psnr_targets``) and, for a prefix tokenizer, per Lagrangian price
    (``select_lagrangian``; default: ``default_lambdas``). Pass empty sequences to skip selections.
    ``lpips``: a function (recon, images) -> per-image distance, e.g. ``functools.partial(
    lpips_distance, load_lpips())``. ``inception``: the FID Inception (``adatok.eval.inception.
    load_inception``) or an ``InceptionReference`` of ``images``: every point gains ``rfid`` and
    ``inception_score`` (the inputs' statistics computed once, each point's streamed). ``seed`` seeds tokenizers with random choices (ALIT's Bernoulli
    halting), once per batch."""
    _check(model, images)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
    method = method or type(model).__name__
    reference = as_reference(inception, images, batch_size, "rate_distortion")
    pixels = model.image_size ** 2
    codebook = model.codebook_size
    device = next(model.parameters()).device
    adaptive = isinstance(model, AdaptiveTokenizer)
    allowed = tuple(model.allowed_lengths) if adaptive else (model.max_tokens,)
    swept = model.sweep_lengths(None if lengths is None else tuple(lengths)) if adaptive else allowed
    if lengths is not None and not adaptive and tuple(int(n) for n in lengths) != allowed:
        raise InputError(f"lengths {list(lengths)}: {method} is a fixed-length tokenizer ({model.max_tokens} tokens "
                         "an image); drop --lengths")

    def generator() -> dict:  # ALIT's random halting rule, if used; the prefix TiTok ignores it
        return {"generator": torch.Generator(device).manual_seed(seed)}

    # 1. every image at each swept length (one point per length)
    accs = [_Accumulator(lpips, reference) for _ in swept]
    curves, prev_recon = [], []
    prev = images[:preview]
    for batch in _chunks(images, batch_size):
        batch = batch.to(device)
        if adaptive:
            recon = model.sweep(batch, swept, **generator()).images
        else:
            tokens = model.encode(batch)
            recon = model.decode(tokens)[None]
        curves.append(torch.stack([acc.add(r, batch, torch.full((len(batch),), n)) for acc, r, n in
                                   zip(accs, recon, swept)]))
        if sum(r.shape[1] for r in prev_recon) < len(prev):
            prev_recon.append(recon[:, :len(prev) - sum(r.shape[1] for r in prev_recon)].cpu())
    kind = "length" if adaptive else "fixed"
    points = [acc.point(method, f"{n} tokens", kind, codebook, 1, pixels) for acc, n in zip(accs, swept)]
    curves = torch.cat(curves, dim=1).numpy()
    if prev_recon:
        preview_recon = np.stack([to_uint8(r) for r in torch.cat(prev_recon, dim=1)])
    else:  # preview=0: no grid wanted
        preview_recon = np.zeros((len(swept), 0, model.image_size, model.image_size, 3), np.uint8)

    # 2. per-image selections (adaptive only): the length costs log2(#allowed) bits an image
    if adaptive:
        rules = [("psnr", float(t)) for t in (default_psnr_targets(curves) if psnr_targets is None else psnr_targets)]
        if _is_prefix(model):
            rules += [("lagrangian", float(lam)) for lam in
                      (default_lambdas(curves, swept) if lambdas is None else lambdas)]
        elif lambdas:
            raise InputError(f"lambdas: the Lagrangian selection needs a prefix tokenizer, {method} is "
                             f"{type(model).__name__}; drop --lambdas")
        for rule, value in rules:
            acc = _Accumulator(lpips, reference)
            for batch in _chunks(images, batch_size):
                batch = batch.to(device)
                sel = _select(model, batch, rule, value, generator())
                acc.add(sel.images, batch, sel.tokens.lengths)
            label = f"psnr>={value:g} dB" if rule == "psnr" else f"lambda={value:g} dB/token"
            points.append(acc.point(f"{method} {'psnr target' if rule == 'psnr' else 'lagrangian'}", label,
                                    "selection", codebook, len(allowed), pixels))
    return TokenizerSweep(method=method, image_size=model.image_size, codebook_size=codebook,
                          allowed_lengths=allowed, lengths=tuple(swept), points=points, curves=curves,
                          preview=to_uint8(prev), preview_recon=preview_recon, reference=reference)


def _is_prefix(model) -> bool:
    from ..tokenizers.prefix.model import PrefixTiTok

    return isinstance(model, PrefixTiTok)


def _select(model, batch, rule: str, value: float, generator: dict):
    if rule == "lagrangian":
        from ..tokenizers.prefix.lagrangian import select_lagrangian

        return select_lagrangian(model, batch, value)
    return model.select(batch, "psnr", value, **generator)
