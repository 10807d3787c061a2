"""What ALIT needs from its 2D base tokenizer, one small adapter per kind.

ALIT (Duggal et al. 2025) distils a 2D tokenizer's grid of G x G tokens into 1D tokens. Its base
is a MaskGIT-architecture VQGAN (the decoder predicts logits over the base codes; soft codes go
through the VQGAN's pixel decoder; the codes' probabilities drive dynamic halting) or the KL-16
VAE (the decoder regresses the VAE's scaled latents, which go through the VAE decoder; no codes,
so no halting and no token-space ``confidence`` criterion). An adapter holds no parameters: the
base module is registered on the ``ALIT`` (keys ``base.*``).

An adapter gives:
    encode(images, training, generator) -> (2D-token latents B x C x G x G, target ids B x N2 or None)
    read(out, targets) -> (what the pixel decoder reads B x C x G x G, p_gt B x N2 or None)
    to_pixels(grid) -> images B x 3 x H x W, unclamped
    has_codes — whether the base has codes (ids, halting, the ``confidence`` criterion)
Shapes: ``out`` is the ALIT decoder's output, B x N2 x K (logits over K base codes) or B x N2 x C
(predicted latents).
"""

from __future__ import annotations

from typing import Optional

import torch

from ...pixel.kl_vae import KLVAE
from ...pixel.maskgit_vqgan import MaskGITVQGAN


def to_grid(tokens: torch.Tensor, side: int) -> torch.Tensor:
    """Row-major B x N2 x C -> B x C x G x G (contiguous)."""
    return tokens.transpose(1, 2).unflatten(2, (side, side)).contiguous()


class VQGANBase:
    """A MaskGIT-VQGAN base: targets are its code ids; the decoder's logits become soft codes."""

    has_codes = True

    def __init__(self, vqgan: MaskGITVQGAN, side: int):
        self.vqgan, self.side = vqgan, side

    def encode(self, images: torch.Tensor, training: bool = False,
               generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.vqgan.encode_latents(images)
        with torch.no_grad():
            return z, self.vqgan.quantize_latents(z)[0]

    def read(self, out: torch.Tensor, targets: Optional[torch.Tensor] = None):
        """Logits -> (soft codes: the probability-weighted mix of codebook rows, p of the targets)."""
        probs = out.float().softmax(dim=-1)
        p_gt = None if targets is None else probs.gather(-1, targets[..., None])[..., 0]
        return to_grid(probs @ self.vqgan.codebook.to(probs.dtype), self.side), p_gt

    def to_pixels(self, grid: torch.Tensor) -> torch.Tensor:
        return self.vqgan.decode_codes(grid)


class VAEBase:
    """A KL-VAE base: the 2D tokens are its scaled latents (a posterior sample or the mean, by
    ``sampling``); the decoder's output is the predicted latents, decoded with or without
    dividing by the scale (``rescale``; official: without)."""

    has_codes = False

    def __init__(self, vae: KLVAE, side: int, sampling: str = "training", rescale: bool = False):
        self.vae, self.side, self.sampling, self.rescale = vae, side, sampling, rescale

    def encode(self, images: torch.Tensor, training: bool = False,
               generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, None]:
        sample = self.sampling == "always" or (self.sampling == "training" and training)
        return self.vae.encode_latents(images, sample=sample, generator=generator), None

    def read(self, out: torch.Tensor, targets: Optional[torch.Tensor] = None):
        return to_grid(out, self.side), None

    def to_pixels(self, grid: torch.Tensor) -> torch.Tensor:
        return self.vae.decode_latents(grid, unscale=self.rescale)


def base_adapter(base, config):
    """The adapter of an ALIT's base module (chosen by its type)."""
    if isinstance(base, KLVAE):
        return VAEBase(base, config.grid_size, config.vae_sampling, config.vae_rescale_decode)
    return VQGANBase(base, config.grid_size)


__all__ = ["VQGANBase", "VAEBase", "base_adapter", "to_grid"]
