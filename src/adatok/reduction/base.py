"""What every reduction method shares: the per-forward token state, the reducer interface the host
adapter (``timm_patch.py``) drives, and the record of a forward (:class:`ReductionInfo`).

A host runs each transformer block as::

    needs = reducer.needs[i]                           # static, known at patch time
    out, metric, cls_attn = attention(norm1(x), bias=state.bias(dtype) if reducer.prop_attn)
    x = x + out                                        # (LayerScale / drop-path as the host has them)
    x = reducer.reduce(i, x, state, metric, cls_attn)  # merge / prune; updates sizes, sources, trace
    x = x + mlp(norm2(x))

so a method only decides what happens between attention and MLP, on plain tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor

from . import ops


@dataclass(frozen=True)
class BlockNeeds:
    """What a block's attention must hand to the reducer."""

    metric: bool = False  # head-averaged keys (B x N x d), the similarity ToMe/ImagePiece match on
    cls_attn: bool = False  # class-attention probabilities (B x (N - 1))


@dataclass
class BlockTrace:
    """One block's reduction, in input-patch space (recorded only with ``trace=True``).

    Shapes: ``source`` B x N x N0 (0/1) after the block; ``nonsemantic`` B x N0 bool: input tokens
    inside ImagePiece's non-semantic candidate pool at this block (None for other methods)."""

    block: int
    tokens_in: int
    tokens_out: int
    source: Tensor
    nonsemantic: Optional[Tensor] = None


@dataclass
class TokenState:
    """Per-forward state carried through the blocks beside the tokens.

    Shapes: ``size`` B x N x 1 float32 (patches per token, [CLS] counts 1); ``source`` B x N x N0
    or None; ``dropped`` B float32 (patches pruned so far: ``size.sum() + dropped == N0``)."""

    size: Tensor
    source: Optional[Tensor] = None
    dropped: Optional[Tensor] = None
    merged: bool = False  # sizes differ from 1 somewhere: the proportional-attention bias matters
    trace: Optional[list] = None
    nonsemantic: Optional[Tensor] = None  # set by ImagePiece for the block trace
    lengths: Optional[Tensor] = None  # B int64: real tokens per image once a per-image merge padded the batch
    prop_attn: bool = True  # whether bias() adds log(size) (else only the padding mask, when padded)

    @classmethod
    def start(cls, x: Tensor, trace_source: bool, trace: bool) -> "TokenState":
        size = torch.ones(x.shape[0], x.shape[1], 1, device=x.device, dtype=torch.float32)
        source = ops.initial_source(x) if (trace_source or trace) else None
        return cls(size=size, source=source, dropped=torch.zeros(x.shape[0], device=x.device),
                   trace=[] if trace else None)

    def bias(self, dtype: torch.dtype) -> Optional[Tensor]:
        """The proportional-attention mask (padding, of size 0, gets log 0 = -inf), or None while every
        size is 1 (log 1 = 0); without proportional attention only the padding mask, once padded."""
        if self.lengths is not None and not self.prop_attn:
            return ops.padding_bias(self.size, dtype)
        return ops.size_bias(self.size, dtype) if self.merged else None

    def record(self, block: int, tokens_in: int, tokens_out: int) -> None:
        """Append this block's :class:`BlockTrace` (only when tracing)."""
        if self.trace is not None:
            self.trace.append(BlockTrace(block, tokens_in, tokens_out, self.source.detach().clone(),
                                         None if self.nonsemantic is None else self.nonsemantic.detach().clone()))
            self.nonsemantic = None

    def keep(self, idx: Tensor) -> None:
        """Keep tokens ``idx`` (B x K, [CLS] included) and count the rest as pruned."""
        kept = ops.gather_tokens(self.size, idx)
        self.dropped = self.dropped + (self.size.sum(dim=(1, 2)) - kept.sum(dim=(1, 2)))
        self.size = kept
        if self.source is not None:
            self.source = ops.gather_tokens(self.source, idx)


class Reducer:
    """A token-reduction method bound to one model: its config, a per-block plan and the step that
    runs between attention and MLP. Subclasses set ``needs`` in :meth:`plan`."""

    method = ""

    def __init__(self, config):
        self.config = config
        self.prop_attn: bool = config.prop_attn  # add log(size) to attention logits (proportional attention)
        self.trace_source: bool = config.trace_source  # keep the patch -> token map (for visualisation)
        self.needs: list[BlockNeeds] = []
        self.keep_rate: Optional[float] = None  # training-time override of the pruning keep rate

    def plan(self, depth: int, num_patches: int) -> None:
        """Check the config against the model (depth, patch count) and fill ``self.needs``;
        raises :class:`~adatok.errors.ConfigError` when the settings do not fit."""
        raise NotImplementedError

    def reduce(self, i: int, x: Tensor, state: TokenState, metric: Optional[Tensor],
               cls_attn: Optional[Tensor]) -> Tensor:
        raise NotImplementedError

    def token_counts(self, num_patches: int) -> list[int]:
        """Tokens (with [CLS]) leaving each block for ``num_patches`` input patches."""
        raise NotImplementedError

    def settings(self) -> dict:
        """The config as a plain dict (what ``apply(model, method, **settings)`` takes back)."""
        from dataclasses import asdict

        return asdict(self.config)


@dataclass
class ReductionInfo:
    """The record of the last forward of a patched model (``adatok.reduction.info(model)``).

    ``tokens[i]``: tokens ([CLS] included) the MLP of block ``i`` ran on (= tokens leaving it);
    ``size`` B x N (patches per final token); ``dropped`` B (patches pruned); ``source``
    B x N x N0 when traced; ``blocks``: per-block :class:`BlockTrace` when ``trace=True``. In
    threshold mode the batch is padded: ``tokens`` are the widths (the longest image), ``lengths`` /
    ``block_lengths`` the real tokens per image, and ``size`` is 0 on padding."""

    method: str
    tokens_in: int
    tokens: list[int] = field(default_factory=list)
    size: Optional[Tensor] = None
    dropped: Optional[Tensor] = None
    source: Optional[Tensor] = None
    blocks: Optional[list] = None
    lengths: Optional[Tensor] = None  # B: real tokens per image (per-image/threshold mode; None otherwise)
    block_lengths: list = field(default_factory=list)  # B-tensors after each block (threshold mode)


def check_ratio(owner: str, name: str, value, low: float, high: float, low_open: bool = True) -> None:
    """``value`` must be a number in (low, high] (or [low, high] with ``low_open=False``)."""
    from ..errors import ConfigError

    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ConfigError(f"{owner}.{name}={value!r} is out of range: use a number in {bracket}{low}, {high}]")


def check_min_tokens(owner: str, value) -> None:
    """The per-image floor must be an integer >= 1 (tokens kept per image, [CLS] included)."""
    from ..errors import ConfigError

    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{owner}.min_tokens={value!r}: use an integer >= 1 (tokens kept per image, "
                          "[CLS] included)")


def apply_padded(x: Tensor, state: TokenState, merge: "ops.PaddedMerge", extra=None) -> Tensor:
    """Run a per-image :class:`~.ops.PaddedMerge` on the tokens and the state (sizes, source map,
    pruned count, lengths). ``extra``: (tokens, size, source) B x 1 x ... to append before it (EViT's
    fused token; its size is 0, i.e. padding, where nothing was fused)."""
    size, source = state.size, state.source
    if extra is not None:
        x, size = torch.cat([x, extra[0]], dim=1), torch.cat([size, extra[1]], dim=1)
        source = None if source is None else torch.cat([source, extra[2]], dim=1)
    before = state.size.sum(dim=(1, 2))
    if source is not None:
        state.source = ops.merge_source(merge, source)
    if merge.src is None:
        x, state.size = merge(x), merge(size)
    else:
        x, state.size = ops.merge_wavg(merge, x, size)
    state.dropped = state.dropped + (before - state.size.sum(dim=(1, 2)))
    state.lengths, state.merged = merge.lengths, True
    return x


def default_blocks(depth: int) -> tuple:
    """The reducing blocks when none are given: the 4th, 7th and 10th of 12 (EViT's setting), at the
    same relative depths for other depths: ``(d // 4, d // 2, 3 d // 4)`` 0-based, distinct."""
    return tuple(sorted({depth // 4, depth // 2, (3 * depth) // 4} & set(range(depth))))


def check_blocks(owner: str, blocks, depth: int, name: str = "blocks") -> tuple:
    """Block indices (0-based) must be distinct integers inside the model's depth (None: the default)."""
    from ..errors import ConfigError

    if blocks is None:
        return default_blocks(depth)
    if isinstance(blocks, int) and not isinstance(blocks, bool):
        blocks = (blocks,)
    blocks = tuple(blocks)
    if not all(isinstance(b, int) and not isinstance(b, bool) for b in blocks):
        raise ConfigError(f"{owner}.{name}={blocks!r}: use 0-based block indices (integers)")
    bad = [b for b in blocks if not 0 <= b < depth]
    if bad:
        raise ConfigError(f"{owner}.{name}={blocks!r}: block(s) {bad} beyond this model's depth {depth} "
                          f"(0-based indices 0..{depth - 1})")
    if len(set(blocks)) != len(blocks):
        raise ConfigError(f"{owner}.{name}={blocks!r}: a block is listed twice")
    return tuple(sorted(blocks))
