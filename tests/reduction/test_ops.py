"""The pure tensor functions of adatok.reduction.ops, without a model."""

import math

import pytest
import torch

from adatok.reduction import ops


def test_bipartite_matching_merges_the_most_similar_pairs_and_keeps_cls_first():
    # 7 tokens: A = positions 0,2,4,6 ([CLS] at 0), B = 1,3,5. Token 2 equals token 1, token 4 ~ token 5.
    metric = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0.1], [1, 0, 0], [0.5, 0.5, 0.5]])[None]
    m = ops.bipartite_soft_matching(metric, r=2)
    x = torch.arange(7.0)[None, :, None]
    size = torch.ones(1, 7, 1)
    merged, new_size = ops.merge_wavg(m, x, size)
    # kept A tokens by position ([CLS]=0, 6), then B (1, 3, 5) with 2 merged into 1 and 4 into 5
    assert merged[0, :, 0].tolist() == pytest.approx([0, 6, 1.5, 3, 4.5])
    assert new_size[0, :, 0].tolist() == [1, 1, 2, 1, 2]
    source = ops.merge_source(m, ops.initial_source(x))
    assert source[0, 2].nonzero().flatten().tolist() == [1, 2]
    assert source[0, 0].nonzero().flatten().tolist() == [0]


def test_bipartite_matching_clips_r_and_returns_none_for_zero():
    metric = torch.randn(2, 5, 4)
    assert ops.bipartite_soft_matching(metric, 0) is None
    m = ops.bipartite_soft_matching(metric, 10)  # at most (5 - 1) // 2 = 2
    assert m.r == 2 and m(torch.randn(2, 5, 3)).shape == (2, 3, 3)


def test_pair_merge_keeps_order_and_sizes_add():
    x = torch.arange(8.0).reshape(1, 8, 1).repeat(2, 1, 1)
    size = torch.tensor([1.0, 1, 2, 1, 1, 3, 1, 1]).reshape(1, 8, 1).repeat(2, 1, 1)
    src = torch.tensor([[5, 1], [7, 2]])
    dst = torch.tensor([[2, 2], [3, 4]])
    m = ops.PairMerge(src, dst, 8)
    out, new = ops.merge_wavg(m, x, size)
    assert m.keep.tolist() == [[0, 2, 3, 4, 6, 7], [0, 1, 3, 4, 5, 6]]
    # sample 0: token 2 (size 2, value 2) + 5 (size 3) + 1 (size 1) -> (4 + 15 + 1) / 6
    assert out[0, :, 0].tolist() == pytest.approx([0, 20 / 6, 3, 4, 6, 7])
    assert new[0, :, 0].tolist() == [1, 6, 1, 1, 1, 1]
    assert out[1, :, 0].tolist() == pytest.approx([0, 1, (3 + 7) / 2, (4 + 4) / 3, 5, 6])
    assert new.sum(dim=(1, 2)).tolist() == size.sum(dim=(1, 2)).tolist()


def test_match_within_only_merges_inside_the_subsets():
    torch.manual_seed(0)
    metric = torch.randn(3, 20, 8)
    a, b = torch.tensor([[3, 5, 7]] * 3), torch.tensor([[4, 6, 8]] * 3)
    src, dst = ops.match_within(metric, a, b, r=2)
    assert src.shape == dst.shape == (3, 2)
    assert set(src.flatten().tolist()) <= {3, 5, 7} and set(dst.flatten().tolist()) <= {4, 6, 8}
    unit = metric / metric.norm(dim=-1, keepdim=True)
    sim = unit[:, [3, 5, 7]] @ unit[:, [4, 6, 8]].transpose(1, 2)
    best = sim.max(-1)
    for i in range(3):  # the two A tokens with the highest best-match score, matched to their argmax
        order = best.values[i].argsort(descending=True)[:2]
        assert src[i].tolist() == a[i, order].tolist()
        assert dst[i].tolist() == b[i, best.indices[i, order]].tolist()


def test_complement_topk_fuse_and_keep_count():
    idx = torch.tensor([[4, 0, 2], [1, 3, 5]])
    assert ops.complement(idx, 6).tolist() == [[1, 3, 5], [0, 2, 4]]
    scores = torch.tensor([[0.1, 0.5, 0.3, 0.9]])
    assert ops.topk_keep(scores, 2, "score").tolist() == [[3, 1]]
    assert ops.topk_keep(scores, 2, "position").tolist() == [[1, 3]]
    x = torch.eye(4)[None]
    fused = ops.fuse_tokens(x, torch.tensor([[0, 2]]), torch.tensor([[0.1, 0.3]]))
    assert fused[0, 0].tolist() == pytest.approx([0.1, 0, 0.3, 0])
    assert ops.keep_count(0.7, 196) == 138 and ops.keep_count(0.7, 139) == 98 and ops.keep_count(1.0, 7) == 7


def test_class_attention_is_the_cls_row_of_the_softmax():
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 9, 4), torch.randn(2, 3, 9, 4)
    size = torch.rand(2, 9, 1) * 3 + 1
    bias = ops.size_bias(size, torch.float32)
    full = ((q * 0.5) @ k.transpose(-1, -2) + bias).softmax(-1)
    got = ops.class_attention(q[:, :, :1], k, 0.5, bias)
    assert torch.allclose(got, full[:, :, 0, 1:].mean(1), atol=1e-6)
    assert bias.shape == (2, 1, 1, 9)


def test_r_schedules_match_tome_parse_r():
    assert ops.parse_r(8, 12) == [8] * 12
    assert ops.parse_r((8, -1.0), 4) == [16, 10, 5, 0]  # decreasing: 2r .. 0
    assert ops.parse_r([3, 2], 4) == [3, 2, 0, 0]
    assert sum(ops.parse_r((13, -1.0), 12)) <= 13 * 12


def test_keep_rate_warmup_is_a_half_cosine():
    assert ops.keep_rate_warmup(0, 0.7, start=10, steps=100) == 1.0
    assert ops.keep_rate_warmup(10, 0.7, start=10, steps=100) == pytest.approx(1.0)
    assert ops.keep_rate_warmup(60, 0.7, start=10, steps=100) == pytest.approx(0.85)
    assert ops.keep_rate_warmup(110, 0.7, start=10, steps=100) == 0.7
    assert ops.keep_rate_warmup(5, 0.7) == 0.7
    assert math.isclose(ops.keep_rate_warmup(35, 0.5, 10, 100), 0.5 + 0.25 * (1 + math.cos(math.pi / 4)))
