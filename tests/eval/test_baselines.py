"""Thumbnail / JPEG / WebP baselines: bytes within budget, actual file sizes, PSNR rising with bytes."""

from pathlib import Path

import numpy as np
import pytest
import torch

import adatok
from adatok.data.images import load_images
from adatok.errors import InputError
from adatok.eval.baselines import baseline_points, encode_jpeg, encode_webp, thumbnail, thumbnail_side
from adatok.eval.rate_distortion import to_uint8

SAMPLES = Path(adatok.__file__).parent / "data" / "samples"


@pytest.fixture(scope="module")
def images():
    return load_images(sorted(SAMPLES.glob("*.jpg")), 64)[0]


def test_thumbnail_side_is_the_largest_square_that_fits():
    assert [thumbnail_side(b) for b in (0, 2, 3, 11, 12, 74, 75, 768)] == [0, 0, 1, 1, 2, 4, 5, 16]
    with pytest.raises(InputError, match="budget_bytes"):
        thumbnail_side(-1)


def test_a_flat_image_survives_any_thumbnail():
    flat = np.full((64, 64, 3), 77, dtype=np.uint8)
    assert np.array_equal(thumbnail(flat, 2), flat)


def test_baselines_fit_their_budget_count_actual_bytes_and_improve_with_bytes(images):
    budgets = [12, 48, 192, 768]
    points = baseline_points(images, budgets, jpeg_qualities=(1, 10, 40), webp_qualities=(0, 10, 40))
    thumbs = [p for p in points if p.method == "thumbnail"]
    assert [p.label for p in thumbs] == ["2x2 px", "4x4 px", "8x8 px", "16x16 px"]
    for p, budget in zip(thumbs, budgets):
        assert p.bytes_per_image == [budget] * len(images)  # these budgets are exactly 3 s^2
        assert p.bits == 8 * budget and p.bpp == p.bits / 64 ** 2 and p.kind == "baseline" and p.tokens is None
    u8 = to_uint8(images)
    jpeg10 = next(p for p in points if p.method == "jpeg" and p.label == "q=10")
    assert jpeg10.bytes_per_image == [len(encode_jpeg(im, 10)) for im in u8]
    webp0 = next(p for p in points if p.method == "webp" and p.label == "q=0")
    assert webp0.bytes_per_image == [len(encode_webp(im, 0)) for im in u8]
    for method in ("thumbnail", "jpeg", "webp"):
        ps = [p for p in points if p.method == method]
        assert all(a.bits < b.bits for a, b in zip(ps, ps[1:])), method
        assert all(a.psnr < b.psnr for a, b in zip(ps, ps[1:])), method
        assert all(0 < p.ssim <= 1 for p in ps)


def test_budgets_too_small_for_one_pixel_are_dropped(images):
    points = baseline_points(images[:1], [1, 2], jpeg_qualities=(), webp_qualities=())
    assert points == []
    with pytest.raises(InputError, match="B x 3 x H x W"):
        baseline_points(torch.rand(3, 8, 8))


def test_same_bytes_thumbnails_look_up_the_thumbnail_point_of_each_budget():
    from adatok.eval.baselines import baseline_points, same_bytes_thumbnails, thumbnail_side

    torch.manual_seed(0)
    images = torch.rand(3, 3, 32, 32)
    budgets = [2.0, 10.0, 12.0, 80.0]  # below one pixel, 1x1, 2x2 (12 bytes), 5x5
    got = same_bytes_thumbnails(images, budgets)
    assert [side for side, _ in got] == [thumbnail_side(b) for b in budgets] == [0, 1, 2, 5]
    assert got[0][1] is None
    points = {p.label: p.psnr for p in baseline_points(images, budgets, (), ())}
    assert [psnr for _, psnr in got[1:]] == [points["1x1 px"], points["2x2 px"], points["5x5 px"]]
