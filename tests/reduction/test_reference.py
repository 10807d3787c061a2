"""Our ToMe and EViT against independent re-statements of the official code (tests/reference/tome_ref.py)
on a random-weight timm DeiT-Ti at 224 x 224 (197 tokens, the setting the official numbers use)."""

import pytest
import timm
import torch
from reference.tome_ref import evit_forward, tome_forward

import adatok.reduction as R


@pytest.fixture(scope="module")
def deit_tiny():
    torch.manual_seed(0)
    return timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("r, tokens_left", [(8, 101), (13, 41), ((13, -1.0), None)])
def test_tome_matches_the_official_algorithm(deit_tiny, images, r, tokens_left):
    ref_logits, ref_tokens, ref_size, ref_source = tome_forward(deit_tiny, images, r, prop_attn=True)
    R.apply(deit_tiny, "tome", r=r, prop_attn=True, trace_source=True)
    try:
        with torch.no_grad():
            logits = deit_tiny(images)
        info = R.info(deit_tiny)
    finally:
        R.remove(deit_tiny)
    assert (logits - ref_logits).abs().max() < 1e-4
    assert info.tokens == ref_tokens and (tokens_left is None or info.tokens[-1] == tokens_left)
    assert torch.equal(info.size, ref_size)  # same merges: sizes and source maps exactly equal
    assert torch.equal(info.source, ref_source)


@pytest.mark.parametrize("fuse, counts", [(True, [197, 140, 100, 72]), (False, [197, 139, 98, 69])])
def test_evit_matches_the_official_algorithm(deit_tiny, images, fuse, counts):
    ref_logits, ref_tokens = evit_forward(deit_tiny, images, keep_rate=0.7, blocks=(3, 6, 9), fuse=fuse)
    R.apply(deit_tiny, "evit", keep_rate=0.7, fuse_token=fuse)
    try:
        with torch.no_grad():
            logits = deit_tiny(images)
        tokens = R.info(deit_tiny).tokens
    finally:
        R.remove(deit_tiny)
    assert (logits - ref_logits).abs().max() < 1e-4
    assert tokens == ref_tokens and tokens[2::3] == counts
