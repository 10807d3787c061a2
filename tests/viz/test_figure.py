"""Readable figures: labels wrap instead of being cut, small images are enlarged, the chosen length is marked,
merge maps count blocks from 1 (issue: the demo strip cut "flat (synt", merge maps of small models were
140 px wide, `_recon.png` had no original beside it)."""

import torch
from PIL import Image, ImageFont

from adatok.cli.main import main
from adatok.viz.figure import compare_figure, length_figure
from adatok.data.images import make_strip, wrap_label
from adatok.reduction.base import BlockTrace
from adatok.viz import enlarge, labelled_strip, mark, merge_figure


def _marked_columns(fig, tile_height=128):
    """Columns holding a full-height run of the mark colour (a border's vertical edge)."""
    c = torch.tensor([0.85, 0.1, 0.1]).view(3, 1, 1)
    exact = ((fig - c).abs() < 3 / 255).all(dim=0)
    return (exact.sum(dim=0) >= tile_height).nonzero().flatten()


def _text_width(s):
    return ImageFont.load_default().getlength(s)


def test_wrap_label_keeps_every_character_and_fits():
    for text, width in [("flat (synthetic)", 64), ("gradient (synthetic)", 40), ("supercalifragilistic", 30),
                        ("orig", 200), ("", 50)]:
        lines = wrap_label(text, width)
        assert "".join(lines).replace(" ", "") == text.replace(" ", "")
        assert all(_text_width(line) <= max(width - 6, _text_width(line[:1])) for line in lines)
    assert wrap_label("orig", 200) == ["orig"]
    assert len(wrap_label("flat (synthetic)", 64)) == 2


def test_make_strip_band_grows_with_wrapped_labels():
    one = make_strip([torch.zeros(3, 16, 64)], ["flat"])
    two = make_strip([torch.zeros(3, 16, 64)], ["flat (synthetic)"])
    assert two.shape[1] > one.shape[1]
    band = two[:, 16:]
    rows_with_ink = (band.min(dim=0).values < 0.5).any(dim=1).nonzero().flatten()
    # ink on both lines: the second line starts below the first line's height
    assert rows_with_ink.max() - rows_with_ink.min() > (one.shape[1] - 16) - 6


def test_enlarge_and_mark():
    img = torch.rand(3, 32, 48)
    big = enlarge(img, 128)
    assert big.shape == (3, 128, 192) and torch.equal(big[:, ::4, ::4], img)
    assert enlarge(img, 16) is img
    m = mark(img, width=2)
    assert torch.allclose(m[:, 0, 0], torch.tensor([0.85, 0.1, 0.1])) and torch.equal(m[:, 2:-2, 2:-2], img[:, 2:-2, 2:-2])
    assert torch.equal(img, img.clone())  # the input is not changed


def test_labelled_strip_marks_only_the_chosen_tile():
    tiles = [torch.full((3, 16, 16), 0.5) for _ in range(3)]
    strip = labelled_strip(tiles, ["a", "b", "c"], min_side=64, marked=1)
    assert strip.shape[2] == 3 * 64 + 2 * 4
    cols = _marked_columns(strip, 64)
    assert len(cols) == 6 and cols.min() >= 68 and cols.max() < 68 + 64


def test_length_figure_marks_the_chosen_length_and_compare_has_the_original():
    original = torch.rand(3, 32, 32)
    images = [torch.rand(3, 32, 32) for _ in range(3)]
    fig = length_figure(original, images, [16, 32, 48], chosen=32, psnrs=[20.0, 22.0, 23.0])
    cols = _marked_columns(fig)
    tile = 128 + 4
    assert len(cols) == 6 and cols.min() >= 2 * tile and cols.max() < 3 * tile  # the third tile: 32 tokens
    assert len(_marked_columns(length_figure(original, images, [16, 32, 48], chosen=None))) == 0
    cmp = compare_figure(original, images[0], 32, 21.5)
    assert torch.equal(cmp[:, :128, :128], enlarge(original, 128))


def test_reconstruct_writes_compare_and_marked_lengths(tmp_path):
    from adatok.data.images import save_image

    for i in range(2):
        save_image(torch.rand(3, 64, 64), tmp_path / f"in{i}.png")
    out = tmp_path / "rec"
    assert main(["reconstruct", str(tmp_path / "in0.png"), str(tmp_path / "in1.png"), "--model", "alit_default",
                 "--adaptive", "--criterion", "budget", "--threshold", "32", "--all-lengths", "--out", str(out)]) == 0
    compare = Image.open(out / "in0_compare.png")
    assert compare.width == 2 * 128 + 4
    strip = torch.from_numpy(__import__("numpy").asarray(Image.open(out / "in0_lengths.png"), dtype="float32") / 255)
    cols = _marked_columns(strip.permute(2, 0, 1))
    tile = 128 + 4
    assert cols.min() >= 2 * tile and cols.max() < 3 * tile  # alit_default lengths 16, 32, ...: 32 is the 2nd
    assert main(["reconstruct", str(tmp_path / "in0.png"), "--model", "alit_default", "--no-compare",
                 "--out", str(tmp_path / "rec2")]) == 0
    assert not list((tmp_path / "rec2").glob("*_compare.png"))


def test_merge_figure_numbers_blocks_from_one_and_enlarges_small_images():
    grid, n0 = (2, 2), 5
    source = torch.eye(n0)[None]  # nothing merged at block 0
    merged = torch.tensor([[1, 0, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 1, 1]], dtype=torch.float32)[None]
    blocks = [BlockTrace(0, 5, 5, source), BlockTrace(2, 5, 3, merged)]
    fig = merge_figure(torch.rand(3, 32, 32), blocks, grid)
    assert fig.shape[2] == 2 * 160 + 4  # input + one panel (block 0 changed nothing), enlarged to 160 px
    import adatok.viz.merges as M
    labels = []
    orig = M.make_strip
    M.make_strip = lambda imgs, labs: labels.extend(labs) or orig(imgs, labs)
    try:
        merge_figure(torch.rand(3, 32, 32), blocks, grid)
    finally:
        M.make_strip = orig
    assert "block 3: 5->3" in labels
