"""Tests for adatok.data.images: every file these tests read is created in tmp_path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from adatok.data import images as im
from adatok.data import (
    iter_image_batches,
    list_image_files,
    load_image,
    load_images,
    make_strip,
    save_image,
    to_uint8,
)
from adatok.errors import ImageLoadError, InputError

RED, BLUE = (255, 0, 0), (0, 0, 255)


# ----------------------------------------------------------------------------- helpers


def _solid(path, size=(16, 16), color=RED, mode="RGB", **save_kw):
    Image.new(mode, size, color).save(path, **save_kw)
    return path


def _noise_file(path, side=64, fmt=None):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path, format=fmt)
    return path


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _assert_error(exc_info, path, *pieces):
    msg = str(exc_info.value)
    assert str(path) in msg
    assert "\n" not in msg
    for piece in pieces:
        assert piece in msg, f"{piece!r} not in {msg!r}"


def _close(x, rgb, tol=0.02):
    want = torch.tensor(rgb, dtype=torch.float32).view(3, *([1] * (x.dim() - 1)))
    return bool(((x - want).abs() <= tol).all())


# ----------------------------------------------------------------------------- happy paths


def test_rgb_matches_torchvision_eval_transform(tmp_path):
    """8-bit inputs must match the reference 'Resize(bicubic) + CenterCrop + ToTensor'."""
    import torchvision.transforms as tv  # a hard dependency of adatok
    rng = np.random.default_rng(1)
    path = tmp_path / "rgb.png"
    Image.fromarray(rng.integers(0, 256, (37, 50, 3), dtype=np.uint8)).save(path)
    ref = tv.Compose([tv.Resize(16, interpolation=tv.InterpolationMode.BICUBIC),
                      tv.CenterCrop(16), tv.ToTensor()])(Image.open(path).convert("RGB"))
    out = load_image(path, 16)
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    assert torch.equal(out, ref)


def test_grayscale_l_replicated(tmp_path):
    out = load_image(_solid(tmp_path / "g.png", color=128, mode="L"), 8)
    assert torch.allclose(out, torch.full((3, 8, 8), 128 / 255))


def test_sixteen_bit_png_not_saturated(tmp_path):
    path = tmp_path / "g16.png"
    Image.fromarray(np.full((20, 30), 32768, np.uint16)).save(path)
    assert Image.open(path).mode == "I;16"
    out = load_image(path, 10)  # resized too: the value must survive the float resize
    assert out.shape == (3, 10, 10)
    assert torch.allclose(out, torch.full_like(out, 0.5), atol=1e-3)  # not 1.0


def test_sixteen_bit_tiff_low_values(tmp_path):
    path = tmp_path / "g16.tif"
    Image.fromarray(np.full((16, 16), 1000, np.uint16)).save(path)
    out = load_image(path, 16)
    assert torch.allclose(out, torch.full_like(out, 1000 / 65535), atol=1e-6)


def test_rgba_transparent_becomes_white(tmp_path):
    img = Image.new("RGBA", (16, 16), (0, 0, 0, 0))  # fully transparent black
    img.paste((255, 0, 0, 255), (0, 0, 8, 16))  # opaque red left half
    img.paste((0, 0, 0, 128), (8, 0, 16, 8))  # half-transparent black, top right
    img.save(tmp_path / "rgba.png")
    out = load_image(tmp_path / "rgba.png", 16)
    assert _close(out[:, :, :8], (1, 0, 0))
    assert _close(out[:, 8:, 8:], (1, 1, 1), tol=0)  # transparent -> white
    assert _close(out[:, :8, 8:], (127 / 255,) * 3, tol=0.01)  # 50% black over white


def test_la_composited_on_white(tmp_path):
    img = Image.new("LA", (16, 16), (0, 0))  # black, transparent
    img.paste((0, 255), (0, 0, 8, 16))  # black, opaque on the left
    img.save(tmp_path / "la.png")
    out = load_image(tmp_path / "la.png", 16)
    assert _close(out[:, :, :8], (0, 0, 0), tol=0)
    assert _close(out[:, :, 8:], (1, 1, 1), tol=0)


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (16, 16), 0)
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)  # 0 = red, 1 = green
    img.paste(1, (8, 0, 16, 16))
    img.save(tmp_path / "p.png", transparency=1)  # green is the transparent index
    out = load_image(tmp_path / "p.png", 16)
    assert _close(out[:, :, :8], (1, 0, 0), tol=0)
    assert _close(out[:, :, 8:], (1, 1, 1), tol=0)


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("RGB", (16, 16), RED).convert("CMYK").save(path)
    assert Image.open(path).mode == "CMYK"
    assert _close(load_image(path, 16), (1, 0, 0), tol=0.05)


def test_animated_gif_uses_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    first, second = Image.new("RGB", (16, 16), RED), Image.new("RGB", (16, 16), BLUE)
    first.save(path, save_all=True, append_images=[second], duration=50, loop=0)
    assert Image.open(path).n_frames == 2
    assert _close(load_image(path, 16), (1, 0, 0))


def test_exif_orientation_applied(tmp_path):
    img = Image.new("RGB", (40, 20), BLUE)
    img.paste(RED, (0, 0, 40, 10))  # red on top as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display": stored top becomes the right side
    img.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    out = load_image(tmp_path / "rot.jpg", 20)
    assert _close(out[:, :, :4], (0, 0, 1), tol=0.1)  # left: blue
    assert _close(out[:, :, -4:], (1, 0, 0), tol=0.1)  # right: red


@pytest.mark.parametrize("wh", [(3000, 1000), (100, 300)])
def test_non_square_center_crop(tmp_path, wh):
    """Blue image with a red band slightly wider than the central square: crop is all red."""
    w, h = wh
    img = Image.new("RGB", wh, BLUE)
    if w > h:
        img.paste(RED, ((w - h) // 2 - h // 10, 0, (w + h) // 2 + h // 10, h))
    else:
        img.paste(RED, (0, (h - w) // 2 - w // 10, w, (h + w) // 2 + w // 10))
    img.save(tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png", 32)
    assert out.shape == (3, 32, 32)
    assert _close(out, (1, 0, 0), tol=0.02)


def test_upscales_small_but_valid_image(tmp_path):
    out = load_image(_solid(tmp_path / "s.png", size=(8, 12)), 24)
    assert out.shape == (3, 24, 24) and out.min() >= 0 and out.max() <= 1


# ----------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(ImageLoadError) as e:
        load_image(path, 16)
    _assert_error(e, path, "no such file", "check the path")


def test_directory(tmp_path):
    with pytest.raises(ImageLoadError) as e:
        load_image(tmp_path, 16)
    _assert_error(e, tmp_path, "is a directory")


def test_zero_byte(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError) as e:
        load_image(path, 16)
    _assert_error(e, path, "empty (0 bytes)")


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("hello, I am not a picture\n")
    with pytest.raises(ImageLoadError) as e:
        load_image(path, 16)
    _assert_error(e, path, "not a recognised image format")


@pytest.mark.parametrize("name", ["cut.jpg", "cut.png"])
def test_truncated(tmp_path, name):
    path = _truncate(_noise_file(tmp_path / name))
    with pytest.raises(ImageLoadError) as e:
        load_image(path, 16)
    _assert_error(e, path, "truncated or corrupt")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # global Pillow state untouched


@pytest.mark.parametrize("wh", [(1, 1), (4, 4), (100, 7)])
def test_too_small(tmp_path, wh):
    path = _solid(tmp_path / "tiny.png", size=wh)
    with pytest.raises(ImageLoadError) as e:
        load_image(path, 16)
    _assert_error(e, path, f"only {wh[0]}x{wh[1]} pixels", "at least 8")


def test_too_many_pixels_own_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(im, "MAX_PIXELS", 300)
    path = _solid(tmp_path / "big.png", size=(20, 20))
    with pytest.raises(ImageLoadError) as e:
        load_image(path, 16)
    _assert_error(e, path, "400 pixels", "limit of 300", "decompression bomb")


def test_too_many_pixels_pillow_limit(tmp_path, monkeypatch):
    """An application that lowered Pillow's limit still gets a one-line ImageLoadError."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow errors above 2x this
    path = _solid(tmp_path / "big.png", size=(20, 20))
    with pytest.raises(ImageLoadError) as e:
        load_image(path, 16)
    _assert_error(e, path, "400 pixels", "decompression bomb")


def test_bad_size_argument(tmp_path):
    with pytest.raises(InputError):
        load_image(_solid(tmp_path / "a.png"), 0)


# ----------------------------------------------------------------------------- batches


@pytest.fixture
def mixed(tmp_path):
    """good, empty, good, missing, text, good — as paths."""
    good = [_solid(tmp_path / f"g{i}.png", color=(i * 60, 0, 0)) for i in range(3)]
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "t.png"
    text.write_text("x")
    return [good[0], empty, good[1], tmp_path / "missing.png", text, good[2]], good


def test_load_images_skip(mixed):
    paths, good = mixed
    batch, ok, errors = load_images(paths, 8, on_error="skip")
    assert batch.shape == (3, 3, 8, 8)
    assert ok == good
    assert [e.path for e in errors] == [str(paths[1]), str(paths[3]), str(paths[4])]
    assert torch.allclose(batch[:, 0, 0, 0], torch.tensor([0, 60, 120]) / 255)


def test_load_images_raise(mixed):
    paths, _ = mixed
    with pytest.raises(ImageLoadError) as e:
        load_images(paths, 8)
    _assert_error(e, paths[1], "empty")


def test_load_images_all_bad_and_bad_mode(tmp_path):
    batch, ok, errors = load_images([tmp_path / "x.png"], 8, on_error="skip")
    assert batch.shape == (0, 3, 8, 8) and ok == [] and len(errors) == 1
    with pytest.raises(InputError):
        load_images([], 8, on_error="ignore")


def test_iter_batches_full_batches_and_trailing_errors(mixed, tmp_path):
    paths, good = mixed
    paths = paths + [tmp_path / "late_missing.png"]
    out = list(iter_image_batches(paths, 8, batch_size=2))
    assert [b.shape[0] for _, b, _ in out] == [2, 1]
    assert [p for ok, _, _ in out for p in ok] == good
    reported = [e.path for _, _, errs in out for e in errs]
    assert sorted(reported) == sorted(str(p) for p in paths if p not in good)
    assert str(tmp_path / "late_missing.png") in [e.path for e in out[-1][2]]


def test_iter_batches_edge_cases(tmp_path):
    assert list(iter_image_batches([], 8, batch_size=4)) == []
    ((ok, batch, errors),) = iter_image_batches([tmp_path / "a.png"], 8, batch_size=4)
    assert ok == [] and batch.shape == (0, 3, 8, 8) and len(errors) == 1
    good = [_solid(tmp_path / f"g{i}.png") for i in range(4)]
    assert [b.shape[0] for _, b, _ in iter_image_batches(good, 8, batch_size=2)] == [2, 2]
    with pytest.raises(ImageLoadError):
        list(iter_image_batches([good[0], tmp_path / "a.png"], 8, 2, on_error="raise"))
    with pytest.raises(InputError):
        iter_image_batches(good, 8, batch_size=0)  # raises at the call, not on next()


# ----------------------------------------------------------------------------- listing


def test_list_image_files(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ["d/b.png", "d/sub/a.JPG", "d/c.webp"]:
        _solid(tmp_path / name, format="PNG")
    (tmp_path / "d" / "notes.txt").write_text("x")
    odd = tmp_path / "explicit.dat"
    odd.write_text("x")
    files = list_image_files([tmp_path / "d", str(odd)])
    rel = [p.relative_to(tmp_path).as_posix() for p in files]
    assert rel == ["d/b.png", "d/c.webp", "d/sub/a.JPG", "explicit.dat"]
    assert list_image_files(tmp_path / "d" / "b.png") == [tmp_path / "d" / "b.png"]


def test_list_image_files_errors(tmp_path):
    with pytest.raises(ImageLoadError) as e:
        list_image_files([tmp_path / "gone"])
    _assert_error(e, tmp_path / "gone", "no such file")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ImageLoadError) as e:
        list_image_files(tmp_path / "empty_dir")
    _assert_error(e, tmp_path / "empty_dir", "no image files")


# ----------------------------------------------------------------------------- saving


def test_to_uint8():
    x = torch.tensor([-0.1, 0.0, 0.5, 1 / 255, 1.0, 1.2, float("nan")])
    assert to_uint8(x).tolist() == [0, 0, 128, 1, 255, 255, 0]
    with pytest.raises(InputError):
        to_uint8(torch.zeros(3, dtype=torch.uint8))


def test_save_image_round_trip(tmp_path):
    x = torch.randint(0, 256, (3, 12, 10)).float() / 255
    path = save_image(x.unsqueeze(0), tmp_path / "out" / "deep" / "r.png")
    assert path.exists() and Image.open(path).format == "PNG"
    back = torch.from_numpy(np.array(Image.open(path))).permute(2, 0, 1).float() / 255
    assert torch.equal(back, x)
    with pytest.raises(InputError):
        save_image(torch.zeros(4, 8, 8), tmp_path / "bad.png")


# ----------------------------------------------------------------------------- strips


def test_make_strip_layout():
    a, b = torch.zeros(3, 8, 10), torch.full((3, 6, 12), 0.25)
    strip = make_strip([a, b], gap=4)
    assert strip.shape == (3, 8, 26)
    assert torch.equal(strip[:, :, :10], a)
    assert torch.all(strip[:, :, 10:14] == 1)  # gap is white
    assert torch.equal(strip[:, :6, 14:], b)
    assert torch.all(strip[:, 6:, 14:] == 1)  # shorter image padded with white


def test_make_strip_labels():
    imgs = [torch.zeros(3, 16, 40), torch.zeros(3, 16, 40)]
    strip = make_strip(imgs, ["orig", "L=32"])
    assert strip.shape[1] > 16 and strip.shape[2] == 84
    band = strip[:, 16:]
    assert band[:, :, :40].min() < 0.5 and band[:, :, 44:].min() < 0.5  # text drawn
    assert torch.all(band[:, :, 40:44] == 1)
    with pytest.raises(InputError):
        make_strip(imgs, ["only one"])
    with pytest.raises(InputError):
        make_strip([])
