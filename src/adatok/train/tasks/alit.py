"""ALIT training: the paper's two stages (Duggal et al. 2025).

* ``alit_stage1`` — latent distillation: the base VQGAN is frozen (a trained MaskGIT-VQGAN, the
  ``teacher``, copied into the model); every rollout iteration k is decoded and trained on
  ``iter_weights[k] * CE(logits_k, base codes) + mse_weight * MSE(soft code_k, base code vectors)
  + quantizer_weight * VQ_k``, with dynamic halting as the model's config says. Over the KL-16 VAE
  (``config.base_kind == "vae"``, teacher: a ``KLVAE``): ``iter_weights[k] * MSE(predicted latents_k,
  sampled scaled VAE latents) + quantizer_weight * VQ_k`` (the official VAE loss; the posterior is
  sampled in training mode under ``vae_sampling="training"``).
* ``alit_stage2`` — full fine-tuning: everything trains (the base VQGAN too); each step trains ONE
  iteration, cycling k = 0, 1, ..., T-1 over steps, on the pixels decoded from its soft codes:
  L1 + perceptual + GAN (taming adaptive weight) + VQ_k (+ ``code_weight`` x CE on the base codes: ours,
  off by default, to keep the token-space confidence criterion meaningful).

Differences from the official code, on purpose: one discriminator shared by all iterations (the
official trains eight), generator and discriminator both step every step once the GAN is on (the
official steps the generator on 1 step in 9), and the label smoothing the official computes but
discards is an explicit option (default 0, as its effective value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from ...errors import ConfigError
from ...tokenizers.alit import ALIT
from .base import Phase, Task, register_task
from .common import PixelLossOptions, PixelTask, build_model, build_teacher


@dataclass(frozen=True)
class ALITStage1Options:
    iter_weights: tuple = (2.5, 2.0, 1.5, 1.25, 1.0, 1.0, 1.0, 1.0)  # CE weight per iteration (official)
    mse_weight: float = 1.0
    quantizer_weight: float = 1.0
    label_smoothing: float = 0.0


def _adopt_base(task, run) -> None:
    """Copy the trained base VQGAN / KL-VAE (the ``teacher``) into the model. Without a teacher the
    model must bring its own (a saved/official ALIT, or ``init_weights``): a fresh preset would
    train on the codes of a random VQGAN."""
    from dataclasses import replace

    from ...registry import list_models

    if run.teacher:
        teacher = build_teacher(run)
        base = task.model.config.base
        config = teacher.config
        if task.model.config.is_vae and isinstance(config, type(base)):
            # MAR's kl16 works on [-1, 1] pixels; ALIT feeds its VAE [0, 1] ones (official): the weights carry over
            config = replace(config, signed_pixels=base.signed_pixels)
        if config != base:
            raise ConfigError(f"the teacher ({teacher.config}) differs from the model's base tokenizer "
                              f"({task.model.config.base}): set model_overrides base.* to match")
        task.model.base.load_state_dict(teacher.state_dict())
    elif run.model in list_models() and not run.init_weights:
        raise ConfigError(f"{run.task} needs a trained base VQGAN (or KL-VAE): teacher: <MaskGIT-VQGAN / KL-VAE "
                          "folder, file or preset> (+ teacher_weights: FILE), or a model that already has one")


@register_task
class ALITStage1(Task):
    reconstructs = True
    name = "alit_stage1"
    options_cls = ALITStage1Options

    def __init__(self, run, device):
        super().__init__(run, device)
        self.model = build_model(run).to(device)
        if not isinstance(self.model, ALIT):
            raise ConfigError(f"alit_stage1 trains ALIT models, got {type(self.model).__name__}")
        iters = self.model.config.max_iters
        if len(self.opts.iter_weights) < iters:
            raise ConfigError(f"options.iter_weights has {len(self.opts.iter_weights)} weights; the model runs {iters} iterations")
        _adopt_base(self, run)
        self.model.base.requires_grad_(False)

    def trainable(self):
        return {"model": self.model}

    def phases(self, batch, step, modules) -> Iterator[Phase]:
        self.model.base.eval()  # frozen: never in training mode
        out = modules["model"](batch["image"])
        if out.gt is None:
            yield self._vae_phase(out)
            return
        target = F.embedding(out.gt, self.model.base.codebook).detach()  # B x N2 x C
        loss, logs = 0.0, {}
        for k, it in enumerate(out.iterations):
            ce = F.cross_entropy(it.logits.float().flatten(0, 1), out.gt.flatten(), label_smoothing=self.opts.label_smoothing)
            mse = F.mse_loss(it.soft_codes.flatten(2).transpose(1, 2).float(), target.float())
            loss = loss + self.opts.iter_weights[k] * ce + self.opts.mse_weight * mse + self.opts.quantizer_weight * it.quantizer_loss
            logs[f"ce_{it.num_tokens}"] = ce.detach()
            if k == len(out.iterations) - 1:
                logs["acc_max"] = (it.logits.argmax(-1) == out.gt).float().mean()
                logs["halted"] = it.halted.float().mean() if it.halted is not None else torch.zeros(())
        yield Phase("model", loss, logs)

    def _vae_phase(self, out) -> Phase:
        """Stage 1 over the VAE: per-iteration weighted MSE to the (sampled, scaled) latents + VQ."""
        target = out.base_latents.flatten(2).transpose(1, 2).detach().float()  # B x N2 x C
        loss, logs = 0.0, {}
        for k, it in enumerate(out.iterations):
            mse = F.mse_loss(it.pred_latents.float(), target)
            loss = loss + self.opts.iter_weights[k] * mse + self.opts.quantizer_weight * it.quantizer_loss
            logs[f"mse_{it.num_tokens}"] = mse.detach()
        return Phase("model", loss, logs)

    @torch.no_grad()
    def samples(self, images, model):
        r = model.rollout(images, pixels="all")
        base = model.base.decode_latents(r.base_latents) if r.gt is None else model.base.decode_ids(r.gt)
        return [images, base.clamp(0, 1)] + [it.images.clamp(0, 1) for it in r.iterations]


@dataclass(frozen=True)
class ALITStage2Options(PixelLossOptions):
    recon: str = "l1"
    perceptual: str = "lpips"
    perceptual_weight: float = 1.0
    gan_weight: float = 0.2  # official: 0.2 from epoch 21, 0.8 from epoch 101
    adaptive_gan_weight: bool = True
    lecam_weight: float = 0.0
    # ours (0 = official): cross-entropy of the trained iteration's logits on the base codes, so the
    # decoder keeps predicting them; the token-space `confidence` criterion reads those probabilities,
    # and stage 2 on pixels alone lets them fall to chance (the shipped alit_default: p 0.004 of 1/256)
    code_weight: float = 0.0


@register_task
class ALITStage2(PixelTask):
    name = "alit_stage2"
    model_cls = ALIT
    options_cls = ALITStage2Options

    def prepare(self):
        _adopt_base(self, self.run)
        if self.opts.code_weight > 0 and self.model.config.is_vae:
            raise ConfigError("options.code_weight needs a VQGAN base (base codes); this ALIT decodes VAE latents")

    def phases(self, batch, step, modules) -> Iterator[Phase]:
        images = batch["image"]
        k = step % self.model.config.max_iters  # one iteration per step, cycling
        out = modules["model"](images, iters=k + 1, decode_at=[k], pixels_at=[k])
        it = out.iterations[k]
        loss, logs = self.objective.generator_terms(it.images, images, step, self.model.last_layer())
        loss = loss + self.opts.quantizer_weight * it.quantizer_loss
        logs["quantizer"] = it.quantizer_loss.detach()
        if self.opts.code_weight > 0:
            code_ce = F.cross_entropy(it.logits.float().flatten(0, 1), out.gt.flatten())
            loss = loss + self.opts.code_weight * code_ce
            logs["code_ce"] = code_ce.detach()
        logs["tokens"] = torch.tensor(float(it.num_tokens))
        yield Phase("model", loss, logs)
        yield from self.objective.discriminator_phase(images, it.images, step, modules)

    @torch.no_grad()
    def samples(self, images, model):
        r = model.rollout(images, pixels="all")
        return [images] + [it.images.clamp(0, 1) for it in r.iterations]
