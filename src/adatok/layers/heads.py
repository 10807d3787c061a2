"""Per-position output heads shared by the 1D tokenizers' decoders."""

from __future__ import annotations

import torch
from torch import nn


class ProxyCodeHead(nn.Module):
    """Linear(W -> 2W) -> Tanh -> Linear(2W -> V) at every 2D position: logits over the V codes of
    a 2D base tokenizer (the proxy-code head of TiTok's two-stage training, Yu et al. 2024; ALIT's
    decoder head, Duggal et al. 2025), or V regressed latent channels (ALIT over a KL-VAE).
    Shapes: ``B x N x W`` -> ``B x N x V``."""

    def __init__(self, width: int, vocab: int):
        super().__init__()
        self.fc1 = nn.Linear(width, 2 * width)
        self.fc2 = nn.Linear(2 * width, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


__all__ = ["ProxyCodeHead"]
