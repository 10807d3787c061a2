"""MaskGIT training objective as pure tensor functions (TiTok's official recipe, configs/training/generator/maskgit.yaml of bytedance/1d-tokenizer).

* masking: per sample t ~ U(0, 1), ratio r = arccos(t) / (pi/2) clamped to [1e-6, 1], n = round(L r)
  clamped to [1, L] positions chosen uniformly among the sample's L valid positions;
* class dropout: a label becomes "no class" with probability p (0.1);
* loss: label-smoothed (0.1) cross-entropy at every valid position, weight 1 where masked and 0.1
  where visible, normalised by the sum of the weights.

Length-aware models (``adatok.generators.length``) add [PAD] past each length and a length token.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F


def arccos_mask(lengths: torch.Tensor, num_tokens: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Which positions to mask. Shapes: lengths ``B`` -> mask ``B x K`` bool (False past a length).

    The n masked positions of a sample are the n smallest of uniform noise over its valid positions
    (noise past the length is pushed above 1), i.e. a uniform random n-subset."""
    b, device = lengths.shape[0], lengths.device
    t = torch.rand(b, device=device, generator=generator)
    ratio = (torch.acos(t) / (math.pi * 0.5)).clamp(1e-6, 1.0)
    count = torch.minimum((lengths.float() * ratio).round().clamp(min=1), lengths.float()).long()
    positions = torch.arange(num_tokens, device=device)
    valid = positions < lengths.unsqueeze(1)
    noise = torch.rand(b, num_tokens, device=device, generator=generator) + (~valid).float() * 2
    rank = noise.argsort(dim=1).argsort(dim=1)
    return rank < count.unsqueeze(1)


def drop_labels(labels: torch.Tensor, prob: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Class dropout: labels -> -1 ("no class") with probability ``prob``."""
    if prob <= 0:
        return labels
    drop = torch.rand(labels.shape, device=labels.device, generator=generator) < prob
    return torch.where(drop, torch.full_like(labels, -1), labels)


def masked_token_loss(logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor, valid: torch.Tensor,
                      label_smoothing: float = 0.1, unmasked_weight: float = 0.1) -> tuple[torch.Tensor, dict]:
    """Weighted, label-smoothed cross-entropy. Shapes: logits ``B x K x V``, targets/masked/valid
    ``B x K``. Returns (loss, logs with the masked-position accuracy)."""
    targets = targets.clamp(min=0)  # padding (-1, as ALIT pads) sits where valid is False: weight 0
    ce = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), label_smoothing=label_smoothing,
                         reduction="none").view_as(targets)
    weight = torch.where(masked, 1.0, unmasked_weight) * valid.float()
    loss = (ce * weight).sum() / weight.sum().clamp(min=1e-6)
    hit = (logits.argmax(-1) == targets) & masked
    accuracy = hit.sum().float() / masked.sum().clamp(min=1).float()
    return loss, {"masked_acc": accuracy.detach()}


def length_loss(length_logits: torch.Tensor, bins: torch.Tensor, selected: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Cross-entropy of the length head on the ``selected`` samples (those whose length was hidden).
    Shapes: length_logits ``B x N``, bins/selected ``B``. No boolean indexing: fixed shapes."""
    ce = F.cross_entropy(length_logits.float(), bins, reduction="none")
    w = selected.float()
    loss = (ce * w).sum() / w.sum().clamp(min=1.0)
    hit = ((length_logits.argmax(-1) == bins).float() * w).sum() / w.sum().clamp(min=1.0)
    return loss, {"length_ce": loss.detach(), "length_acc": hit.detach()}
