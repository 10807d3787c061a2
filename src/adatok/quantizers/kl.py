"""Diagonal Gaussian posterior for continuous (KL / "VAE") tokens (Kingma & Welling, 2014), as the
single-stage TiTok VAE tokenizers use it: the encoder emits mean ‖ logvar along channels.
"""

from __future__ import annotations

import torch
from torch import nn

from ..types import QuantizerOutput


class DiagonalGaussian(nn.Module):
    """Shapes: z ``B x L x 2C`` -> codes ``B x L x C``; ``kl`` per token ``B x L``.

    ``sample=True`` draws ``mean + std * eps``; otherwise the mean (the mode) is returned, so
    encoding is deterministic by default. logvar is clamped to [-30, 20] (official code).
    Loss = ``kl_weight * sum(kl) / B``.
    """

    codebook_size = None  # continuous: no codes, no ids

    def __init__(self, dim: int, kl_weight: float = 1e-6):
        super().__init__()
        self.dim = dim
        self.kl_weight = kl_weight

    @staticmethod
    def split(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = z.float().chunk(2, dim=-1)
        return mean, logvar.clamp(-30.0, 20.0)

    @staticmethod
    def kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(q || N(0, I)) summed over channels: ``B x L x C`` -> ``B x L``."""
        return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)

    @staticmethod
    def draw(mean: torch.Tensor, logvar: torch.Tensor, sample: bool,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """The mean, or (``sample``) ``mean + exp(logvar / 2) * eps`` with eps ~ N(0, I) from ``generator``."""
        if not sample:
            return mean
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + (0.5 * logvar).exp() * eps

    def forward(self, z: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> QuantizerOutput:
        with torch.autocast(device_type=z.device.type, enabled=False):
            mean, logvar = self.split(z)
            codes = self.draw(mean, logvar, sample, generator)
            kl = self.kl(mean, logvar)
        return QuantizerOutput(
            codes=codes, ids=None, loss=self.kl_weight * kl.sum() / z.shape[0], stats={"kl": kl.detach().mean()}
        )
