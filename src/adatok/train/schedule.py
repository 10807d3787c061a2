"""Learning-rate schedules and AdamW parameter groups."""

from __future__ import annotations

import math

import torch
from torch import nn

# Parameters without weight decay (official TiTok/ALIT recipes): 1-D tensors and these names.
NO_DECAY_WORDS = ("ln", "norm", "bias", "latent_tokens", "mask_token", "embedding", "embed", "cls_token", "gamma")


def warmup_cosine(step: int, total: int, warmup: int, base: float, end: float, schedule: str = "cosine") -> float:
    """Learning rate at ``step``: linear warm-up from 0 over ``warmup`` steps, then cosine from
    ``base`` to ``end`` over the remaining steps (or constant ``base``)."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if schedule == "constant":
        return base
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return end + (base - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, cfg, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        return warmup_cosine(step, total_steps, cfg.warmup_steps, cfg.lr, cfg.end_lr, cfg.schedule) / cfg.lr

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def adamw(params_or_module, cfg) -> torch.optim.AdamW:
    """AdamW with weight decay only on >= 2-D weights that are not norms/embeddings/tokens."""
    if isinstance(params_or_module, nn.Module):
        decay, no_decay = [], []
        for name, p in params_or_module.named_parameters():
            if not p.requires_grad:
                continue
            if p.ndim < 2 or any(w in name for w in NO_DECAY_WORDS):
                no_decay.append(p)
            else:
                decay.append(p)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    else:
        groups = [{"params": [p for p in params_or_module if p.requires_grad], "weight_decay": cfg.weight_decay}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
