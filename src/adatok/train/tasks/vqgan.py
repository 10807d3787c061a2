"""MaskGIT-VQGAN training from scratch (the teacher / base tokenizer; no pretrained one can be
downloaded here): reconstruction + perceptual + GAN + VQ loss, with optional dead-code restarts."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...pixel import MaskGITVQGAN
from ...quantizers.vq import CodeUsage
from .base import register_task
from .common import PixelLossOptions, PixelTask


@dataclass(frozen=True)
class VQGANOptions(PixelLossOptions):
    # Re-seed codes unused for a while with encoder outputs. From scratch, the MaskGIT-VQGAN's
    # uniform codebook init collapses to a handful of codes without it (measured on the photo pool).
    restart_dead_codes: bool = False
    usage_decay: float = 0.99  # a code is dead after ~log(0.01)/log(decay) steps unused (458 at 0.99)


@register_task
class VQGANTask(PixelTask):
    name = "vqgan"
    model_cls = MaskGITVQGAN
    options_cls = VQGANOptions

    def prepare(self):
        self.code_usage = CodeUsage(self.model.config.codebook_size).to(self.device)

    def state_modules(self):
        return {**super().state_modules(), "code_usage": self.code_usage}

    def after_forward(self, out) -> None:
        if self.opts.restart_dead_codes:
            self.code_usage.restart_(self.model.codebook, out.ids, out.latents.permute(0, 2, 3, 1),
                                     self.opts.usage_decay)

    def extra_logs(self, out) -> dict:
        used = torch.zeros(self.model.config.codebook_size, device=out.ids.device).index_fill_(0, out.ids.flatten(), 1)
        return {"codes_used": used.sum()}  # no host sync
