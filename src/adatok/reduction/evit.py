"""EViT — Not All Patches are What You Need (Liang et al., ICLR 2022), youweiliang/evit.

At a few blocks (default the 4th, 7th and 10th of 12: 0-based 3, 6, 9), after attention and its
residual, keep [CLS] plus the ``ceil(keep_rate * (N - 1))`` tokens the [CLS] query attends to most
(head-averaged probabilities), in descending-attention order as the official code does; optionally
fuse the others into one extra token, their sum weighted by their raw class attention. The MLP
then runs on the kept tokens. Token counts for 196 patches at 0.7: 196 -> 139 -> 99 -> 71 with
fusion, 196 -> 138 -> 97 -> 68 without.

Only the [CLS] row of the attention matrix is formed (everything else stays in the fused SDPA
kernel): the official code computes the whole matrix with an explicit softmax in those blocks.

Per-image mode (``threshold`` set, ours): each image drops its least-attended tokens as long as
together they hold less than ``1 - threshold`` of its [CLS] attention mass (so the kept tokens hold
more than ``threshold`` of it), at most the fixed mode's count (the cap: ``ceil(keep_rate n)`` are
always kept) and never below ``min_tokens`` ([CLS] included; a fused token comes on top). The batch
is padded as in threshold ToMe (:func:`prune_per_image`).

Training: the keep rate is warmed up from 1 (``adatok.reduction.set_keep_rate`` with
``ops.keep_rate_warmup``: 1 for ``start`` steps, then a half cosine down to ``keep_rate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import math

import torch
from torch import Tensor

from . import ops
from .base import BlockNeeds, Reducer, TokenState, apply_padded, check_blocks, check_min_tokens, check_ratio


@dataclass(frozen=True)
class EViTConfig:
    """``keep_rate``: share of non-[CLS] tokens kept at each reducing block; ``blocks``: 0-based
    reducing blocks (None: 3, 6, 9 for 12 blocks, ``(d//4, d//2, 3d//4)`` for depth d);
    ``fuse_token``: fuse the inattentive tokens into one (EViT's main method); ``prop_attn``: proportional attention on the fused token's size (off in the official code).

    Per-image mode (``threshold`` in (0, 1] set, ours): keep, per image, the most attended tokens
    holding more than ``threshold`` of the [CLS] attention mass (1 keeps everything); ``keep_rate``
    is then the cap (never fewer kept than the fixed mode keeps) and ``min_tokens`` the floor."""

    keep_rate: float = 0.7
    blocks: Optional[tuple] = None
    fuse_token: bool = True
    prop_attn: bool = False
    trace_source: bool = False
    threshold: Optional[float] = None
    min_tokens: int = 1

    def __post_init__(self):
        check_ratio("EViTConfig", "keep_rate", self.keep_rate, 0.0, 1.0)
        if self.threshold is not None:
            check_ratio("EViTConfig", "threshold", self.threshold, 0.0, 1.0)
        check_min_tokens("EViTConfig", self.min_tokens)
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


def prune_per_image(x: Tensor, state: TokenState, scores: Tensor, threshold: Optional[float], rate: float,
                    min_tokens: int, order: str, fuse: bool) -> Tensor:
    """:func:`prune_tokens` with a per-image count, on a (possibly) padded batch: each image drops its
    least-attended real tokens while together they hold less than ``1 - threshold`` of its attention
    mass (``threshold=None``: as many as the cap allows), at most ``n - ceil(rate n)`` (the cap) and
    never leaving fewer than ``min_tokens`` ([CLS] + kept). Kept tokens in ``order`` ("score" or
    "position"), then, with ``fuse``, the fused token where the image dropped something, then
    padding. No loop over images; one host read (the new width). Shared with ImagePiece.

    Shapes: x B x N x C, scores B x (N - 1) (0 on padding)."""
    b, t, _ = x.shape
    with torch.no_grad():
        real = ops.valid_tokens(state.size)[:, 1:]
        n = real.sum(dim=1)
        s = scores.float().masked_fill(~real, 0.0)
        ascending = s.masked_fill(~real, math.inf).argsort(dim=1, stable=True)  # least attended first, padding last
        mass = s.gather(1, ascending).cumsum(dim=1)  # padding adds exactly 0: the same prefix sums as alone
        if threshold is None:
            passing = n
        else:
            passing = (mass < (1.0 - threshold) * mass[:, -1:]).sum(dim=1)
        cap = n - torch.minimum(n, torch.ceil(rate * n.double()).long())  # EViT's ceil(rate n) kept
        count = ops.capped_count(passing, cap, n + 1 - min_tokens)
        rank = torch.empty_like(ascending).scatter_(1, ascending, torch.arange(t - 1, device=x.device).expand(b, -1))
        drop = (rank < count[:, None]) & real  # B x (N - 1)
        if order == "score":
            key = 1 + ops.rank_of(s.masked_fill(~real, -math.inf), descending=True)
        else:
            key = torch.arange(1, t, device=x.device).expand(b, -1)
        key = torch.cat([torch.zeros_like(key[:, :1]), key], dim=1)  # [CLS] first
        gone = torch.cat([torch.zeros_like(real[:, :1]), drop | ~real], dim=1)
        if fuse:  # one more slot after every kept token: the fused token, padding where nothing was dropped
            key = torch.cat([key, torch.full_like(key[:, :1], t)], dim=1)
            gone = torch.cat([gone, (count == 0)[:, None]], dim=1)
        layout, lengths = ops.compact(key, gone)
    extra = None
    if fuse:
        w = (s * drop).to(x.dtype)  # raw class attention of the dropped tokens (not renormalised), 0 elsewhere
        fused = (x[:, 1:] * w[..., None]).sum(dim=1, keepdim=True)
        fused_size = (state.size[:, 1:] * drop[..., None]).sum(dim=1, keepdim=True)
        fused_source = None
        if state.source is not None:
            fused_source = (state.source[:, 1:] * drop[..., None]).amax(dim=1, keepdim=True)
        extra = (fused, fused_size, fused_source)
    return apply_padded(x, state, ops.PaddedMerge(None, None, None, layout, lengths), extra)


class EViTReducer(Reducer):
    method = "evit"

    def __init__(self, config: EViTConfig):
        super().__init__(config)
        self.blocks: tuple = ()

    def plan(self, depth: int, num_patches: int) -> None:
        self.blocks = check_blocks("EViTConfig", self.config.blocks, depth)
        self.needs = [BlockNeeds(cls_attn=i in self.blocks) for i in range(depth)]

    def token_counts(self, num_patches: int) -> list[int]:
        """Tokens after each block; in threshold mode the fewest possible (every cap reached, floor
        ignored): images keep at least these."""
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
        if self.config.threshold is not None:
            return prune_per_image(x, state, cls_attn, self.config.threshold, rate, self.config.min_tokens, "score",
                                   self.config.fuse_token)
        return prune_tokens(x, state, cls_attn, rate, "score", self.config.fuse_token)
