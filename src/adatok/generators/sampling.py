"""The MaskGIT sampling loop over 1D tokens (the official `generate` of bytedance/1d-tokenizer), batched and seeded.

All K ids start as [MASK]. At step s = 0..S-1 (ratio = (s+1)/S):

1. annealed temperature ``t = temperature * (1 - ratio)``;
2. guidance scale ``w`` from the schedule (:func:`guidance_scale`); if ``w != 0`` the conditional
   and unconditional passes run as ONE batch of 2B and are mixed as
   ``cond + w (cond - uncond)`` (constant, linear) or ``uncond + w (cond - uncond)`` (power-cosine);
   if ``w == 0`` only the conditional pass runs;
3. optional softmax annealing: logits / ``(0.5 + 0.8 (1 - ratio))``;
4. candidates = argmax(logits + t * Gumbel); confidence = the candidate's logit; fixed positions keep
   their id with confidence +inf;
5. unless it is the last step, re-mask the ``mask_len = clamp(floor(L * acos(ratio) / (pi/2)),
   1, #masked - 1)`` least confident positions, confidence perturbed by ``t * Gumbel`` (L = the
   sample's token count).

Everything is a tensor op over the whole batch: no Python loop over samples and no host sync
inside the loop. Noise comes from a ``torch.Generator`` on the model's device, so the same seed
gives the same ids; at temperature 0 the loop is deterministic and a sample does not depend on
the rest of its batch.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from .config import check_sampling


def guidance_scale(schedule: str, step: int, steps: int, scale: float, power: float = 3.0) -> float:
    """The guidance scale used at ``step`` (0-based) of ``steps``.

    constant: ``scale``; linear: ``scale * step / steps`` (0 at the first step, as the official
    loop, which only updates the scale after a step); power-cosine (MDT):
    ``(scale - 1) (1 - cos(pi (step/steps)^power)) / 2 + 1`` — computed in float32 like the
    official code, so the mixed logits are the same numbers.
    """
    if schedule == "constant":
        return float(scale)
    if schedule == "linear":
        return 0.0 if step == 0 else float(step / steps * scale)
    if schedule == "power-cosine":
        progress = torch.tensor(step / steps, dtype=torch.float32) ** torch.tensor(power, dtype=torch.float32)
        half = (1 - torch.cos(progress * math.pi)) * 1 / 2
        return float((scale - 1) * half + 1)
    check_sampling(1, schedule, 0.0, 0.0)  # raises the "unknown schedule" error
    raise AssertionError("unreachable")


def gumbel_noise(shape, generator: Optional[torch.Generator], device) -> torch.Tensor:
    """Standard Gumbel noise ``-log(-log(u))``, u ~ U[0, 1), logs clamped at 1e-20 (official)."""
    u = torch.rand(shape, generator=generator, device=device)
    return -torch.log((-torch.log(u.clamp(min=1e-20))).clamp(min=1e-20))


def remask_count(ratio: float, lengths: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Per sample: how many positions to re-mask after a step (arccos schedule).

    Shapes: lengths, masked ``B`` int64 (token count, positions still masked) -> ``B`` int64."""
    keep_masked = torch.floor(lengths.double() * (math.acos(ratio) / (math.pi * 0.5))).long()
    return torch.minimum(masked - 1, keep_masked).clamp(min=1)


LogitsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def maskgit_sample(
    logits_fn: LogitsFn,
    cond: torch.Tensor,
    null: torch.Tensor,
    init_ids: torch.Tensor,
    lengths: torch.Tensor,
    mask_id: int,
    steps: int,
    guidance: float = 0.0,
    schedule: str = "constant",
    temperature: float = 1.0,
    guidance_pow: float = 3.0,
    softmax_annealing: bool = False,
    generator: Optional[torch.Generator] = None,
    progress: bool = False,
) -> torch.Tensor:
    """Run the loop. ``logits_fn(ids, class_ids) -> B x K x V`` is the model; ``cond`` / ``null``
    are the class ids of the conditional / unconditional pass (``B``); ``init_ids`` the starting
    ids (``B x K``: [MASK] where to generate, anything else stays fixed, e.g. [PAD] past a
    sample's length); ``lengths`` the token count of each sample (``B``). Returns ids ``B x K``.
    """
    check_sampling(steps, schedule, guidance, temperature)
    ids = init_ids
    b, k = ids.shape
    device = ids.device
    bar = _progress(steps, progress)
    for step in range(steps):
        ratio = (step + 1) / steps
        t = temperature * (1.0 - ratio)
        w = guidance_scale(schedule, step, steps, guidance, guidance_pow)
        is_mask = ids == mask_id
        if w != 0:
            both = logits_fn(torch.cat([ids, ids]), torch.cat([cond, null])).float()
            c, u = both.chunk(2)
            logits = u + (c - u) * w if schedule == "power-cosine" else c + (c - u) * w
        else:
            logits = logits_fn(ids, cond).float()
        if softmax_annealing:
            logits = logits / (0.5 + 0.8 * (1.0 - ratio))
        noisy = logits + t * gumbel_noise(logits.shape, generator, device) if t > 0 else logits
        sampled = noisy.argmax(dim=-1)
        confidence = logits.gather(-1, sampled.unsqueeze(-1)).squeeze(-1)
        sampled = torch.where(is_mask, sampled, ids)
        bar.update(1)
        if step == steps - 1:
            ids = sampled
            break
        confidence = torch.where(is_mask, confidence, torch.full_like(confidence, math.inf))
        if t > 0:
            confidence = confidence + t * gumbel_noise((b, k), generator, device)
        count = remask_count(ratio, lengths, is_mask.sum(dim=-1))
        cut_off = confidence.sort(dim=-1).values.gather(1, (count - 1).unsqueeze(1))
        ids = torch.where(confidence <= cut_off, torch.full_like(sampled, mask_id), sampled)
    bar.close()
    return ids


def _progress(total: int, enabled: bool):
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc="sampling", unit="step", disable=not enabled or not sys.stderr.isatty(), leave=False)
