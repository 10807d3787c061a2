"""Per-image (threshold) EViT and ImagePiece on the padded-batch machinery threshold ToMe uses: a
threshold that keeps everything is reduction off, a batch equals each image alone, sizes and lengths
add up, cap and floor hold, at the cap it is the fixed mode, padding is never attended."""

import pytest
import timm
import torch

import adatok.reduction as R
from adatok.errors import ConfigError
from adatok.reduction import timm_patch
from adatok.reduction.base import BlockNeeds, TokenState

SETTINGS = {
    "evit_fused": ("evit", dict(keep_rate=0.3, threshold=0.7, min_tokens=4)),
    "evit_plain": ("evit", dict(keep_rate=0.3, threshold=0.7, min_tokens=4, fuse_token=False)),
    "imagepiece": ("imagepiece", dict(keep_rate=0.5, nonsemantic_ratio=0.5, merge_ratio=0.2, threshold=0.7,
                                      merge_threshold=0.5, min_tokens=4)),
    "imagepiece_merge_only": ("imagepiece", dict(nonsemantic_ratio=0.5, merge_ratio=0.2, merge_threshold=0.9,
                                                 min_tokens=4, rounds=2)),
}


def deit(img_size=96):
    """Random DeiT-Ti whose queries and keys are scaled up: peaked attention, so that images differ."""
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=img_size).eval()
    with torch.no_grad():
        for blk in model.blocks:
            blk.attn.qkv.weight[: 2 * model.embed_dim] *= 6
    return model


def mixed_batch(size=96):
    """A nearly flat image and two noise images."""
    g = torch.Generator().manual_seed(0)
    flat = 0.5 + 0.01 * torch.rand(1, 3, size, size, generator=g)
    return torch.cat([flat, torch.rand(2, 3, size, size, generator=g)])


@pytest.mark.parametrize("method,settings", [("evit", dict(threshold=1.0)),
                                             ("evit", dict(threshold=1.0, fuse_token=False, keep_rate=0.2)),
                                             ("imagepiece", dict(threshold=1.0, merge_threshold=1.0))])
def test_threshold_keeping_everything_is_reduction_off(method, settings):
    model, x = deit(), mixed_batch()
    with torch.no_grad():
        ref = model(x)
        R.apply(model, method, **settings)
        out = model(x)
    info = R.info(model)
    n0 = model.patch_embed.num_patches + 1
    assert info.tokens == [n0] * len(model.blocks) and info.lengths.tolist() == [n0] * 3
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_batch_equals_each_image_alone(name):
    method, settings = SETTINGS[name]
    model = R.apply(deit(), method, **settings)
    x = mixed_batch()
    with torch.no_grad():
        y = model(x)
        lengths = R.info(model).lengths.clone()
        assert len(set(lengths.tolist())) > 1, "the mixed batch should keep different numbers of tokens"
        for i in range(x.shape[0]):
            yi = model(x[i:i + 1])
            assert R.info(model).lengths.tolist() == [lengths[i].item()]
            torch.testing.assert_close(yi, y[i:i + 1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_sizes_lengths_cap_and_floor(name):
    method, settings = SETTINGS[name]
    model = R.apply(deit(), method, **settings)
    with torch.no_grad():
        model(mixed_batch())
    info = R.info(model)
    n0 = model.patch_embed.num_patches + 1
    torch.testing.assert_close(info.size.sum(1) + info.dropped, torch.full((3,), float(n0)))  # every patch once
    assert torch.equal((info.size > 0).sum(1), info.lengths)  # real tokens first, padding (size 0) after
    for b, n in enumerate(info.lengths.tolist()):
        assert (info.size[b, :n] >= 1).all() and (info.size[b, n:] == 0).all()
    assert info.tokens[-1] == int(info.lengths.max())
    fixed = R.token_counts(model)  # the fixed mode's counts (every cap reached): no image goes below them
    first = len(fixed) - len(info.block_lengths)  # lengths are recorded from the first reducing block on
    for i, lengths in enumerate(info.block_lengths, start=first):
        assert (lengths >= fixed[i]).all() and (lengths >= settings["min_tokens"]).all()  # cap and floor
        assert (lengths <= (n0 if i == first else info.block_lengths[i - first - 1])).all()
    assert (info.lengths < n0).any()  # it reduced something


@pytest.mark.parametrize("method,fixed,thresholds", [
    ("evit", dict(keep_rate=0.7), dict(threshold=1e-6)),
    ("evit", dict(keep_rate=0.7, fuse_token=False), dict(threshold=1e-6)),
    ("imagepiece", dict(keep_rate=0.7), dict(threshold=1e-6, merge_threshold=-0.999)),
])
def test_at_the_cap_it_is_the_fixed_mode(method, fixed, thresholds):
    """Thresholds every token passes: each image removes exactly the fixed count."""
    x = mixed_batch()
    a_model, b_model = R.apply(deit(), method, **fixed), R.apply(deit(), method, **fixed, **thresholds)
    with torch.no_grad():
        a, b = a_model(x), b_model(x)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
    assert R.info(b_model).tokens == R.info(a_model).tokens
    assert torch.equal(R.info(b_model).size, R.info(a_model).size)


@pytest.mark.parametrize("prop_attn", [True, False])
def test_padding_is_never_attended(prop_attn):
    """Garbage in the padding rows changes neither the real tokens' outputs nor their class attention,
    and the padding gets exactly 0 class attention."""
    model = deit()
    attn = model.blocks[0].attn
    g = torch.Generator().manual_seed(1)
    real = torch.randn(2, 5, model.embed_dim, generator=g)
    padded = torch.cat([real, 100 * torch.randn(2, 3, model.embed_dim, generator=g)], dim=1)
    needs = BlockNeeds(metric=True, cls_attn=True)

    def state(size):
        s = TokenState.start(torch.zeros(2, size.shape[1], 1), False, False)
        s.size, s.lengths, s.merged, s.prop_attn = size, (size[..., 0] > 0).sum(1), True, prop_attn
        return s

    sizes = torch.tensor([[1.0, 2, 1, 3, 1], [1, 1, 1, 1, 2]])[..., None]
    with torch.no_grad():
        for eager in (False, True):
            ref, _, ref_cls = timm_patch._attention(attn, real, state(sizes), needs, eager)
            out, _, cls = timm_patch._attention(attn, padded, state(torch.cat([sizes, torch.zeros(2, 3, 1)], 1)),
                                                needs, eager)
            torch.testing.assert_close(out[:, :5], ref, rtol=0, atol=1e-5)
            torch.testing.assert_close(cls[:, :4], ref_cls, rtol=0, atol=1e-6)
            assert (cls[:, 4:] == 0).all()


def test_config_errors():
    for method, bad in [("evit", {"threshold": 0.0}), ("evit", {"threshold": 1.5}), ("evit", {"min_tokens": 0}),
                        ("imagepiece", {"threshold": -0.1}), ("imagepiece", {"merge_threshold": -1.0}),
                        ("imagepiece", {"merge_threshold": "high"}), ("imagepiece", {"min_tokens": True})]:
        with pytest.raises(ConfigError):
            R.apply(deit(), method, **bad)
