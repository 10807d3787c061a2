"""ALIT's dynamic halting (Duggal et al. 2025): after an iteration, the 2D tokens the decoder
already reconstructs confidently are masked in the encoder's input, so later iterations spend
their new 1D tokens on the rest of the image.

``p_gt`` (B x N2) is the decoder's probability of each 2D slot's true base code. The rules:

* ``"bernoulli"`` — the official rule: mask slot i with probability p_gt(i) when p_gt(i) >=
  threshold (random, also at inference; seed it with a ``torch.Generator``);
* ``"threshold"`` — deterministic: mask iff p_gt(i) >= threshold (our inference default:
  reproducible per image, batch-independent);
* ``"off"`` — never mask.

Only a base tokenizer with codes can halt (``p_gt`` needs them): over a KL-VAE the rule must be
``"off"`` (the official VAE rule is a no-op: its mask is written into a copy). Pure tensor
functions; the encoder's ``halt`` applies a mask.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ...errors import ConfigError

HALTING_RULES = ("bernoulli", "threshold", "off")


def check_halting(rule: str, threshold, can_halt: bool = True) -> None:
    """ConfigError unless ``rule`` is one of ``HALTING_RULES``, ``threshold`` a probability, and
    the rule is ``"off"`` where the base tokenizer cannot halt (no codes)."""
    if rule not in HALTING_RULES:
        raise ConfigError(f"ALITConfig.halting={rule!r}: choose one of {HALTING_RULES}")
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and 0 <= threshold <= 1):
        raise ConfigError(f"ALITConfig.halting_threshold={threshold!r}: must be a probability in [0, 1]")
    if not can_halt and rule != "off":
        raise ConfigError(f"ALITConfig.halting={rule!r}: a VAE-based ALIT has no dynamic halting (the "
                          "official VAE rule never masks anything): set halting='off'")


def halts(rule: str) -> bool:
    """Whether the rule can ever mask a slot (the rollout then decodes every iteration)."""
    return rule != "off"


def halting_mask(p_gt: torch.Tensor, rule: str, threshold: float,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Which 2D slots to mask after an iteration. Shapes: p_gt B x N2 -> B x N2 bool."""
    confident = p_gt >= threshold
    if rule == "threshold":
        return confident
    if rule == "bernoulli":  # the official rule, random also at inference
        return torch.bernoulli(p_gt.float(), generator=generator).bool() & confident
    return torch.zeros_like(confident)


def mask_slots(image_tokens: torch.Tensor, mask: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Replace the 2D tokens where ``mask`` is set by ``masked`` (the mask token + position).
    Shapes: image_tokens B x N2 x W, mask B x N2 bool, masked N2 x W -> B x N2 x W."""
    return torch.where(mask[..., None], masked.to(image_tokens.dtype), image_tokens)


__all__ = ["HALTING_RULES", "check_halting", "halts", "halting_mask", "mask_slots"]
