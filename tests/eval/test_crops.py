import numpy as np
import pytest
import torch
from PIL import Image

from adatok.errors import InputError
from adatok.eval.crops import heldout_crops, multiscale_crops


def _photo(path, w=96, h=80, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def test_a_photo_gives_21_crops_and_the_grid_tiles_the_centred_square(tmp_path):
    a = np.zeros((80, 96, 3), np.uint8)
    a[:, :, 0] = np.arange(96)[None, :]  # red encodes x
    a[:, :, 1] = np.arange(80)[:, None]  # green encodes y
    crops = multiscale_crops(Image.fromarray(a), 8)
    assert len(crops) == 21 and all(c.size == (8, 8) for c in crops)
    # scale 1: the centred 80x80 square (x 8..88), so mean red ~ 48, mean green ~ 40
    c0 = np.asarray(crops[0]).astype(float)
    assert abs(c0[..., 0].mean() - 47.5) < 1.5 and abs(c0[..., 1].mean() - 39.5) < 1.5
    # scale 1/2, row-major: the second crop is the top-right quarter
    c2 = np.asarray(crops[2]).astype(float)
    assert abs(c2[..., 0].mean() - 67.5) < 1.5 and abs(c2[..., 1].mean() - 19.5) < 1.5


def test_heldout_crops_are_deterministic_sorted_and_named(tmp_path):
    _photo(tmp_path / "b.png", seed=1)
    _photo(tmp_path / "a.jpg", seed=2)
    (tmp_path / "notes.txt").write_text("not an image")
    x, names = heldout_crops(tmp_path, 16)
    y, _ = heldout_crops(tmp_path, 16)
    assert x.shape == (42, 3, 16, 16) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1 and torch.equal(x, y)
    assert names[0] == "a@1#0" and names[21] == "b@1#0" and names[-1] == "b@0.25#20"


def test_bad_inputs_are_clear(tmp_path):
    with pytest.raises(InputError, match="not a folder"):
        heldout_crops(tmp_path / "missing", 16)
    with pytest.raises(InputError, match="no image files"):
        heldout_crops(tmp_path, 16)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="broken.png: not a readable image"):
        heldout_crops(tmp_path, 16)
    with pytest.raises(InputError, match="not 1/n"):
        multiscale_crops(Image.new("RGB", (8, 8)), 4, scales=(0.3,))
