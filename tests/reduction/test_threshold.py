"""Per-image (threshold) ToMe: a padded batch with lengths, equal to running each image alone, equal
to fixed-r ToMe when every image reaches the cap, sizes and lengths consistent, cap and floor honoured."""

import pytest
import timm
import torch

import adatok.reduction as R
from adatok.errors import ConfigError
from adatok.reduction import ops


def deit(img_size=96):
    torch.manual_seed(0)
    return timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=img_size).eval()


def mixed_batch(size=96):
    """A nearly flat image (many similar patches) and two noise images."""
    g = torch.Generator().manual_seed(0)
    flat = 0.5 + 0.01 * torch.rand(1, 3, size, size, generator=g)
    return torch.cat([flat, torch.rand(2, 3, size, size, generator=g)])


@pytest.mark.parametrize("prop_attn", [True, False])
def test_batch_equals_each_image_alone_and_lengths_differ(prop_attn):
    model = R.apply(deit(), "tome", r=3, threshold=0.9, min_tokens=5, prop_attn=prop_attn)
    x = mixed_batch()
    with torch.no_grad():
        y = model(x)
        info = R.info(model)
        lengths = info.lengths.clone()
        assert len(set(lengths.tolist())) > 1, "the mixed batch should keep different numbers of tokens"
        for i in range(x.shape[0]):
            yi = model(x[i:i + 1])
            assert R.info(model).lengths.tolist() == [lengths[i].item()]
            torch.testing.assert_close(yi, y[i:i + 1], rtol=0, atol=1e-5)
    assert info.tokens[-1] == int(lengths.max())  # width = the longest image


def test_sizes_and_lengths_add_up():
    model = R.apply(deit(), "tome", r=3, threshold=0.9, min_tokens=5)
    with torch.no_grad():
        model(mixed_batch())
    info = R.info(model)
    n0 = model.patch_embed.num_patches + 1
    torch.testing.assert_close(info.size.sum(1), torch.full((3,), float(n0)))  # every patch counted once
    assert torch.equal((info.size > 0).sum(1), info.lengths)  # real tokens first, padding has size 0
    for b, n in enumerate(info.lengths.tolist()):
        assert (info.size[b, :n] >= 1).all() and (info.size[b, n:] == 0).all()
    prev = torch.full((3,), n0)
    for lengths in info.block_lengths:  # never more than r merged per block, never below the floor
        assert ((prev - lengths) <= 3).all() and ((prev - lengths) >= 0).all() and (lengths >= 5).all()
        prev = lengths


def test_at_the_cap_it_is_fixed_r_tome():
    """A threshold every pair exceeds: each image merges exactly r per block = ToMe with r."""
    fixed = R.apply(deit(), "tome", r=2)
    thr = R.apply(deit(), "tome", r=2, threshold=-0.999)
    x = mixed_batch()
    with torch.no_grad():
        a, b = fixed(x), thr(x)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
    assert R.info(thr).tokens == R.info(fixed).tokens
    assert torch.equal(R.info(thr).size, R.info(fixed).size)


def test_floor_holds_and_source_maps_partition_the_patches():
    model = R.apply(deit(), "tome", r=16, threshold=-0.999, min_tokens=12, trace_source=True)
    with torch.no_grad():
        model(mixed_batch())
    info = R.info(model)
    assert info.lengths.tolist() == [12, 12, 12]
    src = info.source  # B x width x N0; padding rows empty, real rows a partition of the input tokens
    assert torch.equal(src.sum(1), torch.ones_like(src.sum(1)))
    assert torch.equal(src.sum(2), info.size)


def test_off_is_unchanged():
    """threshold=None is the fixed-r path, bit for bit."""
    x = mixed_batch()
    with torch.no_grad():
        a = R.apply(deit(), "tome", r=2)(x)
        b = R.apply(deit(), "tome", r=2, threshold=None, min_tokens=1)(x)
    assert torch.equal(a, b)


def test_padded_merge_by_hand():
    # one image, 5 tokens: A = positions 0, 2, 4; B = 1, 3. Token 2 equals token 3; token 4 is far.
    metric = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 1.0], [-1.0, 0.2]]])
    size = torch.ones(1, 5, 1)
    m = ops.threshold_matching(metric, size, threshold=0.99, r_max=2, min_tokens=1)
    assert m.lengths.tolist() == [4] and m.order.shape == (1, 4)
    x = torch.arange(5.0).view(1, 5, 1)
    merged, new_size = ops.merge_wavg(m, x, size)
    # [A kept by position: 0, 4][B: 1, (2 + 3) / 2]
    assert merged.flatten().tolist() == [0.0, 4.0, 1.0, 2.5] and new_size.flatten().tolist() == [1, 1, 1, 2]


def test_config_errors():
    for bad in ({"threshold": 1.5}, {"threshold": -1.0}, {"min_tokens": 0}, {"threshold": "high"}):
        with pytest.raises(ConfigError):
            R.apply(deit(), "tome", r=2, **bad)
