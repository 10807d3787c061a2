"""ToMe — Token Merging: Your ViT But Faster (Bolya et al., ICLR 2023), facebookresearch/ToMe.

In every block, after attention and its residual, ``r`` tokens are merged away by bipartite soft
matching on the head-averaged keys (size-weighted averages; sizes add), and later attention adds
``log(size)`` to the logits (proportional attention). Schedules: constant ``r``, a linear
``(r, inflection)`` ramp (``inflection=-1`` is the paper's "decreasing" schedule) or per-block values.

Same decisions, output order and source maps as the official timm patch (tested against an
independent re-statement of it, ``tests/reference/tome_ref.py``); unlike it, attention stays on
``F.scaled_dot_product_attention`` (the size bias is an additive mask) and timm's qk-norm,
LayerScale and attention-output norm are honoured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from torch import Tensor

from ..errors import ConfigError
from . import ops
from .base import BlockNeeds, Reducer, TokenState, apply_padded, check_min_tokens, check_ratio


@dataclass(frozen=True)
class ToMeConfig:
    """``r``: tokens merged per block (an int), or a list of per-block values (zero-padded);
    ``inflection``: with an int ``r``, a linear schedule from ``int(r (1 - inflection))`` to
    ``2 r`` minus that (0 = constant, -1 = decreasing); ``prop_attn``: proportional attention
    (the official default, right for off-the-shelf DeiT); ``trace_source``: keep the B x N x N0
    source map (for pictures).

    Per-image mode (``threshold`` set, ours; ALGM / ATM-style): in each block every image merges the
    A tokens whose best key similarity (cosine) exceeds ``threshold`` — at most ``r`` (the block's
    schedule value, the cap) and never below ``min_tokens`` tokens ([CLS] included, the floor) — so a
    simple image keeps fewer tokens than a cluttered one. The batch stays one padded tensor (padding
    at the end, size 0, masked out of attention); ``info(model).lengths`` gives the tokens per image."""

    r: Union[int, list] = field(default=8)
    inflection: float = 0.0
    prop_attn: bool = True
    trace_source: bool = False
    threshold: Optional[float] = None
    min_tokens: int = 1

    def __post_init__(self):
        r = self.r
        if isinstance(r, tuple) and len(r) == 2 and isinstance(r[1], float):  # ToMe's (r, inflection) form
            object.__setattr__(self, "r", int(r[0]))
            object.__setattr__(self, "inflection", float(r[1]))
        elif isinstance(r, tuple):
            object.__setattr__(self, "r", list(r))
        values = self.r if isinstance(self.r, list) else [self.r]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
            raise ConfigError(f"ToMeConfig.r={self.r!r}: use a non-negative integer or a list of them (one per block)")
        check_ratio("ToMeConfig", "inflection", self.inflection, -1.0, 1.0, low_open=False)
        if self.threshold is not None:
            check_ratio("ToMeConfig", "threshold", self.threshold, -1.0, 1.0)
        check_min_tokens("ToMeConfig", self.min_tokens)


class ToMeReducer(Reducer):
    method = "tome"

    def __init__(self, config: ToMeConfig):
        super().__init__(config)
        self.schedule: list[int] = []

    def _schedule(self, depth: int) -> list[int]:
        c = self.config
        if isinstance(c.r, list):
            if len(c.r) > depth:
                raise ConfigError(f"ToMeConfig.r lists {len(c.r)} values but the model has {depth} blocks")
            return ops.parse_r(list(c.r), depth)
        return ops.parse_r((c.r, c.inflection), depth)

    def plan(self, depth: int, num_patches: int) -> None:
        self.schedule = self._schedule(depth)
        tokens = num_patches + 1
        for i, r in enumerate(self.schedule):
            most = (tokens - 1) // 2
            if r > most and self.config.threshold is None:  # in threshold mode r is a cap, clipped per image
                raise ConfigError(
                    f"ToMe r={r} at block {i} is larger than possible: {tokens} tokens left allow at most "
                    f"{most} merges; lower r (r <= {self._max_constant_r(depth, num_patches)} for a constant schedule)")
            tokens -= r
        self.needs = [BlockNeeds(metric=r > 0) for r in self.schedule]

    @staticmethod
    def _max_constant_r(depth: int, num_patches: int) -> int:
        best = 0
        for r in range(1, num_patches):
            tokens, ok = num_patches + 1, True
            for _ in range(depth):
                if r > (tokens - 1) // 2:
                    ok = False
                    break
                tokens -= r
            if not ok:
                break
            best = r
        return best

    def token_counts(self, num_patches: int) -> list[int]:
        """Tokens after each block; in threshold mode the fewest possible (every cap reached, floor
        ignored): images keep at least these."""
        out, tokens = [], num_patches + 1
        for r in self.schedule:
            tokens -= min(r, (tokens - 1) // 2)
            out.append(tokens)
        return out

    def reduce(self, i: int, x: Tensor, state: TokenState, metric, cls_attn) -> Tensor:
        r = self.schedule[i]
        if r <= 0:
            return x
        if self.config.threshold is not None:
            padded = ops.threshold_matching(metric, state.size, self.config.threshold, r, self.config.min_tokens)
            return apply_padded(x, state, padded)
        merge = ops.bipartite_soft_matching(metric, r, class_token=True)
        if merge is None:  # fewer tokens than planned (another input size): nothing to merge
            return x
        if state.source is not None:
            state.source = ops.merge_source(merge, state.source)
        x, state.size = ops.merge_wavg(merge, x, state.size)
        state.merged = True
        return x
