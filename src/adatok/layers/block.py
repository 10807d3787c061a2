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

    def forward(self, x: torch.Tensor, keep: slice | None = None) -> torch.Tensor:
        """``keep``: return only these positions, computed alone (every token still serves as key and
        value): ``B x len(keep) x W``, equal to ``forward(x)[:, keep]``."""
        if keep is None:
            x = x + self.attn(self.norm1(x))
        else:
            x = x[:, keep] + self.attn(self.norm1(x), keep)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """A stack of ``depth`` blocks. Shapes: ``B x N x W`` -> ``B x N x W``."""

    # Class-level switch (like ``Attention.use_sdpa``): False makes ``keep`` slice after the full last
    # block, as the official code does, for the benchmarks' baseline and for tests.
    trim_last_block: bool = True

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.blocks = nn.ModuleList(TransformerBlock(dim, num_heads, mlp_ratio) for _ in range(depth))

    def forward(self, x: torch.Tensor, keep: slice | None = None) -> torch.Tensor:
        """``keep``: the positions the caller reads (``B x len(keep) x W`` returned). The last block
        then computes only those (its other outputs feed nothing), e.g. TiTok's encoder keeps the K
        latent tokens of [cls, 256 patches, K latents]: for TiTok-L-32, 32 of 289 tokens."""
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, keep if (i == last and keep is not None and self.trim_last_block) else None)
        if keep is not None and not (self.trim_last_block and last >= 0):
            x = x[:, keep]
        return x
