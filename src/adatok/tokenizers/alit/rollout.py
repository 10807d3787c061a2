"""The recurrent rollout of ALIT (spec alit.md §5-§6), in two forms.

``full_rollout``: every iteration for the whole batch (training, all-length strips, fidelity).
``adaptive_rollout``: per-image early exit. Each image stops at the first iteration its criterion
accepts (or at the cap/last iteration, keeping its best one); finished images leave the batch, so
later iterations only run on the images that still need tokens, and the loop ends as soon as all
are done. With a criterion that needs no pixels, the chosen soft codes of all images are
pixel-decoded together, once, after the loop (one batched decode instead of one per exit step).

VAE base (``config.is_vae``): no base codes (``gt`` is None), the decoder regresses the base's
scaled latents (``pred_latents``), no halting; the generator, if any, draws the posterior sample.

Shapes: images B x 3 x H x W in [0, 1]; gt B x N2 (base codes); per iteration k with n_k =
tokens_per_iter * (k + 1) tokens: ids B x n_k, codes B x n_k x d, logits B x N2 x K
(VAE: pred_latents B x N2 x C).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from ...interface import PAD_ID
from ...types import Selection, Tokens
from ..selection import Criterion, IterationStats



@dataclass
class Iteration:
    """One rollout iteration (all fields B-major; ``images``/``logits`` only where computed).
    VQGAN base: ``logits``/``p_gt``; VAE base: ``pred_latents`` instead."""

    num_tokens: int
    latent_tokens: torch.Tensor  # B x n x W encoder outputs of the 1D slots (before LayerNorm)
    latents: torch.Tensor  # B x n x d factorised latents (before quantisation)
    codes: torch.Tensor  # B x n x d what the decoder reads
    ids: Optional[torch.Tensor]  # B x n (None for continuous models)
    quantizer_loss: torch.Tensor
    logits: Optional[torch.Tensor] = None  # B x N2 x K
    p_gt: Optional[torch.Tensor] = None  # B x N2
    halted: Optional[torch.Tensor] = None  # B x N2 bool: 2D slots masked after this iteration
    soft_codes: Optional[torch.Tensor] = None  # B x C x G x G what the base pixel decoder reads
    images: Optional[torch.Tensor] = None  # B x 3 x H x W, unclamped
    pred_latents: Optional[torch.Tensor] = None  # B x N2 x C predicted scaled base latents (VAE base)


@dataclass
class Rollout:
    base_latents: torch.Tensor  # B x C x G x G (VAE: the scaled latents, sample or mean)
    gt: Optional[torch.Tensor]  # B x N2 (None for a VAE base)
    iterations: list[Iteration] = field(default_factory=list)


def _decode_step(model, x, gt, k, generator, want_pixels: bool, halting: bool):
    """Factorise/quantize the 1D slots of the encoded sequence ``x``, decode them, halt."""
    enc = model.encoder
    latent_tokens = enc.latent_part(x)
    latents = enc.factorise(latent_tokens)
    codes, ids, qloss = model.quantize(latents)
    logits = model.decoder(codes)
    if gt is None:  # VAE base: the decoder regresses the latents; no codes, no halting
        grid = model.latent_grid(logits)
        it = Iteration(latent_tokens.shape[1], latent_tokens, latents, codes, ids, qloss, soft_codes=grid,
                       pred_latents=logits)
        if want_pixels:
            it.images = model.base_pixels(grid)
        return x, it
    probs = logits.float().softmax(dim=-1)
    p_gt = probs.gather(-1, gt[..., None])[..., 0]
    soft = model.soft_codes(probs)
    it = Iteration(latent_tokens.shape[1], latent_tokens, latents, codes, ids, qloss, logits, p_gt,
                   soft_codes=soft)
    if want_pixels:
        it.images = model.base.decode_codes(soft)
    if halting:
        it.halted = model.halting_mask(p_gt, generator)
        x = enc.halt(x, it.halted)
    return x, it


def full_rollout(model, images: torch.Tensor, iters: Optional[int] = None, decode_at=None, pixels_at=(),
                 generator: Optional[torch.Generator] = None) -> Rollout:
    """Run ``iters`` iterations (default all) on the whole batch.

    ``decode_at``: iterations whose 1D tokens go through the latent decoder (default: all — in
    eval mode halting needs the decoder every iteration; the official training runs it only where
    a loss is taken). Halting happens after each decoded iteration. ``pixels_at``: iterations
    whose soft codes are also pixel-decoded (a subset of ``decode_at``; ``"all"`` for every one).
    """
    iters = model.config.max_iters if iters is None else iters
    decode_at = set(range(iters)) if decode_at is None else set(decode_at)
    pixels_at = set(range(iters)) if pixels_at == "all" else set(pixels_at)
    z, gt = model.base_tokens(images, generator)
    x = model.encoder.start(z, images)
    out = Rollout(z, gt)
    for k in range(iters):
        x = model.encoder.transformer(x)
        if k in decode_at:
            x, it = _decode_step(model, x, gt, k, generator, k in pixels_at, model.config.halting != "off")
        else:
            lat = model.encoder.latent_part(x)
            f = model.encoder.factorise(lat)
            codes, ids, qloss = model.quantize(f)
            it = Iteration(lat.shape[1], lat, f, codes, ids, qloss)
        out.iterations.append(it)
        if k + 1 < iters:
            x = model.encoder.extend(x, k + 1)
    return out


def adaptive_rollout(model, images: torch.Tensor, criterion: Criterion, generator: Optional[torch.Generator] = None,
                     return_images: bool = True) -> Selection:
    """Per-image token selection with early exit (see the module docstring)."""
    cfg = model.config
    b, dev = images.shape[0], images.device
    n_max, d = cfg.max_tokens, cfg.token_dim
    cap = min(criterion.max_tokens or n_max, n_max)
    z, gt = model.base_tokens(images, generator)
    x = model.encoder.start(z, images)

    ids_out = torch.full((b, n_max), PAD_ID, dtype=torch.long, device=dev)
    codes_out = torch.zeros(b, n_max, d, device=dev)
    latents_out = torch.zeros(b, n_max, d, device=dev)
    lengths = torch.zeros(b, dtype=torch.long, device=dev)
    errors = torch.full((b, cfg.max_iters), float("nan"), device=dev)
    best_err = torch.full((b,), float("inf"), device=dev)
    best_soft = best_img = None
    active = torch.arange(b, device=dev)  # original indices of the images still iterating
    ran = 0
    for k in range(cfg.max_iters):
        ran = k + 1
        x = model.encoder.transformer(x)
        x, it = _decode_step(model, x, gt, k, generator, criterion.needs_pixels, cfg.halting != "off")
        n = it.num_tokens
        p_gt = it.p_gt if it.p_gt is not None else images.new_zeros(images.shape[0], 0)  # VAE: no codes
        err = criterion.error(IterationStats(n, images, p_gt, it.images)).float()
        errors[active, k] = err
        better = err < best_err[active]
        rows = active[better]
        lengths[rows] = n
        best_err[rows] = err[better]
        ids_out[rows] = PAD_ID
        if it.ids is not None:
            ids_out[rows, :n] = it.ids[better]
        codes_out[rows] = 0
        codes_out[rows, :n] = it.codes[better].float()
        latents_out[rows] = 0
        latents_out[rows, :n] = it.latents[better].float()
        if return_images:  # keep the chosen soft codes (token criteria) or decodes (pixel criteria)
            best_soft, best_img = _keep_best(best_soft, best_img, it, better, active, b)
        done = criterion.met(err, n) | (n >= cap) | (k + 1 == cfg.max_iters)
        keep = ~done
        if not bool(keep.any()):
            break
        active, x, images = active[keep], x[keep], images[keep]
        gt = gt[keep] if gt is not None else None
        x = model.encoder.extend(x, k + 1)
    tokens = Tokens(ids=ids_out if cfg.quantized else None, lengths=lengths, codes=codes_out, latents=latents_out)
    images_out = None
    if return_images:  # pixel criteria decoded every iteration; token criteria decode once, all images together
        images_out = (best_img if criterion.needs_pixels else model.base_pixels(best_soft)).float().clamp_(0, 1)
    return Selection(tokens, images_out, errors, ran)


def _keep_best(best_soft, best_img, it: Iteration, better, active, b):
    """Store, at the original indices, the soft codes / pixel decodes of rows that improved."""
    if it.images is not None:
        if best_img is None:
            best_img = it.images.new_zeros((b, *it.images.shape[1:]))
        best_img[active[better]] = it.images[better]
    else:
        if best_soft is None:
            best_soft = it.soft_codes.new_zeros((b, *it.soft_codes.shape[1:]))
        best_soft[active[better]] = it.soft_codes[better]
    return best_soft, best_img
