"""Quantizers that turn encoder latents ``B x L x C`` into tokens. Each is a module with one call
signature, ``quantizer(latents, sample=False, generator=None) -> QuantizerOutput``, and a
``codebook_size`` (None when the tokens are continuous)."""

from .vq import CodeUsage, VectorQuantizer, nearest_code
from .kl import DiagonalGaussian

__all__ = ["VectorQuantizer", "nearest_code", "CodeUsage", "DiagonalGaussian"]
