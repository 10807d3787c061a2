"""MaskGIT-VQGAN training from scratch (the teacher / base tokenizer; no pretrained one can be
downloaded here): reconstruction + perceptual + GAN + VQ loss."""

from __future__ import annotations

import torch

from ...pixel import MaskGITVQGAN
from .base import register_task
from .common import PixelTask


@register_task
class VQGANTask(PixelTask):
    name = "vqgan"
    model_cls = MaskGITVQGAN

    def extra_logs(self, out) -> dict:
        used = torch.zeros(self.model.config.codebook_size, device=out.ids.device).index_fill_(0, out.ids.flatten(), 1)
        return {"codes_used": used.sum()}  # no host sync
