"""Pieces shared by the tokenizer tasks: building the model/teacher, and the pixel objective
(reconstruction + perceptual + GAN) with its discriminator phase."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from ...errors import ConfigError
from ...hub import load, load_weights
from ...registry import create_model, list_models
from ..config import RunConfig
from .base import Phase, Task


def build_model(run: RunConfig) -> nn.Module:
    """The model to train: a preset (random init, with size overrides) or a saved/official model;
    then ``init_weights`` if given."""
    if not run.model:
        raise ConfigError("the recipe names no model (model: titok_s128, a folder, or a file)")
    if run.model in list_models():
        model = create_model(run.model, **run.model_overrides)
    elif Path(run.model).exists():
        model = load(run.model, **run.model_overrides)
    else:
        raise ConfigError(f"model {run.model!r} is neither a preset nor an existing path")
    if run.init_weights:
        load_weights(model, run.init_weights)
    return model.train()


def build_teacher(run: RunConfig) -> nn.Module:
    if not run.teacher:
        raise ConfigError(f"task {run.task} needs a teacher (teacher: maskgit_vqgan_f16_256 + teacher_weights: FILE)")
    teacher = load(run.teacher, weights=run.teacher_weights or None)
    return teacher.eval().requires_grad_(False)


@dataclass(frozen=True)
class PixelLossOptions:
    """Loss weights of the pixel-space tasks (defaults: TiTok stage 2, Yu et al. 2024)."""

    recon: str = "l2"  # l1 | l2
    recon_weight: float = 1.0
    perceptual: str = "convnext_s"  # lpips | convnext_s | none (needs local weight files)
    perceptual_weight: float = 0.1
    gan_weight: float = 0.01  # 0 = no discriminator
    gan_start: int = 20000  # step from which the GAN terms (generator and discriminator) are on
    adaptive_gan_weight: bool = False  # taming-style ||grad rec|| / ||grad gan|| on the last layer
    lecam_weight: float = 0.001
    disc_channels: int = 128
    quantizer_weight: float = 1.0  # VQ commitment+codebook (or KL) term


class PixelObjective:
    """Reconstruction + perceptual + (optional) GAN, with the discriminator as a trainable module."""

    def __init__(self, opts: PixelLossOptions, device: torch.device):
        from ...losses import GANLoss, PatchDiscriminator, PerceptualLoss

        self.opts = opts
        self.perceptual = None
        if opts.perceptual != "none" and opts.perceptual_weight > 0:
            self.perceptual = PerceptualLoss(opts.perceptual).to(device)
            if not self.perceptual.available:  # it said why, once; train without the term
                self.perceptual = None
        self.gan = None
        if opts.gan_weight > 0:
            disc = PatchDiscriminator(base_channels=opts.disc_channels)
            self.gan = GANLoss(disc, start_step=opts.gan_start, weight=opts.gan_weight, lecam_weight=opts.lecam_weight,
                               adaptive=opts.adaptive_gan_weight).to(device)

    def trainable(self) -> dict[str, nn.Module]:
        """The discriminator trains with its own optimizer (and is what DDP wraps)."""
        return {"disc": self.gan.discriminator} if self.gan is not None else {}

    def state_modules(self) -> dict[str, nn.Module]:
        """The whole GAN loss is checkpointed: the discriminator and LeCam's EMA anchors."""
        return {"gan": self.gan} if self.gan is not None else {}

    def generator_terms(self, recon: torch.Tensor, images: torch.Tensor, step: int, last_layer=None) -> tuple[torch.Tensor, dict]:
        from ...losses import reconstruction_loss

        o = self.opts
        rec = reconstruction_loss(recon, images, o.recon)
        loss, logs = o.recon_weight * rec, {"recon": rec.detach()}
        if self.perceptual is not None:
            p = self.perceptual(recon, images)
            loss, logs["perceptual"] = loss + o.perceptual_weight * p, p.detach()
        if self.gan is not None:
            g, glogs = self.gan.generator_loss(recon, step, rec_loss=loss, last_layer=last_layer)
            loss = loss + g
            logs.update(glogs)
        return loss, logs

    def discriminator_phase(self, images: torch.Tensor, recon: torch.Tensor, step: int, modules) -> Iterator[Phase]:
        if self.gan is None or step < self.opts.gan_start:
            return
        loss, logs = self.gan.discriminator_loss(images, recon.detach(), step, disc=modules.get("disc"))
        yield Phase("disc", loss, logs)


class PixelTask(Task):
    """A tokenizer trained on pixels: reconstruction + perceptual + GAN (+ its quantizer's term).

    Subclasses say which model class they train (``model_cls``), what they freeze (``prepare``)
    and whether the quantizer's loss counts (``quantizer_term``)."""

    reconstructs = True
    options_cls = PixelLossOptions
    model_cls: type = nn.Module
    quantizer_term = True

    def __init__(self, run, device):
        super().__init__(run, device)
        self.model = build_model(run).to(device)
        if not isinstance(self.model, self.model_cls):
            raise ConfigError(f"task {self.name} trains a {self.model_cls.__name__}, got {type(self.model).__name__}")
        self.prepare()
        self.objective = PixelObjective(self.opts, device)

    def prepare(self) -> None:
        """Check the model further / freeze what this task does not train."""

    def trainable(self):
        return {"model": self.model, **self.objective.trainable()}

    def state_modules(self):
        return {"model": self.model, **self.objective.state_modules()}

    def after_forward(self, out) -> None:
        """Hook run on each training forward's output (e.g. codebook maintenance)."""

    def extra_logs(self, out) -> dict:
        return {}

    def phases(self, batch, step, modules) -> Iterator[Phase]:
        images = batch["image"]
        out = modules["model"](images)
        self.after_forward(out)
        loss, logs = self.objective.generator_terms(out.images, images, step, self.model.last_layer())
        if self.quantizer_term:
            loss = loss + self.opts.quantizer_weight * out.quantizer_loss
            logs["quantizer"] = out.quantizer_loss.detach()
        logs.update(self.extra_logs(out))
        yield Phase("model", loss, logs)
        yield from self.objective.discriminator_phase(images, out.images, step, modules)

    @torch.no_grad()
    def samples(self, images, model):
        return [images, model.reconstruct(images)]
