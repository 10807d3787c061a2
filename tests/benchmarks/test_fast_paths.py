"""The CPU fast paths the benchmarks measure against the code before them give the same outputs:
the last-block trim of the ViT stacks (only the tokens read are computed) and ToMe's merge applied
as one gather plus one in-place scatter."""

import torch

import adatok
from adatok.layers.attention import Attention
from adatok.layers.block import Transformer
from adatok.reduction import ops


def test_transformer_keep_equals_slicing_the_full_output():
    torch.manual_seed(0)
    t = Transformer(64, 3, 4).eval()
    x = torch.randn(2, 37, 64)
    with torch.no_grad():
        full = t(x)
        for keep in (slice(-5, None), slice(1, 33)):
            out = t(x, keep=keep)
            assert out.shape == full[:, keep].shape
            torch.testing.assert_close(out, full[:, keep], rtol=0, atol=1e-6)
            for sdpa in (True, False):
                Attention.use_sdpa = sdpa
                try:
                    torch.testing.assert_close(t(x, keep=keep), t(x)[:, keep], rtol=0, atol=1e-6)
                finally:
                    Attention.use_sdpa = True


def test_trim_switch_off_is_the_full_last_block():
    torch.manual_seed(0)
    t = Transformer(32, 2, 2).eval()
    x = torch.randn(1, 9, 32)
    Transformer.trim_last_block = False
    try:
        assert torch.equal(t(x, keep=slice(-3, None)), t(x)[:, -3:])
    finally:
        Transformer.trim_last_block = True


def test_titok_encode_decode_unchanged_by_the_trim():
    torch.manual_seed(0)
    tok = adatok.create_model("titok_tiny").eval()
    x = torch.rand(2, 3, tok.config.image_size, tok.config.image_size)
    with torch.no_grad():
        a = tok.encode(x)
        da = tok.decode(a)
        Transformer.trim_last_block = False
        try:
            b = tok.encode(x)
            db = tok.decode(b)
        finally:
            Transformer.trim_last_block = True
    assert torch.equal(a.ids, b.ids)
    torch.testing.assert_close(a.latents, b.latents, rtol=0, atol=1e-6)
    torch.testing.assert_close(da, db, rtol=0, atol=1e-5)


def _merge_by_halves(m: ops.BipartiteMerge, x, mode):
    """ToMe's formulation: gather from the A/B halves, scatter into B, concatenate."""
    a, b = x[:, ::2, :], x[:, 1::2, :]
    n, na, c = a.shape
    kept = a.gather(1, m.unm_idx.expand(n, na - m.r, c))
    moved = a.gather(1, m.src_idx.expand(n, m.r, c))
    b = b.scatter_reduce(1, m.dst_idx.expand(n, m.r, c), moved, reduce=mode)
    return torch.cat([kept, b], dim=1)


def test_bipartite_merge_equals_the_halves_formulation_bitwise():
    g = torch.Generator().manual_seed(0)
    for n_tokens in (197, 50, 7):  # odd and even counts
        x = torch.randn(3, n_tokens, 16, generator=g)
        metric = torch.randn(3, n_tokens, 8, generator=g)
        metric[:, 5] = metric[:, 3]  # ties: two A tokens want the same destination equally
        m = ops.bipartite_soft_matching(metric, r=min(13, (n_tokens - 1) // 2))
        for mode in ("sum", "amax"):
            assert torch.equal(m(x, mode), _merge_by_halves(m, x, mode))
        size = torch.rand(3, n_tokens, 1, generator=g) + 0.5
        merged, new_size = ops.merge_wavg(m, x, size)
        ref = _merge_by_halves(m, x * size, "sum") / _merge_by_halves(m, size, "sum")
        assert torch.equal(merged, ref) and torch.equal(new_size, _merge_by_halves(m, size, "sum"))
