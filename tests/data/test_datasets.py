"""Tests for adatok.data.readers, shard_paths and shard_writer: folders, tar shards, the (index, seed) protocol, bad files."""

from __future__ import annotations

import argparse
import io
import json
import logging
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from adatok.cli import data as data_cli
from adatok.data import load_image
from adatok.data import (
    ImageDataset,
    ShardDataset,
    expand_braces,
    expand_shards,
    split_member_name,
    write_shards,
)
from adatok.data.transforms import ImageTransform
from adatok.errors import AdatokError

T = ImageTransform(16, crop="random_resized")


def _img(path, seed, size=(40, 30), fmt=None):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, format=fmt)
    return path


@pytest.fixture
def folder(tmp_path):
    """ImageFolder layout: 2 classes, 5 images (PNG and JPEG), plus things to ignore."""
    root = tmp_path / "imgs"
    _img(root / "cat" / "b.png", 1)
    _img(root / "cat" / "a.jpg", 2, (30, 44))
    _img(root / "cat" / "sub" / "c.png", 3)
    _img(root / "dog" / "z.JPG", 4, fmt="JPEG")
    _img(root / "dog" / "y.png", 5, (50, 20))
    _img(root / "dog" / ".hidden.png", 6)
    (root / "dog" / "notes.txt").write_text("not an image")
    _img(root / "top.png", 7)  # files directly in root have no class
    return root


def _assert_same(a, b):
    assert a["index"] == b["index"] and a["label"] == b["label"]
    assert torch.equal(a["image"], b["image"])


# ----------------------------------------------------------------------------- folders


def test_image_dataset_labelled(folder):
    ds = ImageDataset(folder, T, labelled=True)
    assert ds.classes == ["cat", "dog"] and ds.class_to_idx == {"cat": 0, "dog": 1}
    rel = [p.relative_to(folder).as_posix() for p in ds.files]
    assert rel == ["cat/a.jpg", "cat/b.png", "cat/sub/c.png", "dog/y.png", "dog/z.JPG"]
    assert ds.labels == [0, 0, 0, 1, 1] and len(ds) == 5
    item = ds[(3, 42)]
    assert set(item) == {"image", "label", "index"}
    assert item["label"] == 1 and item["index"] == 3 and item["image"].shape == (3, 16, 16)


def test_image_dataset_unlabelled_and_items(folder):
    ds = ImageDataset(folder, T)
    assert len(ds) == 6 and all(label == -1 for label in ds.labels)  # top.png counts now
    ev = ds[2]
    assert ev["label"] == -1 and torch.equal(ev["image"], load_image(ds.files[2], 16))
    again = ImageDataset(folder, T)  # a fresh dataset (a resumed run) sees the same samples
    _assert_same(ds[(4, 7)], again[(4, 7)])
    _assert_same(ds[(4, 7)], ds[[4, 7]])
    _assert_same(ds[(4, 7)], ds[(np.int64(4), torch.tensor(7))])
    assert not torch.equal(ds[(4, 7)]["image"], ds[(4, 8)]["image"])
    _assert_same(ds[-1], ds[5])
    with pytest.raises(IndexError):
        ds[6]
    assert len(ImageDataset(folder, T, extensions=["png"])) == 4


def test_cache_prepared_is_bit_identical(folder):
    plain = ImageDataset(folder, ImageTransform(16))
    cached = ImageDataset(folder, ImageTransform(16), cache_prepared=True)
    for item in [(0, 1), (0, 2), 3, (3, 9)]:
        _assert_same(plain[item], cached[item])
    assert len(cached._prepared) == 2
    assert pickle.loads(pickle.dumps(cached))._prepared == {}


def test_empty_folders_are_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdatokError) as err:
        ImageDataset(tmp_path / "empty", T)
    assert str(tmp_path / "empty") in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(AdatokError, match="no such folder"):
        ImageDataset(tmp_path / "missing", T)
    _img(tmp_path / "lab" / "a" / "x.png", 0)
    (tmp_path / "lab" / "b").mkdir()
    with pytest.raises(AdatokError, match="class folder.*b"):
        ImageDataset(tmp_path / "lab", T, labelled=True)


def test_corrupt_file_reported_once_and_replaced(folder, caplog):
    bad = folder / "cat" / "b.png"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated
    ds = ImageDataset(folder, T, labelled=True)
    with caplog.at_level(logging.WARNING, logger="adatok.data"):
        items = [ds[(1, 5)] for _ in range(3)] + [ds[1]]
    records = [r for r in caplog.records if r.name == "adatok.data"]
    assert len(records) == 1
    msg = records[0].getMessage()
    assert str(bad) in msg and "truncated or corrupt" in msg and "\n" not in msg
    assert str(bad) in ds.bad_files
    for item in items[:3]:
        _assert_same(item, ds[(2, 5)])  # the next index, same seed
    assert items[3]["index"] == 2


def test_corrupt_last_file_wraps_and_all_bad_raises(tmp_path):
    _img(tmp_path / "a.png", 0)
    (tmp_path / "b.png").write_bytes(b"junk")
    ds = ImageDataset(tmp_path, T)
    assert ds[(1, 3)]["index"] == 0
    (tmp_path / "a.png").write_bytes(b"junk")
    with pytest.raises(AdatokError, match="none of its 2 images"):
        ImageDataset(tmp_path, T)[0]


# ----------------------------------------------------------------------------- shards


def test_shard_round_trip_matches_image_dataset(folder, tmp_path):
    paths, skipped = write_shards(folder, tmp_path / "shards", samples_per_shard=2, labelled=True)
    assert skipped == 0 and [p.name for p in paths] == [
        "shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    ref = ImageDataset(folder, T, labelled=True)
    ds = ShardDataset(tmp_path / "shards", T)
    assert len(ds) == len(ref) == 5 and ds.keys == [f"{i:08d}" for i in range(5)]
    for i in range(5):
        for item in [i, (i, 0), (i, 12345)]:
            _assert_same(ds[item], ref[item])
    with tarfile.open(paths[0]) as tar:
        names = tar.getnames()
        assert names == ["00000000.jpg", "00000000.cls", "00000000.json",
                         "00000001.png", "00000001.cls", "00000001.json"]
        assert tar.extractfile("00000000.jpg").read() == ref.files[0].read_bytes()  # no re-encode
        assert json.loads(tar.extractfile("00000001.json").read()) == {"path": "cat/b.png", "class": "cat"}
        assert tar.extractfile("00000001.cls").read() == b"0"


def test_write_shards_skips_bad_files_and_is_atomic(folder, tmp_path, caplog):
    (folder / "dog" / "y.png").write_bytes(b"\x89PNG broken")
    with caplog.at_level(logging.WARNING, logger="adatok.data"):
        paths, skipped = write_shards(ImageDataset(folder, T), tmp_path / "out", 100)
    assert skipped == 1 and len(paths) == 1
    assert any("y.png" in r.getMessage() for r in caplog.records)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["shard-000000.tar"]
    ds = ShardDataset(paths, T)
    assert len(ds) == 5 and ds[0]["label"] == -1  # unlabelled: no .cls member
    with pytest.raises(AdatokError, match="already holds"):
        write_shards(folder, tmp_path / "out")
    write_shards(folder, tmp_path / "out", samples_per_shard=2, overwrite=True)
    assert len(list((tmp_path / "out").glob("shard-*.tar"))) == 3


def test_brace_expansion_and_shard_patterns(folder, tmp_path):
    assert expand_braces("s-{000..002}.tar") == ["s-000.tar", "s-001.tar", "s-002.tar"]
    assert expand_braces("{a,b{1..2}}-{x,y}") == ["a-x", "a-y", "b1-x", "b1-y", "b2-x", "b2-y"]
    assert expand_braces("{8..10}") == ["8", "9", "10"]
    assert expand_braces("{3..1}") == ["3", "2", "1"]
    assert expand_braces("{0..10..5}") == ["0", "5", "10"]
    assert expand_braces("a{b}c") == ["a{b}c"] and expand_braces("x{1,2") == ["x{1,2"]
    out = tmp_path / "sh"
    write_shards(folder, out, samples_per_shard=2)
    assert len(ShardDataset(f"{out}/shard-{{000000..000001}}.tar", T)) == 4
    assert len(ShardDataset(f"{out}/shard-00000[02].tar", T)) == 4
    assert len(ShardDataset(f"{out}/shard-000002.tar::{out}/shard-000000.tar", T)) == 4
    assert [p.name for p in expand_shards(f"{out}/*.tar")] == [
        "shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    with pytest.raises(AdatokError, match="shard-000003.tar: no such shard"):
        expand_shards(f"{out}/shard-{{000002..000003}}.tar")
    with pytest.raises(AdatokError, match="no shard matches"):
        expand_shards(f"{out}/*.tgz")
    assert split_member_name("dir/abc.seg.PNG") == ("dir/abc", "seg.png")
    assert split_member_name("noext") is None


def test_shard_dataset_pickles_and_works_in_workers(folder, tmp_path):
    write_shards(folder, tmp_path / "sh", samples_per_shard=2, labelled=True)
    ds = ShardDataset(tmp_path / "sh", T)
    first = ds[(0, 1)]  # opens a handle in this process before pickling / forking
    clone = pickle.loads(pickle.dumps(ds))
    _assert_same(clone[(0, 1)], first)
    items = [(i % 5, 100 + i) for i in range(10)]
    serial = list(DataLoader(ds, sampler=items, batch_size=4, num_workers=0))
    parallel = list(DataLoader(ds, sampler=items, batch_size=4, num_workers=2))
    assert len(serial) == len(parallel) == 3
    for a, b in zip(serial, parallel):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
        assert torch.equal(a["index"], b["index"])


def _tar(path, members):
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_shard_bad_samples_and_bad_shards(tmp_path, caplog):
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), (0, 0, 255)).save(buf, format="PNG")
    good = buf.getvalue()
    _tar(tmp_path / "s.tar", [("a.png", good), ("a.cls", b"3"), ("b.jpg", b"not a jpeg"),
                              ("c.json", b"{}"), ("d.png", good), ("d.cls", b"x")])
    ds = ShardDataset(tmp_path / "s.tar", T)
    assert ds.keys == ["a", "b", "d"]  # c has no image field
    with caplog.at_level(logging.WARNING, logger="adatok.data"):
        outs = [ds[(1, 4)] for _ in range(3)]
    assert all(o["index"] == 0 and o["label"] == 3 for o in outs)  # b bad, d bad label -> a
    msgs = [r.getMessage() for r in caplog.records if r.name == "adatok.data"]
    assert len(msgs) == 2 and "s.tar:b.jpg" in msgs[0] and "d.cls" in msgs[1]
    # A shard cut short after it was indexed: reported as a bad sample, not a crash.
    data = (tmp_path / "s.tar").read_bytes()
    fresh = ShardDataset(tmp_path / "s.tar", T)
    (tmp_path / "s.tar").write_bytes(data[:1024])
    with pytest.raises(AdatokError, match="none of its 3 images"):
        fresh[0]
    assert any("truncated" in v for v in fresh.bad_files.values())
    gz = tmp_path / "z.tar"
    with tarfile.open(gz, "w:gz") as tar:
        info = tarfile.TarInfo("a.png")
        info.size = len(good)
        tar.addfile(info, io.BytesIO(good))
    with pytest.raises(AdatokError, match="not an uncompressed tar"):
        ShardDataset(gz, T)


def test_cli_shard(folder, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    data_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "shard", str(folder), str(tmp_path / "o"),
                              "--per-shard", "4", "--labelled"])
    assert args.func(args) == 0
    assert "wrote 2 shard(s)" in capsys.readouterr().out
    assert ShardDataset(tmp_path / "o", T)[4]["label"] == 1
