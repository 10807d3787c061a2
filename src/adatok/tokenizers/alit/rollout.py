"""The recurrent rollout of ALIT (Duggal et al. 2025: recurrent allocation with dynamic halting),
in two forms.

``full_rollout``: every iteration for the whole batch (training, all-length strips, fidelity).
``adaptive_rollout``: per-image early exit. Each image stops at the first iteration its criterion
accepts (or at the cap/last iteration, keeping its best one); finished images leave the batch, so
later iterations only run on the images that still need tokens, and the loop ends as soon as all
are done. With a criterion that needs no pixels, the chosen base inputs of all images are
pixel-decoded together, once, after the loop (one batched decode instead of one per exit step).

Both take their parts explicitly (``RolloutParts``): the encoder, decoder and quantizer, the base
tokenizer's adapter (``base_tokenizer.py``) and the halting rule (``halting.py``).
VAE base: no base codes (``targets`` is None), the decoder regresses the base's scaled latents
(``pred_latents``), no halting; the generator, if any, draws the posterior sample.

Shapes: images B x 3 x H x W in [0, 1]; targets B x N2 (base codes); per iteration k with n_k =
tokens_per_iter * (k + 1) tokens: ids B x n_k, codes B x n_k x d, logits B x N2 x K
(VAE: pred_latents B x N2 x C).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from ...interface import PAD_ID
from ...types import Selection, Tokens
from ..selection import Criterion, IterationStats
from .base_tokenizer import to_grid


@dataclass(frozen=True)
class RolloutParts:
    """What a rollout runs: ``encoder``/``decoder`` (``modules.py``), ``quantize`` (factorised
    latents -> codes, ids or None, loss), ``base`` (the base tokenizer's adapter), ``to_pixels``
    (base inputs B x C x G x G -> images), ``halt`` (p_gt, generator -> B x N2 mask; None: no
    halting), ``training`` (whether a VAE base samples), and the sizes."""

    encoder: torch.nn.Module
    decoder: torch.nn.Module
    quantize: Callable
    base: object
    to_pixels: Callable
    halt: Optional[Callable]
    training: bool
    max_iters: int
    max_tokens: int
    token_dim: int
    quantized: bool


@dataclass
class Iteration:
    """One rollout iteration (all fields B-major; the decoder's fields only where it ran, ``images``
    only where asked for). VQGAN base: ``logits``, ``p_gt``, ``soft_codes``; VAE base:
    ``pred_latents``. ``base_input`` is what the base pixel decoder reads, for either."""

    num_tokens: int
    latent_tokens: torch.Tensor  # B x n x W encoder outputs of the 1D slots (before LayerNorm)
    latents: torch.Tensor  # B x n x d factorised latents (before quantisation)
    codes: torch.Tensor  # B x n x d what the decoder reads
    ids: Optional[torch.Tensor]  # B x n (None for continuous models)
    quantizer_loss: torch.Tensor
    logits: Optional[torch.Tensor] = None  # B x N2 x K (VQGAN base)
    p_gt: Optional[torch.Tensor] = None  # B x N2 (VQGAN base)
    halted: Optional[torch.Tensor] = None  # B x N2 bool: 2D slots masked after this iteration
    soft_codes: Optional[torch.Tensor] = None  # B x C x G x G expected base code vectors (VQGAN base)
    images: Optional[torch.Tensor] = None  # B x 3 x H x W, unclamped
    pred_latents: Optional[torch.Tensor] = None  # B x N2 x C predicted scaled base latents (VAE base)

    @property
    def base_input(self) -> Optional[torch.Tensor]:
        """B x C x G x G: the soft codes (VQGAN base) or the predicted latents as a grid (VAE base)."""
        if self.soft_codes is not None or self.pred_latents is None:
            return self.soft_codes
        return to_grid(self.pred_latents, int(round(self.pred_latents.shape[1] ** 0.5)))


@dataclass
class Rollout:
    base_latents: torch.Tensor  # B x C x G x G (VAE: the scaled latents, sample or mean)
    gt: Optional[torch.Tensor]  # B x N2 target base codes (None for a VAE base)
    iterations: list[Iteration] = field(default_factory=list)


def decode(parts: RolloutParts, codes: torch.Tensor, targets: Optional[torch.Tensor] = None):
    """The one decode path: 1D codes B x n x d -> (decoder output B x N2 x K|C, base input
    B x C x G x G, p_gt B x N2 or None). ``ALIT.decode_codes`` and the rollouts both use it."""
    out = parts.decoder(codes)
    grid, p_gt = parts.base.read(out, targets)
    return out, grid, p_gt


def _tokens(parts: RolloutParts, x: torch.Tensor):
    """The 1D slots of the encoded sequence -> (slots, factorised latents, codes, ids, loss)."""
    latent_tokens = parts.encoder.latent_part(x)
    latents = parts.encoder.factorise(latent_tokens)
    return (latent_tokens, latents, *parts.quantize(latents))


def _step(parts: RolloutParts, x, targets, generator, decode_it: bool, want_pixels: bool):
    """One iteration's tokens; when ``decode_it``, their decode (+ pixels) and the halting."""
    latent_tokens, latents, codes, ids, qloss = _tokens(parts, x)
    it = Iteration(latent_tokens.shape[1], latent_tokens, latents, codes, ids, qloss)
    if not decode_it:
        return x, it
    out, grid, it.p_gt = decode(parts, codes, targets)
    if parts.base.has_codes:
        it.logits, it.soft_codes = out, grid
    else:
        it.pred_latents = out
    if want_pixels:
        it.images = parts.to_pixels(grid)
    if parts.halt is not None:
        it.halted = parts.halt(it.p_gt, generator)
        x = parts.encoder.halt(x, it.halted)
    return x, it


def full_rollout(parts: RolloutParts, images: torch.Tensor, iters: Optional[int] = None, decode_at=None,
                 pixels_at=(), generator: Optional[torch.Generator] = None) -> Rollout:
    """Run ``iters`` iterations (default all) on the whole batch.

    ``decode_at``: iterations whose 1D tokens go through the latent decoder (default: all — in
    eval mode halting needs the decoder every iteration; the official training runs it only where
    a loss is taken). Halting happens after each decoded iteration. ``pixels_at``: iterations
    whose base inputs are also pixel-decoded (a subset of ``decode_at``; ``"all"`` for every one).
    """
    iters = parts.max_iters if iters is None else iters
    decode_at = set(range(iters)) if decode_at is None else set(decode_at)
    pixels_at = set(range(iters)) if pixels_at == "all" else set(pixels_at)
    z, targets = parts.base.encode(images, parts.training, generator)
    x = parts.encoder.start(z, images)
    out = Rollout(z, targets)
    for k in range(iters):
        x = parts.encoder.transformer(x)
        x, it = _step(parts, x, targets, generator, k in decode_at, k in pixels_at)
        out.iterations.append(it)
        if k + 1 < iters:
            x = parts.encoder.extend(x, k + 1)
    return out


def adaptive_rollout(parts: RolloutParts, images: torch.Tensor, criterion: Criterion,
                     generator: Optional[torch.Generator] = None, return_images: bool = True) -> Selection:
    """Per-image token selection with early exit (see the module docstring)."""
    b, dev, iters = images.shape[0], images.device, parts.max_iters
    z, targets = parts.base.encode(images, parts.training, generator)
    x = parts.encoder.start(z, images)
    n_max = parts.max_tokens
    cap = min(criterion.max_tokens or n_max, n_max)

    ids_out = torch.full((b, n_max), PAD_ID, dtype=torch.long, device=dev)
    codes_out = torch.zeros(b, n_max, parts.token_dim, device=dev)
    latents_out = torch.zeros(b, n_max, parts.token_dim, device=dev)
    lengths = torch.zeros(b, dtype=torch.long, device=dev)
    errors = torch.full((b, iters), float("nan"), device=dev)
    best_err = torch.full((b,), float("inf"), device=dev)
    best_input = best_img = None
    active = torch.arange(b, device=dev)  # original indices of the images still iterating
    ran = 0
    for k in range(iters):
        ran = k + 1
        x = parts.encoder.transformer(x)
        x, it = _step(parts, x, targets, generator, True, criterion.needs_pixels)
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
        if return_images:  # keep the chosen base inputs (token criteria) or decodes (pixel criteria)
            best_input, best_img = _keep_best(best_input, best_img, it, better, active, b)
        done = criterion.met(err, n) | (n >= cap) | (k + 1 == iters)
        keep = ~done
        if not bool(keep.any()):
            break
        active, x, images = active[keep], x[keep], images[keep]
        targets = targets[keep] if targets is not None else None
        x = parts.encoder.extend(x, k + 1)
    tokens = Tokens(ids=ids_out if parts.quantized else None, lengths=lengths, codes=codes_out, latents=latents_out)
    images_out = None
    if return_images:  # pixel criteria decoded every iteration; token criteria decode once, all images together
        images_out = (best_img if criterion.needs_pixels else parts.to_pixels(best_input)).float().clamp_(0, 1)
    return Selection(tokens, images_out, errors, ran)


def _keep_best(best_input, best_img, it: Iteration, better, active, b):
    """Store, at the original indices, the base inputs / pixel decodes of rows that improved."""
    if it.images is not None:
        if best_img is None:
            best_img = it.images.new_zeros((b, *it.images.shape[1:]))
        best_img[active[better]] = it.images[better]
    else:
        grid = it.base_input
        if best_input is None:
            best_input = grid.new_zeros((b, *grid.shape[1:]))
        best_input[active[better]] = grid[better]
    return best_input, best_img
