"""Multi-head self-attention with one fused QKV projection.

The fused ``qkv`` weight has rows ordered [Q; K; V], each split into heads as contiguous chunks
(the layout of ``torch.nn.MultiheadAttention.in_proj_weight`` and of timm's ``qkv``), so
official checkpoints load by renaming keys only.

The fast path calls ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels on GPU,
a fused kernel on CPU). ``attention_reference`` is the plain eager computation (explicit softmax),
kept as the baseline the benchmarks compare against and as an oracle in tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Eager softmax attention. Shapes: q, k, v ``B x H x N x D`` -> ``B x H x N x D``."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    return scores.softmax(dim=-1) @ v


class Attention(nn.Module):
    """Bidirectional multi-head self-attention.

    Shapes:
        x: B x N x W  ->  B x N x W
    """

    # Class-level switch used by benchmarks to measure the eager baseline in the same run.
    use_sdpa: bool = True

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, keep: slice | None = None) -> torch.Tensor:
        """``keep``: only these query positions are computed (keys and values stay all N tokens);
        the output is then ``B x len(keep) x W``, what the full forward gives at those positions."""
        b, n, w = x.shape
        # B x N x 3W -> 3 x B x H x N x D, one permute; q, k, v are views.
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, w // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if keep is not None:
            q = q[:, :, keep]
        if self.use_sdpa:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = attention_reference(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, q.shape[2], w))
