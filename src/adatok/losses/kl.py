"""KL regulariser of continuous (VAE) tokens, with the convention of ``DiagonalGaussian``."""

from __future__ import annotations

import torch

from adatok.errors import InputError
from adatok.quantizers.kl import DiagonalGaussian

__all__ = ["kl_loss"]


def kl_loss(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed per sample over all non-batch dims, averaged over batch.

    Shapes: mean, logvar ``B x ...`` (e.g. ``B x L x C`` tokens) -> scalar float32. Unweighted: the
    caller multiplies by ``kl_weight`` (1e-6 in the TiTok VAE recipes), which gives exactly
    ``DiagonalGaussian(...).loss`` for the same mean/logvar (logvar already clamped there).
    """
    if mean.shape != logvar.shape or mean.dim() < 2:
        raise InputError(f"kl_loss: mean {tuple(mean.shape)} and logvar {tuple(logvar.shape)} must have the "
                         "same shape B x ...")
    with torch.autocast(device_type=mean.device.type, enabled=False):
        return DiagonalGaussian.kl(mean.float(), logvar.float()).sum() / mean.shape[0]
