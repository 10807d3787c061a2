"""TiTok training: the paper's two-stage recipe and the single-stage pixel recipe (Yu et al. 2024).

* ``titok_stage1`` — proxy codes: a frozen MaskGIT-VQGAN encodes the same augmented image into
  16x16 codes; TiTok's proxy head predicts them (cross-entropy) + the VQ loss. The teacher's
  decoder and codebook are copied into TiTok's pixel path, so the result is a complete tokenizer.
* ``titok_stage2`` — decoder fine-tuning: encoder, quantizer and latent tokens frozen; the ViT
  decoder and the pixel decoder train on MSE + perceptual + GAN (from ``gan_start``).
* ``titok_single`` — every part trains on pixels (the later single-stage models; VQ or KL).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

import torch

from ...errors import ConfigError
from ...losses import proxy_code_loss
from ...tokenizers.titok import TiTok
from .base import Phase, Task, register_task
from .common import PixelTask, build_model, build_teacher


@dataclass(frozen=True)
class Stage1Options:
    label_smoothing: float = 0.0
    quantizer_weight: float = 1.0


@register_task
class TiTokStage1(Task):
    reconstructs = True
    name = "titok_stage1"
    options_cls = Stage1Options

    def __init__(self, run, device):
        super().__init__(run, device)
        self.model = build_model(run).to(device)
        if not isinstance(self.model, TiTok) or self.model.config.decoder_head != "proxy":
            raise ConfigError("titok_stage1 trains proxy-code TiTok models (decoder_head='proxy'); use titok_single")
        self.teacher = build_teacher(run).to(device)
        tcfg, pcfg = self.teacher.config, self.model.config.pixel
        if replace(tcfg, image_size=pcfg.image_size) != pcfg:
            raise ConfigError(f"the teacher ({tcfg}) differs from the model's pixel decoder config ({pcfg})")
        if not run.init_weights:  # start from the teacher's decoder, as the paper's stage 2 does
            self.model.pixel_decoder.load_state_dict(self.teacher.decoder.state_dict())
            self.model.pixel_codebook.weight.data.copy_(self.teacher.codebook)
        self.model.pixel_decoder.requires_grad_(False)
        self.model.pixel_codebook.requires_grad_(False)

    def trainable(self):
        return {"model": self.model}

    def phases(self, batch, step, modules) -> Iterator[Phase]:
        images = batch["image"]
        with torch.no_grad():
            codes = self.teacher.encode_ids(images)
        out = modules["model"](images, decode_pixels=False)
        ce = proxy_code_loss(out.logits, codes, self.opts.label_smoothing)
        accuracy = (out.logits.argmax(1).flatten(1) == codes).float().mean()
        yield Phase("model", ce + self.opts.quantizer_weight * out.quantizer_loss,
                    {"proxy_ce": ce.detach(), "proxy_acc": accuracy, "quantizer": out.quantizer_loss.detach()})

    @torch.no_grad()
    def samples(self, images, model):
        codes = self.teacher.encode_ids(images)
        logits = model.decode_logits(model.encode(images).codes)
        return [images, self.teacher.decode_ids(codes), self.teacher.decode_ids(logits.argmax(1).flatten(1)),
                model.reconstruct(images)]


@register_task
class TiTokStage2(PixelTask):
    name = "titok_stage2"
    model_cls = TiTok
    quantizer_term = False  # the quantizer is frozen

    def prepare(self):
        if self.model.config.decoder_head != "proxy":
            raise ConfigError("titok_stage2 fine-tunes proxy-code models; use titok_single for RGB heads")
        for part in (self.model.encoder, self.model.quantizer):
            part.requires_grad_(False)
        self.model.latent_tokens.requires_grad_(False)

    def phases(self, batch, step, modules):
        self.model.encoder.eval()  # frozen: keep it in eval mode whatever the loop does
        yield from super().phases(batch, step, modules)


@register_task
class TiTokSingleStage(PixelTask):
    name = "titok_single"
    model_cls = TiTok
