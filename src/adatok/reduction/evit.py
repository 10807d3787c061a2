"""EViT — Not All Patches are What You Need (Liang et al., ICLR 2022), youweiliang/evit.

At a few blocks (default the 4th, 7th and 10th of 12: 0-based 3, 6, 9), after attention and its
residual, keep [CLS] plus the ``ceil(keep_rate * (N - 1))`` tokens the [CLS] query attends to most
(head-averaged probabilities), in descending-attention order as the official code does; optionally
fuse the others into one extra token, their sum weighted by their raw class attention. The MLP
then runs on the kept tokens. Token counts for 196 patches at 0.7: 196 -> 139 -> 99 -> 71 with
fusion, 196 -> 138 -> 97 -> 68 without.

Only the [CLS] row of the attention matrix is formed (everything else stays in the fused SDPA
kernel): the official code computes the whole matrix with an explicit softmax in those blocks.

Training: the keep rate is warmed up from 1 (``adatok.reduction.set_keep_rate`` with
``ops.keep_rate_warmup``: 1 for ``start`` steps, then a half cosine down to ``keep_rate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from . import ops
from .base import BlockNeeds, Reducer, TokenState, check_blocks, check_ratio


@dataclass(frozen=True)
class EViTConfig:
    """``keep_rate``: share of non-[CLS] tokens kept at each reducing block; ``blocks``: 0-based
    reducing blocks (None: 3, 6, 9 for 12 blocks, ``(d//4, d//2, 3d//4)`` for depth d);
    ``fuse_token``: fuse the inattentive tokens into one (EViT's main method); ``prop_attn``: proportional attention on the fused token's size (off in the official code)."""

    keep_rate: float = 0.7
    blocks: Optional[tuple] = None
    fuse_token: bool = True
    prop_attn: bool = False
    trace_source: bool = False

    def __post_init__(self):
        check_ratio("EViTConfig", "keep_rate", self.keep_rate, 0.0, 1.0)
        if isinstance(self.blocks, list):
            object.__setattr__(self, "blocks", tuple(self.blocks))


def prune_tokens(x: Tensor, state: TokenState, scores: Tensor, rate: float, order: str, fuse: bool) -> Tensor:
    """Keep [CLS] and the top ``ceil(rate * (N - 1))`` tokens by ``scores`` (B x (N - 1)), in
    ``order`` ("score" or "position"); with ``fuse`` the others become one token appended at the end
    (weights = their scores; its size and source are the union of theirs). Shared with ImagePiece."""
    n = x.shape[1] - 1
    k = ops.keep_count(rate, n)
    if k >= n:
        return x
    idx = ops.topk_keep(scores, k, order=order) + 1
    cls = torch.zeros_like(idx[:, :1])
    keep = torch.cat([cls, idx], dim=1)
    out = ops.gather_tokens(x, keep)
    if not fuse:
        state.keep(keep)
        return out
    drop = ops.complement(idx - 1, n) + 1
    fused = ops.fuse_tokens(x, drop, scores.gather(1, drop - 1).to(x.dtype))
    fused_size = ops.gather_tokens(state.size, drop).sum(dim=1, keepdim=True)
    state.size = torch.cat([ops.gather_tokens(state.size, keep), fused_size], dim=1)
    if state.source is not None:
        fused_source = ops.gather_tokens(state.source, drop).amax(dim=1, keepdim=True)
        state.source = torch.cat([ops.gather_tokens(state.source, keep), fused_source], dim=1)
    state.merged = True
    return torch.cat([out, fused], dim=1)


class EViTReducer(Reducer):
    method = "evit"

    def __init__(self, config: EViTConfig):
        super().__init__(config)
        self.blocks: tuple = ()

    def plan(self, depth: int, num_patches: int) -> None:
        self.blocks = check_blocks("EViTConfig", self.config.blocks, depth)
        self.needs = [BlockNeeds(cls_attn=i in self.blocks) for i in range(depth)]

    def token_counts(self, num_patches: int) -> list[int]:
        rate = self.config.keep_rate if self.keep_rate is None else self.keep_rate
        out, n = [], num_patches
        for i in range(len(self.needs)):
            if i in self.blocks:
                k = ops.keep_count(rate, n)
                n = k + int(self.config.fuse_token) if k < n else n
            out.append(n + 1)
        return out

    def reduce(self, i: int, x: Tensor, state: TokenState, metric, cls_attn) -> Tensor:
        if i not in self.blocks:
            return x
        rate = self.config.keep_rate if self.keep_rate is None else self.keep_rate
        return prune_tokens(x, state, cls_attn, rate, "score", self.config.fuse_token)
