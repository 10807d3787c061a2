"""Tests for adatok.data.transforms: augmentation is a pure function of (image, seed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from adatok.data import load_image
from adatok.data.transforms import ImageTransform
from adatok.errors import ConfigError, InputError


def _noise(w=80, h=60, seed=0, mode="RGB"):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)


@pytest.mark.parametrize("crop", ["random", "random_resized"])
def test_same_seed_same_tensor_different_seeds_differ(crop):
    img, t = _noise(), ImageTransform(32, crop=crop)
    a, b = t(img, 123), t(img, 123)
    assert torch.equal(a, b)
    # A fresh instance (as in another process after a crash) gives the same result.
    assert torch.equal(a, ImageTransform(32, crop=crop)(img.copy(), 123))
    outs = [t(img, s) for s in range(10)]
    distinct = {o.numpy().tobytes() for o in outs}
    assert len(distinct) >= 8


def test_global_rng_is_not_used():
    img, t = _noise(), ImageTransform(32, crop="random_resized")
    torch.manual_seed(0)
    a = t(img, 5)
    torch.manual_seed(999)
    torch.rand(100)
    assert torch.equal(a, t(img, 5))


@pytest.mark.parametrize("crop", ["random", "center", "random_resized"])
def test_eval_path_is_center_crop_like_load_image(tmp_path, crop):
    path = tmp_path / "x.png"
    _noise(70, 50).save(path)
    t = ImageTransform(32, crop=crop)
    with Image.open(path) as img:
        x = t(img, None)
        y = t(img, None)
    assert torch.equal(x, y)
    assert torch.equal(x, load_image(path, 32))
    if crop == "center":  # center ignores the seed: no randomness at all
        with Image.open(path) as img:
            assert torch.equal(t(img, 7), x)


def test_random_crop_matches_torchvision_recipe():
    """Resize(size, bicubic) -> crop at the generator's offsets -> flip, as TiTok trains."""
    img, size = _noise(90, 50), 32
    t = ImageTransform(size, crop="random")
    for seed in range(6):
        gen = torch.Generator().manual_seed(seed)
        ref = TF.resize(img, size, interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
        w, h = ref.size
        top = int(torch.randint(0, h - size + 1, (1,), generator=gen))
        left = int(torch.randint(0, w - size + 1, (1,), generator=gen))
        ref = TF.crop(ref, top, left, size, size)
        if torch.rand(1, generator=gen).item() < 0.5:
            ref = TF.hflip(ref)
        assert torch.equal(t(img, seed), TF.to_tensor(ref))


def test_flip_is_the_only_difference_with_flip_off():
    img = _noise()
    on, off = ImageTransform(32), ImageTransform(32, flip=False)
    flipped = 0
    for seed in range(20):
        a, b = on(img, seed), off(img, seed)
        if not torch.equal(a, b):
            assert torch.equal(a, b.flip(-1))
            flipped += 1
    assert 3 <= flipped <= 17


def test_random_resized_full_box_is_a_plain_resize():
    img = _noise(80, 60)
    t = ImageTransform(24, crop="random_resized", flip=False, scale=(1.0, 1.0), ratio=(4 / 3, 4 / 3))
    want = TF.to_tensor(img.resize((24, 24), Image.Resampling.BICUBIC))
    assert torch.equal(t(img, 3), want)


def test_random_resized_box_in_bounds_and_fallback():
    t = ImageTransform(16, crop="random_resized")
    for seed in range(50):
        left, top, w, h = t.random_resized_box((100, 40), torch.Generator().manual_seed(seed))
        assert 0 <= left and left + w <= 100 and 0 <= top and top + h <= 40 and w > 0 and h > 0
        ratio, area = w / h, w * h / 4000
        assert 0.7 < ratio < 1.4 and 0.07 < area <= 1.0
    # No window of aspect 2 and full area fits a square: the fallback is a center window.
    fallback = ImageTransform(16, crop="random_resized", scale=(1.0, 1.0), ratio=(2.0, 2.0))
    assert fallback.random_resized_box((50, 50), torch.Generator().manual_seed(0)) == (0, 12, 50, 25)


@pytest.mark.parametrize("crop", ["random", "center", "random_resized"])
@pytest.mark.parametrize("wh", [(20, 30), (64, 64), (200, 40)])
def test_shapes_and_ranges(crop, wh):
    x = ImageTransform(32, crop=crop)(_noise(*wh), 11)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_other_modes_are_converted_like_load_image():
    rgba = Image.new("RGBA", (40, 40), (255, 0, 0, 0))  # fully transparent -> white
    assert torch.allclose(ImageTransform(16)(rgba, 1), torch.ones(3, 16, 16))
    gray16 = Image.fromarray(np.full((40, 40), 65535, dtype=np.uint16))
    x = ImageTransform(16, crop="random_resized")(gray16, 2)
    assert torch.allclose(x, torch.ones(3, 16, 16), atol=1e-6)


def test_seed_types_and_errors():
    img, t = _noise(), ImageTransform(16)
    assert torch.equal(t(img, np.int64(4)), t(img, 4))
    t(img, 2**70)  # any Python int is folded into the generator's 64 bits
    with pytest.raises(InputError):
        t(img, 1.5)
    with pytest.raises(InputError):
        t(np.zeros((4, 4, 3)), 1)
    for bad in [dict(size=0), dict(size=8, crop="bogus"), dict(size=8, scale=(0.5, 0.2)),
                dict(size=8, ratio=(0, 1)), dict(size=8, scale=3)]:
        with pytest.raises(ConfigError):
            ImageTransform(**bad)
    assert ImageTransform(8, scale=[0.1, 1]).scale == (0.1, 1.0)  # YAML lists normalised
    assert hash(ImageTransform(8)) == hash(ImageTransform(8))
