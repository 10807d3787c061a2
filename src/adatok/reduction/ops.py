"""Token-reduction primitives as pure tensor functions (no model, no timm).

Everything here works on a batch of token sequences ``x: B x N x C`` whose token 0 is [CLS], with
per-token sizes ``size: B x N x 1`` (how many input patches a token stands for) and an optional
source map ``source: B x N x N0`` (0/1: which of the N0 input tokens each token contains). Counts
are equal for every sample of a batch, so batches stay rectangular; no Python loop runs over
samples or tokens and nothing reads a tensor value back to the host — except the threshold mode,
whose per-image counts live in a padded batch (``size == 0`` marks padding) and which reads the new
width once per merging block.

* ToMe's bipartite soft matching (Bolya et al., ICLR 2023), with the official split (even / odd
  positions), tie order and output order, so that merges and source maps match the official code.
* A general "merge these pairs" (:class:`PairMerge`) used by ImagePiece's matching inside a subset.
* Per-image (threshold) reduction of a padded batch, shared by the three methods: counts differ per
  image (:func:`select_above`, :func:`capped_count`: a threshold, a cap and a floor), the survivors
  are laid out real-first (:func:`compact`) and merged or selected in one go (:class:`PaddedMerge`);
  padding has size 0 and is masked out of attention (:func:`padding_bias`, or ``log 0 = -inf``
  through :func:`size_bias`). ToMe's form: :func:`threshold_matching`.
* Pruning: top-k keep by score, the sorted complement, EViT's attention-weighted fusion of dropped
  tokens (Liang et al., ICLR 2022).
* Class attention and the proportional-attention bias (log size).
* Schedules: ToMe's r schedule, EViT's keep-rate warm-up.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch
from torch import Tensor

RSchedule = Union[int, Sequence[int], tuple]


# --------------------------------------------------------------------------- merging
class BipartiteMerge:
    """The merge ToMe's matching decided: A = even positions, B = odd positions; the ``r`` best
    A tokens (sources) go into their best B token; output order is [kept A tokens by position,
    all B tokens by position] (so [CLS], an A token, stays first).

    Shapes: ``unm_idx`` B x (Na - r) x 1, ``src_idx`` / ``dst_idx`` B x r x 1 (indices into A / B).

    Applied as one gather of the output tokens from ``x`` (positions ``2 unm`` then the odd ones)
    and one in-place scatter of the moved tokens into their destinations: the same values, in the
    same summation order, as gathering from the A/B halves, scattering into a copy of B and
    concatenating, without the two extra copies of the token tensor.
    """

    def __init__(self, unm_idx: Tensor, src_idx: Tensor, dst_idx: Tensor, num_tokens: int | None = None):
        self.unm_idx, self.src_idx, self.dst_idx = unm_idx, src_idx, dst_idx
        self.r = src_idx.shape[1]
        na = unm_idx.shape[1] + self.r
        n = num_tokens if num_tokens is not None else 2 * na  # odd/even halves: Nb = N // 2
        nb = n // 2
        odd = torch.arange(1, 2 * nb, 2, device=unm_idx.device).view(1, nb, 1).expand(unm_idx.shape[0], nb, 1)
        self.out_idx = torch.cat([2 * unm_idx, odd], dim=1)  # B x (N - r) x 1, absolute positions in x
        self.src_abs = 2 * src_idx  # B x r x 1
        self.dst_out = dst_idx + (na - self.r)  # B x r x 1, positions in the output

    def __call__(self, x: Tensor, mode: str = "sum") -> Tensor:
        n, _, c = x.shape
        out = x.gather(1, self.out_idx.expand(n, self.out_idx.shape[1], c))
        moved = x.gather(1, self.src_abs.expand(n, self.r, c))
        return out.scatter_reduce_(1, self.dst_out.expand(n, self.r, c), moved, reduce=mode)


def bipartite_soft_matching(metric: Tensor, r: int, class_token: bool = True) -> BipartiteMerge | None:
    """ToMe's matching of ``metric`` (B x N x d, e.g. head-averaged keys): None when ``r`` (clipped to
    what the tokens allow) is 0. No gradient flows through the decision."""
    protected = int(class_token)
    r = min(r, (metric.shape[1] - protected) // 2)
    if r <= 0:
        return None
    with torch.no_grad():
        metric = metric / metric.norm(dim=-1, keepdim=True)
        a, b = metric[:, ::2, :], metric[:, 1::2, :]
        scores = a @ b.transpose(-1, -2)
        if class_token:
            scores[:, 0, :] = -math.inf  # [CLS] is never a source
        node_max, node_idx = scores.max(dim=-1)
        edge_idx = node_max.argsort(dim=-1, descending=True)[..., None]
        unm_idx, src_idx = edge_idx[:, r:, :], edge_idx[:, :r, :]
        dst_idx = node_idx[..., None].gather(1, src_idx)
        if class_token:
            unm_idx = unm_idx.sort(dim=1)[0]
    return BipartiteMerge(unm_idx, src_idx, dst_idx, metric.shape[1])


class PaddedMerge:
    """A per-image merge (or selection) of a padded batch: token ``src[b, i]`` of image ``b`` goes into
    token ``dst[b, i]`` where ``merged[b, i]``, then the tokens ``order[b]`` are gathered (per image the
    real tokens first, padding after, ``width`` wide) and rows past ``lengths[b]`` are set to 0. With
    ``src=None`` nothing merges: a per-image selection (pruning). Threshold ToMe, EViT and ImagePiece
    all reduce through it.

    Shapes: ``src`` / ``dst`` / ``merged`` B x M (absolute positions / bool), ``order`` B x width (from
    :func:`compact`), ``lengths`` B (valid tokens per image after the merge).
    """

    def __init__(self, src, dst, merged, order: Tensor, lengths: Tensor):
        self.src, self.dst, self.merged, self.order, self.lengths = src, dst, merged, order, lengths
        width = order.shape[1]
        self.valid = (torch.arange(width, device=order.device)[None] < lengths[:, None])[..., None]  # B x width x 1

    def __call__(self, x: Tensor, mode: str = "sum") -> Tensor:
        n, _, c = x.shape
        if self.src is not None:
            m = self.src.shape[1]
            # unmerged sources add exactly 0 (values >= 0 for amax)
            moved = x.gather(1, self.src[..., None].expand(n, m, c)) * self.merged[..., None].to(x.dtype)
            x = x.scatter_reduce(1, self.dst[..., None].expand(n, m, c), moved, reduce=mode)
        out = x.gather(1, self.order[..., None].expand(n, self.order.shape[1], c))
        return out * self.valid.to(x.dtype)


def valid_tokens(size: Tensor) -> Tensor:
    """Real tokens of a (possibly padded) batch: B x N x 1 sizes -> B x N bool (padding has size 0)."""
    return size[..., 0] > 0


def unit_rows(metric: Tensor) -> Tensor:
    """Rows scaled to unit length (zero rows stay 0), for cosine similarities."""
    return metric / metric.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def rank_of(values: Tensor, descending: bool) -> Tensor:
    """Each entry's place (0 = first) in the stable sort of its row: B x M -> B x M int64."""
    ranked = values.argsort(dim=-1, descending=descending, stable=True)
    places = torch.arange(values.shape[1], device=values.device).expand_as(ranked)
    return torch.empty_like(ranked).scatter_(1, ranked, places)


def capped_count(count: Tensor, cap, room: Tensor) -> Tensor:
    """A per-image count limited by the cap (an int or B-tensor: the most a block may remove) and the
    room above the floor (``room = tokens - min_tokens``; never negative): B int64."""
    cap = cap if isinstance(cap, Tensor) else torch.full_like(count, int(cap))
    return torch.minimum(torch.minimum(count, cap), room.clamp_min(0))


def select_above(scores: Tensor, threshold, cap, room: Tensor) -> Tensor:
    """The entries to act on per image: those with ``scores > threshold`` (``threshold=None``: all
    finite ones), best first, at most ``cap`` and ``room`` (:func:`capped_count`). Entries that must
    never be chosen carry ``-inf``. B x M float -> B x M bool."""
    passing = torch.isfinite(scores) if threshold is None else scores > threshold
    count = capped_count(passing.sum(dim=1), cap, room)
    return rank_of(scores, descending=True) < count[:, None]


def compact(key: Tensor, gone: Tensor) -> tuple[Tensor, Tensor]:
    """The per-image layout after a reduction: the tokens not ``gone``, sorted by ``key`` (ascending,
    stable; integers in ``[0, 2 N)`` for N = ``key.shape[1]``), then the gone ones, cut at the longest
    image. Returns (order B x width, lengths B). The one host read of a per-image reduction:
    ``width = lengths.max()``."""
    lengths = (~gone).sum(dim=1)
    key = key.masked_fill(gone, 2 * key.shape[1])
    width = int(lengths.max())
    return key.argsort(dim=1, stable=True)[:, :width], lengths


def threshold_matching(metric: Tensor, size: Tensor, threshold: float, r_max: int, min_tokens: int) -> PaddedMerge:
    """ToMe's bipartite matching with a per-image count: every A token whose best cosine similarity to a
    B token exceeds ``threshold`` is merged, at most ``r_max`` per image and never below ``min_tokens``
    tokens ([CLS] included); the most similar pairs go first (ToMe's order). Padding (``size == 0``)
    is neither source nor destination. Batched (no loop over images); one host read, the new width.

    Shapes: ``metric`` B x N x d, ``size`` B x N x 1 (0 on padding) -> :class:`PaddedMerge`."""
    n, t, _ = metric.shape
    with torch.no_grad():
        valid = valid_tokens(size)
        unit = unit_rows(metric)
        a, b = unit[:, ::2, :], unit[:, 1::2, :]
        na = a.shape[1]
        scores = (a @ b.transpose(-1, -2)).masked_fill(~valid[:, None, 1::2], -math.inf)
        scores[:, 0, :] = -math.inf  # [CLS] is never a source
        node_max, node_idx = scores.max(dim=-1)
        node_max = node_max.masked_fill(~valid[:, ::2], -math.inf)
        merged = select_above(node_max, threshold, r_max, valid.sum(dim=1) - min_tokens)
        pos = torch.arange(t, device=metric.device)
        key = torch.where(pos % 2 == 0, pos // 2, na + pos // 2)[None].expand(n, t)  # A first, then B
        gone = ~valid
        gone[:, ::2] |= merged
        order, new_lengths = compact(key, gone)
        src = torch.arange(0, t, 2, device=metric.device)[None].expand(n, na)
    return PaddedMerge(src, 2 * node_idx + 1, merged, order, new_lengths)


def padding_bias(size: Tensor, dtype: torch.dtype) -> Tensor:
    """0 for real tokens, -inf for padding (``size == 0``): B x N x 1 -> B x 1 x 1 x N additive mask."""
    zero = torch.zeros((), dtype=dtype, device=size.device)
    return torch.where(size[:, None, None, :, 0] > 0, zero, torch.tensor(-math.inf, dtype=dtype, device=size.device))


class PairMerge:
    """Merge token ``src[b, i]`` into token ``dst[b, i]`` (absolute indices, sources never
    destinations; several sources may share a destination) and drop the sources; the other tokens
    keep their relative order (a destination keeps its place).

    Shapes: ``src`` / ``dst`` B x r (int64), ``keep`` B x (N - r), ascending.
    """

    def __init__(self, src: Tensor, dst: Tensor, num_tokens: int):
        self.src, self.dst = src, dst
        self.r = src.shape[1]
        self.keep = complement(src, num_tokens)

    def __call__(self, x: Tensor, mode: str = "sum") -> Tensor:
        n, _, c = x.shape
        moved = x.gather(1, self.src[..., None].expand(n, self.r, c))
        x = x.scatter_reduce(1, self.dst[..., None].expand(n, self.r, c), moved, reduce=mode)
        return x.gather(1, self.keep[..., None].expand(n, self.keep.shape[1], c))


def match_within(metric: Tensor, a_idx: Tensor, b_idx: Tensor, r: int) -> tuple[Tensor, Tensor]:
    """Bipartite soft matching restricted to two disjoint token subsets: every token of ``a_idx``
    (B x Na, absolute indices) finds its most similar (cosine of ``metric``) token of ``b_idx``
    (B x Nb); the ``r`` best-scoring A tokens become sources. Returns (src, dst), B x r each."""
    with torch.no_grad():
        metric = metric / metric.norm(dim=-1, keepdim=True)
        d = metric.shape[-1]
        a = metric.gather(1, a_idx[..., None].expand(-1, -1, d))
        b = metric.gather(1, b_idx[..., None].expand(-1, -1, d))
        node_max, node_idx = (a @ b.transpose(-1, -2)).max(dim=-1)
        edge = node_max.argsort(dim=-1, descending=True)[:, :r]
        src = a_idx.gather(1, edge)
        dst = b_idx.gather(1, node_idx.gather(1, edge))
    return src, dst


def merge_wavg(merge, x: Tensor, size: Tensor) -> tuple[Tensor, Tensor]:
    """Size-weighted average merge: features weighted by size, summed, divided by the summed size
    (sizes add). ``merge`` is a :class:`BipartiteMerge`, :class:`PairMerge` or :class:`PaddedMerge`
    (whose padding has size 0 and features 0)."""
    merged = merge(x * size, mode="sum")
    size = merge(size, mode="sum")
    if isinstance(merge, PaddedMerge):
        return (merged / size.clamp_min(1e-12)).to(x.dtype), size
    return (merged / size).to(x.dtype), size


def merge_source(merge, source: Tensor) -> Tensor:
    """Source map after a merge: the union (element-wise max) of the merged tokens' rows."""
    return merge(source, mode="amax")


def initial_source(x: Tensor) -> Tensor:
    """Identity source map, B x N x N (every token is its own input token)."""
    n, t, _ = x.shape
    return torch.eye(t, device=x.device, dtype=torch.float32)[None].expand(n, t, t)


# --------------------------------------------------------------------------- pruning
def gather_tokens(x: Tensor, idx: Tensor) -> Tensor:
    """``x[b, idx[b]]`` for B x N x C ``x`` and B x K ``idx``."""
    return x.gather(1, idx[..., None].expand(-1, -1, x.shape[-1]))


def complement(idx: Tensor, n: int) -> Tensor:
    """The indices in ``range(n)`` not in ``idx`` (B x K, distinct), ascending: B x (n - K)."""
    mask = torch.zeros(idx.shape[0], n, dtype=torch.uint8, device=idx.device).scatter_(1, idx, 1)
    return mask.argsort(dim=1, stable=True)[:, : n - idx.shape[1]]


def topk_keep(scores: Tensor, k: int, order: str = "position") -> Tensor:
    """Indices (B x k) of the ``k`` highest ``scores`` (B x N), in descending score order
    (``order="score"``, EViT's) or in ascending position (``"position"``)."""
    idx = scores.topk(k, dim=1, largest=True, sorted=True).indices
    return idx.sort(dim=1).values if order == "position" else idx


def fuse_tokens(x: Tensor, idx: Tensor, weights: Tensor) -> Tensor:
    """EViT's inattentive-token fusion: sum of the tokens ``idx`` (B x M) weighted by ``weights``
    (B x M, not renormalised), one token per sample: B x 1 x C."""
    return (gather_tokens(x, idx) * weights[..., None]).sum(dim=1, keepdim=True)


def keep_count(rate: float, n: int) -> int:
    """Tokens a keep rate leaves of ``n``: ``ceil(rate * n)`` in Python float arithmetic, exactly
    as EViT computes it (0.7 of 196 is 138, of 139 is 98)."""
    return min(n, math.ceil(rate * n))


# --------------------------------------------------------------------------- attention
def size_bias(size: Tensor, dtype: torch.dtype) -> Tensor:
    """Proportional attention: ``log(size)`` added to every logit whose key is that token.
    B x N x 1 sizes -> B x 1 x 1 x N additive mask (broadcast over heads and queries)."""
    return size.log()[:, None, None, :, 0].to(dtype)


def class_attention(q_cls: Tensor, k: Tensor, scale: float, bias: Tensor | None = None) -> Tensor:
    """Attention probabilities of the [CLS] query to the other tokens, averaged over heads.

    Only the [CLS] row is formed (B x H x 1 x N), so it is cheap next to a fused attention kernel.
    Shapes: ``q_cls`` B x H x 1 x d, ``k`` B x H x N x d, ``bias`` B x 1 x 1 x N -> B x (N - 1)."""
    logits = (q_cls.float() * scale) @ k.float().transpose(-1, -2)
    if bias is not None:
        logits = logits + bias.float()
    return logits.softmax(dim=-1)[:, :, 0, 1:].mean(dim=1)


def query_attention(q: Tensor, k: Tensor, scale: float, bias: Tensor | None = None) -> Tensor:
    """Attention probabilities of a set of queries to every key, averaged over heads and queries:
    how much those queries read each token (a tokenizer encoder's latent tokens: the importance
    ImagePiece scores patches by there). Shapes: ``q`` B x H x Q x d, ``k`` B x H x N x d -> B x N."""
    logits = (q.float() * scale) @ k.float().transpose(-1, -2)
    if bias is not None:
        logits = logits + bias.float()
    return logits.softmax(dim=-1).mean(dim=(1, 2))


# --------------------------------------------------------------------------- schedules
def parse_r(r: RSchedule, depth: int) -> list[int]:
    """ToMe's r schedule: an int (constant), a pair ``(r, inflection)`` (linear from
    ``int(r * (1 - inflection))`` to ``2 r - that``; inflection -1 = "decreasing"), or a list of
    per-block values (zero-padded to ``depth``)."""
    if isinstance(r, list):
        return list(r) + [0] * (depth - len(r))
    inflect = 0.0
    if isinstance(r, tuple):
        r, inflect = r
    lo = int(r * (1.0 - inflect))
    hi = 2 * r - lo
    step = (hi - lo) / (depth - 1) if depth > 1 else 0.0
    return [int(lo + step * i) for i in range(depth)]


def keep_rate_warmup(step: int, target: float, start: int = 0, steps: int = 0) -> float:
    """EViT's keep-rate schedule: 1 for the first ``start`` steps, then a half cosine from 1 down to
    ``target`` over ``steps`` steps, then ``target``."""
    if step < start:
        return 1.0
    if steps <= 0 or step >= start + steps:
        return target
    progress = (step - start) / steps
    return target + (1.0 - target) * 0.5 * (1.0 + math.cos(math.pi * progress))
