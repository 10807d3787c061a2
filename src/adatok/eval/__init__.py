"""Evaluation: reconstruction metrics and codebook statistics."""

from adatok.eval.metrics import codebook_usage, psnr, ssim

__all__ = ["codebook_usage", "psnr", "ssim"]
