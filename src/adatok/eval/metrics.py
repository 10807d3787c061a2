"""Reconstruction metrics (PSNR, SSIM) and codebook usage.

Images follow adatok's convention: float ``B x 3 x H x W`` (a single ``3 x H x W`` image
is treated as ``B = 1``) with values in [0, 1], so the data range is 1. Values are not
range-checked (that would cost a device sync per call); pass uint8 images divided by 255.
"""

from __future__ import annotations

import torch

from adatok.errors import InputError

__all__ = ["codebook_usage", "psnr", "ssim"]

_SSIM_KERNEL = 11  # torchmetrics' default Gaussian window; images must be at least this big


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, in dB: ``10 * log10(1 / MSE)``.

    Shapes: ``a, b``: ``B x C x H x W`` (or ``C x H x W``), same shape, float, in [0, 1].
    Returns a float64 tensor of shape ``(B,)``.

    The difference and its mean are computed in float64 (the inputs are float32 at most
    in practice), so high-PSNR reconstructions are not limited by float32 rounding.
    Identical images have MSE 0 and give ``+inf`` (no epsilon is added, which would
    silently cap the value); average with care, e.g. ``torch.isfinite`` first.
    """
    a, b = _check_pair(a, b, "psnr")
    mse = (a.double() - b.double()).square().flatten(1).mean(dim=1)
    return 10.0 * torch.log10(1.0 / mse)  # 1 / 0 -> inf, log10(inf) -> inf


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Structural similarity per image, via torchmetrics (Gaussian window 11, sigma 1.5).

    Shapes: ``a, b``: ``B x C x H x W`` (or ``C x H x W``), same shape, float, in [0, 1],
    with ``H, W >= 11``. Returns shape ``(B,)``; identical images give 1.
    Computed in float32 (``data_range=1.0``): float64 costs ~16x the time for differences below
    1e-6 (tests/eval/test_metrics.py measures both); returned as float64 so means over many images
    are summed in double.
    """
    a, b = _check_pair(a, b, "ssim")
    if min(a.shape[-2:]) < _SSIM_KERNEL:
        raise InputError(f"ssim needs images of at least {_SSIM_KERNEL}x{_SSIM_KERNEL} pixels "
                         f"(its Gaussian window), got {tuple(a.shape[-2:])}")
    try:
        from torchmetrics.functional.image import structural_similarity_index_measure
    except ImportError:
        raise ImportError("ssim needs torchmetrics — install it with "
                          "`pip install 'adatok[eval]'`") from None
    return structural_similarity_index_measure(
        a.float(), b.float(), data_range=1.0, reduction="none"
    ).double()


def codebook_usage(ids: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """How much of a codebook a set of token ids uses.

    Args:
        ids: integer token ids of any shape (e.g. ``B x L``). Pass only real tokens: drop
            padding of variable-length outputs first (e.g. ``ids[mask]``).
        codebook_size: number of codes ``K``; every id must be in ``[0, K)``.

    Returns:
        ``usage``: fraction of the ``K`` codes that occur at least once;
        ``used``: how many codes occur;
        ``entropy_bits``: Shannon entropy of the code histogram in bits
        (``log2 K`` when all codes are equally frequent, 0 when one code is used);
        ``perplexity``: ``2 ** entropy_bits``, the "effective number" of codes.
    """
    if not isinstance(codebook_size, int) or isinstance(codebook_size, bool) or codebook_size < 1:
        raise InputError(f"codebook_size must be a positive int, got {codebook_size!r}")
    integer = torch.is_tensor(ids) and not (ids.is_floating_point() or ids.is_complex())
    if not integer or ids.dtype == torch.bool:
        raise InputError(f"codebook_usage expects an integer tensor of token ids, "
                         f"got {_describe(ids)}")
    if ids.numel() == 0:
        raise InputError("codebook_usage got no token ids (empty tensor)")
    flat = ids.reshape(-1).long()
    low, high = int(flat.min()), int(flat.max())  # one sync per call, not per token
    if low < 0 or high >= codebook_size:
        raise InputError(f"token ids must lie in [0, {codebook_size}), found range [{low}, {high}] "
                         "— drop padding ids, or check codebook_size")
    counts = torch.bincount(flat, minlength=codebook_size).double()
    p = counts / counts.sum()
    # 0 * log 0 is taken as 0: xlogy does exactly that without masking.
    entropy = -(torch.xlogy(p, p).sum() / torch.log(torch.tensor(2.0, dtype=p.dtype)))
    used = int((counts > 0).sum())
    entropy_bits = max(float(entropy), 0.0)  # clears a possible -0.0
    return {
        "usage": used / codebook_size,
        "used": used,
        "entropy_bits": entropy_bits,
        "perplexity": 2.0 ** entropy_bits,
    }


def _check_pair(a, b, who: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate two image batches and promote single ``C x H x W`` images to ``B = 1``."""
    for name, x in (("first", a), ("second", b)):
        if not torch.is_tensor(x) or not x.is_floating_point():
            raise InputError(f"{who} expects float image tensors in [0, 1]; the {name} argument is "
                             f"{_describe(x)} (divide uint8 images by 255)")
        if x.dim() not in (3, 4) or x.numel() == 0:
            raise InputError(f"{who} expects B x C x H x W (or C x H x W) images; the {name} "
                             f"argument has shape {tuple(x.shape)}")
    if a.shape != b.shape:
        raise InputError(f"{who} needs images of the same shape, "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.device != b.device:
        raise InputError(f"{who} needs both images on one device, got {a.device} and {b.device}")
    if a.dim() == 3:
        a, b = a.unsqueeze(0), b.unsqueeze(0)
    return a, b


def _describe(obj) -> str:
    if torch.is_tensor(obj):
        return f"a {obj.dtype} tensor of shape {tuple(obj.shape)}"
    return f"a {type(obj).__name__}"
