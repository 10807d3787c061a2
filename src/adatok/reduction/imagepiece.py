"""ImagePiece — Content-aware Re-tokenization for Efficient Image Recognition (Yoa et al., AAAI 2025).

Like WordPiece's MaxMatch, ImagePiece groups tokens that carry too little meaning on their own
(low class attention: "non-semantic") with similar neighbours until the group means something,
and discards what stays meaningless. At each re-tokenization block, between attention and MLP:

1. importance: class attention of every token (head-averaged [CLS] row, with proportional
   attention so a merged token is scored as the group it stands for);
2. the ``k = floor(p (N - 1))`` least important tokens are the candidates; sorted by importance
   (ascending), they are dealt alternately into groups A (even ranks) and B (odd ranks);
3. bipartite soft matching inside the candidates: every A token finds its most similar B token
   (cosine of head-averaged keys); the ``r = round(merge_ratio (N - 1))`` best pairs (at most
   ``|A|``) merge into size-weighted averages; [CLS] and semantic tokens are never touched;
4. re-scoring: a merged token's importance is the sum of its members' (what proportional
   attention gives a group of equal keys), so a group may rise out of the bottom-k;
   ``rounds > 1`` repeats 2-4 inside the block on the re-scored tokens;
5. pruning: keep [CLS] and the ``ceil(keep_rate (N' - 1))`` most important tokens (EViT-like);
   ``rescore="next_block"`` defers this to the next block, whose attention re-evaluates the
   merged tokens for real. Kept tokens keep their relative order (deterministic, testable).

Per-image mode (``threshold`` and/or ``merge_threshold`` set, ours): each image computes its own
k and r from its own token count; among its candidates it merges the A tokens whose best cosine
similarity exceeds ``merge_threshold`` (at most its r: the cap; ``None``: always r), and it prunes as
EViT's per-image mode does (the least important tokens while they hold less than ``1 - threshold`` of
the importance mass, at most the fixed count; ``None``: always the fixed count), never below
``min_tokens``. The batch is padded as in threshold ToMe.

The Local-Coherence-Bias stem (``lcb=True``, :mod:`.lcb_stem`) replaces the 16x16 patchify by
overlapping convolutions so that neighbouring non-semantic patches get similar keys.

No official code exists. Published: the 3-step method, bipartite matching, A/B groups, re-scoring,
discarding, the LCB's 4x 3x3 + 1x 1x1 convolutions, Table 1 at keep rate 0.7. Everything else is
**our choice**, each a field below (see docs/reduction.md): p = 0.3, merge ratio 0.08 and pruning
keep rate 0.8 are the values a review of the paper reports; blocks 3/6/9 follow EViT's setting
(the paper compares at it); ascending sort, cosine of keys, sum re-scoring, no fusion, LCB widths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import torch
from torch import Tensor

from ..errors import ConfigError
from . import ops
from .base import (BlockNeeds, Reducer, TokenState, apply_padded, check_blocks, check_min_tokens,
                   check_ratio)
from .evit import prune_per_image, prune_tokens

RESCORE = ("sum", "next_block")


@dataclass(frozen=True)
class ImagePieceConfig:
    """Defaults are the library's (p 0.3, merge 0.08, keep 0.8); :meth:`table1` is the paper's
    Table-1 setting (keep 0.7 at the 4th/7th/10th block). Fields marked (ours) are not in the paper."""

    blocks: Optional[tuple] = None  # re-tokenization (and pruning) blocks, 0-based; None: 3, 6, 9 of 12
    #                                 (the same relative depths otherwise) (ours: EViT's setting)
    nonsemantic_ratio: float = 0.3  # p: bottom-k = floor(p (N - 1)) candidates (review: p = 0.3)
    merge_ratio: float = 0.08  # r = round(merge_ratio (N - 1)) merges per round, <= |A| (review: 0.08)
    keep_rate: float = 0.8  # pruning keeps ceil(keep_rate (N' - 1)); 1 = re-tokenization only (review: 0.8)
    rounds: int = 1  # re-tokenization rounds per block (ours)
    rescore: str = "sum"  # "sum": re-score merged tokens by summed importance, prune in the same block;
    #                       "next_block": prune in the next block with its own attention (ours)
    fuse_pruned: bool = False  # fuse pruned tokens into one, EViT-style (ours: off, as "Discard" in Fig. 2)
    prop_attn: bool = True  # proportional attention (log size bias) (ours)
    lcb: bool = False  # Local-Coherence-Bias stem (needs training; the presets turn it on)
    lcb_widths: tuple = (0.0625, 0.125, 0.25, 0.5)  # LCB 3x3 conv widths as fractions of D (ours: a
    #                       light stem, 2.6% of DeiT-S's FLOPs; Xiao et al.'s (1/8, 1/4, 1/2, 1) costs 8%)
    trace_source: bool = False
    threshold: Optional[float] = None  # per-image pruning: keep > threshold of the importance mass (ours)
    merge_threshold: Optional[float] = None  # per-image merging: cosine similarity above which a pair merges (ours)
    min_tokens: int = 1  # per-image floor, [CLS] included (ours)

    def __post_init__(self):
        for name in ("blocks", "lcb_widths"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        check_ratio("ImagePieceConfig", "nonsemantic_ratio", self.nonsemantic_ratio, 0.0, 1.0)
        check_ratio("ImagePieceConfig", "merge_ratio", self.merge_ratio, 0.0, 0.5, low_open=False)
        check_ratio("ImagePieceConfig", "keep_rate", self.keep_rate, 0.0, 1.0)
        if not isinstance(self.rounds, int) or isinstance(self.rounds, bool) or self.rounds < 1:
            raise ConfigError(f"ImagePieceConfig.rounds={self.rounds!r}: use an integer >= 1")
        if self.rescore not in RESCORE:
            raise ConfigError(f"ImagePieceConfig.rescore={self.rescore!r}: use one of {RESCORE}")
        if self.threshold is not None:
            check_ratio("ImagePieceConfig", "threshold", self.threshold, 0.0, 1.0)
        if self.merge_threshold is not None:
            check_ratio("ImagePieceConfig", "merge_threshold", self.merge_threshold, -1.0, 1.0)
        check_min_tokens("ImagePieceConfig", self.min_tokens)
        if len(self.lcb_widths) != 4 or not all(isinstance(w, (int, float)) and 0 < w <= 4 for w in self.lcb_widths):
            raise ConfigError(f"ImagePieceConfig.lcb_widths={self.lcb_widths!r}: use 4 fractions of the width in (0, 4]")

    @property
    def per_image(self) -> bool:
        return self.threshold is not None or self.merge_threshold is not None

    @classmethod
    def table1(cls, **overrides) -> "ImagePieceConfig":
        """The paper's Table-1 setting: keep rate 0.7 at the 4th, 7th and 10th block, LCB stem."""
        return replace(cls(keep_rate=0.7, lcb=True), **overrides)


def round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


class ImagePieceReducer(Reducer):
    method = "imagepiece"

    def __init__(self, config: ImagePieceConfig):
        super().__init__(config)
        self.blocks: tuple = ()
        self.prune_blocks: tuple = ()

    def plan(self, depth: int, num_patches: int) -> None:
        self.blocks = check_blocks("ImagePieceConfig", self.config.blocks, depth)
        if self.config.rescore == "next_block":
            if self.blocks and self.blocks[-1] + 1 >= depth:
                raise ConfigError(f"ImagePieceConfig: rescore='next_block' prunes in the block after "
                                  f"{self.blocks[-1]}, beyond this model's depth {depth}; use earlier blocks")
            self.prune_blocks = tuple(b + 1 for b in self.blocks)
        else:
            self.prune_blocks = self.blocks
        self.needs = [BlockNeeds(metric=i in self.blocks, cls_attn=i in self.blocks or i in self.prune_blocks)
                      for i in range(depth)]

    def _rate(self) -> float:
        return self.config.keep_rate if self.keep_rate is None else self.keep_rate

    def merges(self, n: int) -> tuple[int, int]:
        """(candidates k, merges r) for ``n`` non-[CLS] tokens in one round."""
        k = int(math.floor(self.config.nonsemantic_ratio * n))
        r = min(round_half_up(self.config.merge_ratio * n), (k + 1) // 2) if k >= 2 else 0
        return k, r

    def token_counts(self, num_patches: int) -> list[int]:
        out, n = [], num_patches
        for i in range(len(self.needs)):
            if i in self.blocks:
                for _ in range(self.config.rounds):
                    n -= self.merges(n)[1]
            if i in self.prune_blocks:
                k = ops.keep_count(self._rate(), n)
                n = k + int(self.config.fuse_pruned) if k < n else n
            out.append(n + 1)
        return out

    def reduce(self, i: int, x: Tensor, state: TokenState, metric, cls_attn) -> Tensor:
        scores = cls_attn
        c = self.config
        retokenize = self._retokenize_per_image if c.per_image else self._retokenize
        if i in self.blocks:
            for round_ in range(c.rounds):
                x, metric, scores, merged = retokenize(x, state, metric, scores, record=round_ == 0)
                if not merged:
                    break
        if i in self.prune_blocks:
            if c.per_image:
                x = prune_per_image(x, state, scores, c.threshold, self._rate(), c.min_tokens, "position",
                                    c.fuse_pruned)
            else:
                x = prune_tokens(x, state, scores, self._rate(), "position", c.fuse_pruned)
        return x

    def _retokenize_per_image(self, x: Tensor, state: TokenState, metric: Tensor, scores: Tensor, record: bool):
        """Steps 2-4 with each image's own k and r (from its real token count), merges above
        ``merge_threshold`` only, never below ``min_tokens``; on a (possibly) padded batch.
        Shapes: x B x N x C, metric B x N x d, scores B x (N - 1) (0 on padding)."""
        c = self.config
        b, t, _ = x.shape
        k_max, r_max = self.merges(t - 1)  # no image has more candidates or merges than a full one
        if r_max <= 0:
            return x, metric, scores, False
        with torch.no_grad():
            valid = ops.valid_tokens(state.size)
            real = valid[:, 1:]
            n = real.sum(dim=1)
            k = torch.floor(c.nonsemantic_ratio * n.double()).long()
            r = torch.minimum(torch.floor(c.merge_ratio * n.double() + 0.5).long(), (k + 1) // 2)
            r = torch.where(k >= 2, r, torch.zeros_like(r))
            cand = scores.float().masked_fill(~real, math.inf).argsort(dim=1, stable=True)[:, :k_max] + 1
            a_idx, b_idx = cand[:, 0::2], cand[:, 1::2]  # alternately by ascending importance
            a_ok = 2 * torch.arange(a_idx.shape[1], device=x.device)[None] < k[:, None]
            b_ok = 2 * torch.arange(b_idx.shape[1], device=x.device)[None] + 1 < k[:, None]
            unit = ops.unit_rows(metric)
            sim = ops.gather_tokens(unit, a_idx) @ ops.gather_tokens(unit, b_idx).transpose(-1, -2)
            node_max, node_idx = sim.masked_fill(~b_ok[:, None, :], -math.inf).max(dim=-1)
            node_max = node_max.masked_fill(~a_ok, -math.inf)
            merged = ops.select_above(node_max, c.merge_threshold, r, n + 1 - c.min_tokens)
            gone = ~valid | torch.zeros_like(valid).scatter_(1, a_idx, merged)
            layout, lengths = ops.compact(torch.arange(t, device=x.device).expand(b, t), gone)
            merge = ops.PaddedMerge(a_idx, b_idx.gather(1, node_idx), merged, layout, lengths)
            if record and state.trace is not None:
                cand_ok = torch.arange(k_max, device=x.device)[None] < k[:, None]
                is_cand = torch.zeros_like(valid).scatter_(1, cand, cand_ok)
                state.nonsemantic = (state.source * is_cand[..., None].float()).amax(dim=1) > 0
        size = state.size
        if c.rounds > 1:
            metric, _ = ops.merge_wavg(merge, metric, size)
        x = apply_padded(x, state, merge)
        padded = torch.cat([torch.zeros_like(scores[:, :1]), scores], dim=1)[..., None]
        scores = merge(padded, mode="sum")[:, 1:, 0]
        return x, metric, scores, True

    def _retokenize(self, x: Tensor, state: TokenState, metric: Tensor, scores: Tensor, record: bool):
        """One round of steps 2-4. Shapes: x B x N x C, metric B x N x d, scores B x (N - 1)."""
        n = x.shape[1] - 1
        k, r = self.merges(n)
        if r <= 0:
            return x, metric, scores, False
        cand = scores.topk(k, dim=1, largest=False, sorted=True).indices + 1  # least important first
        src, dst = ops.match_within(metric, cand[:, 0::2], cand[:, 1::2], r)
        merge = ops.PairMerge(src, dst, n + 1)
        if record and state.trace is not None:
            state.nonsemantic = ops.gather_tokens(state.source, cand).amax(dim=1) > 0
        if state.source is not None:
            state.source = ops.merge_source(merge, state.source)
        size = state.size
        x, state.size = ops.merge_wavg(merge, x, size)
        if self.config.rounds > 1:
            metric, _ = ops.merge_wavg(merge, metric, size)
        padded = torch.cat([torch.zeros_like(scores[:, :1]), scores], dim=1)[..., None]
        scores = merge(padded, mode="sum")[:, 1:, 0]
        state.merged = True
        return x, metric, scores, True
