"""Pre-norm transformer block and stack (the open_clip ``ResidualAttentionBlock`` that TiTok and
ALIT use): ``x = x + Attn(LN1(x)); x = x + MLP(LN2(x))``. No dropout, drop-path, layer-scale or
attention mask: the sequence is attended bidirectionally in full.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import Attention
from .mlp import Mlp


class TransformerBlock(nn.Module):
    """Shapes: x ``B x N x W`` -> ``B x N x W``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, eps: float = 1e-5):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """A stack of ``depth`` blocks. Shapes: ``B x N x W`` -> ``B x N x W``."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.blocks = nn.ModuleList(TransformerBlock(dim, num_heads, mlp_ratio) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x
