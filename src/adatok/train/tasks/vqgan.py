"""MaskGIT-VQGAN training from scratch (the teacher / base tokenizer; no pretrained one can be
downloaded here): reconstruction + perceptual + GAN + VQ loss."""

from __future__ import annotations

from typing import Iterator

import torch

from ...errors import ConfigError
from ...pixel import MaskGITVQGAN
from .base import Phase, Task, register_task
from .common import PixelLossOptions, PixelObjective, build_model


@register_task
class VQGANTask(Task):
    name = "vqgan"
    options_cls = PixelLossOptions

    def __init__(self, run, device):
        super().__init__(run, device)
        self.model = build_model(run).to(device)
        if not isinstance(self.model, MaskGITVQGAN):
            raise ConfigError(f"task vqgan trains a MaskGIT-VQGAN preset, got {type(self.model).__name__}")
        self.objective = PixelObjective(self.opts, device)

    def trainable(self):
        return {"model": self.model, **self.objective.trainable()}

    def state_modules(self):
        return {"model": self.model, **self.objective.state_modules()}

    def phases(self, batch, step, modules) -> Iterator[Phase]:
        images = batch["image"]
        out = modules["model"](images)
        loss, logs = self.objective.generator_terms(out.images, images, step, self.model.last_layer())
        loss = loss + self.opts.quantizer_weight * out.quantizer_loss
        logs["quantizer"] = out.quantizer_loss.detach()
        used = torch.zeros(self.model.config.codebook_size, device=images.device).index_fill_(0, out.ids.flatten(), 1)
        logs["codes_used"] = used.sum()  # no host sync
        yield Phase("model", loss, logs)
        yield from self.objective.discriminator_phase(images, out.images, step, modules)

    @torch.no_grad()
    def samples(self, images, model):
        return [images, model.reconstruct(images)]
