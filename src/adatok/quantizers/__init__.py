"""Quantizers that turn encoder latents ``B x L x C`` into tokens."""

from .vq import VectorQuantizer, nearest_code
from .kl import DiagonalGaussian

__all__ = ["VectorQuantizer", "nearest_code", "DiagonalGaussian"]
