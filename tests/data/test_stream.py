"""Streamed WebDataset shards (adatok.data.readers.stream, the webdataset library): local, pipe:cat,
.tar.gz and brace lists give the random-access reader's samples; batches resume exactly; bad shards
are one-line errors naming the shard."""

from __future__ import annotations

import gzip
import itertools
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from adatok.data import (ResumableBatchSampler, ShardDataset, StreamBatches, StreamShards, create_dataset,
                         is_stream, write_shards)
from adatok.data.transforms import ImageTransform
from adatok.errors import AdatokError

T = ImageTransform(16, crop="random_resized")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """7 labelled images in 4 shards (2, 2, 2, 1 samples), plus .tar.gz copies."""
    root = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(0)
    for i in range(7):
        path = root / "imgs" / ("a" if i % 2 else "b") / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)).save(path)
    paths, skipped = write_shards(root / "imgs", root / "tar", samples_per_shard=2, labelled=True)
    assert skipped == 0 and len(paths) == 4
    (root / "gz").mkdir()
    for path in paths:
        (root / "gz" / (path.name + ".gz")).write_bytes(gzip.compress(path.read_bytes()))
    return root


def _same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x["label"], y["label"]) and torch.equal(x["image"], y["image"])


def _sources(root):
    tar = root / "tar"
    return {
        "local list": [str(p) for p in sorted(tar.glob("*.tar"))],
        "braces": f"{tar}/shard-{{000000..000003}}.tar",
        "pipe:cat": "::".join(f"pipe:cat {p}" for p in sorted(tar.glob("*.tar"))),
        "pipe braces": f"pipe:cat {tar}/shard-{{000000..000003}}.tar",
        ".tar.gz": f"{root}/gz/shard-{{000000..000003}}.tar.gz",
    }


@pytest.mark.parametrize("kind", ["local list", "braces", "pipe:cat", "pipe braces", ".tar.gz"])
def test_every_source_streams_the_random_access_samples(shards, kind):
    ref = ShardDataset(shards / "tar", T)
    stream = StreamShards(_sources(shards)[kind], T)
    assert len(stream.urls) == 4 and len(stream) == len(ref) == 7 and stream.has_labels
    raw = list(stream.epoch(seed=0, epoch=0, shuffle=False, buffer=1))
    assert [key for _, key, _, _, _ in raw] == ref.keys
    for i, sample in enumerate(raw):
        got, want = stream.decode(sample, 1234 + i), ref[(i, 1234 + i)]
        assert got["label"] == want["label"] and torch.equal(got["image"], want["image"])


def test_unshuffled_batches_equal_the_sampler_over_random_access_shards(shards):
    """Same slots and seeds as ResumableBatchSampler: one rank of two, batch 2, 3 epochs' worth."""
    ref = ShardDataset(shards / "tar", T)
    sampler = ResumableBatchSampler(len(ref), 2, seed=5, rank=1, world_size=2, shuffle=False, repeat=2)
    want = [torch.utils.data.default_collate([ref[item] for item in batch])
            for batch in itertools.islice(iter(sampler), 9)]
    batches = StreamBatches(StreamShards(_sources(shards)["pipe:cat"], T), 2, seed=5, rank=1, world_size=2,
                            shuffle=False, repeat=2)
    assert batches.batches_per_epoch == sampler.batches_per_epoch == 3
    got = list(itertools.islice(iter(batches), 9))
    for x, y in zip(got, want):
        assert torch.equal(x["label"], y["label"]) and torch.equal(x["image"], y["image"])
    assert len(got) == 9


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_at_any_batch_gives_the_uninterrupted_stream(shards, workers):
    stream = StreamShards(_sources(shards)[".tar.gz"], T)

    def run(start, n):
        batches = StreamBatches(stream, 2, seed=3, rank=0, world_size=1, start=start, buffer=3)
        return list(itertools.islice(iter(DataLoader(batches, batch_size=None, num_workers=workers)), n))

    full = run(0, 8)    # 3 batches an epoch: crosses two epoch boundaries
    assert not torch.equal(full[0]["image"], full[3]["image"])      # each epoch has its own shuffle
    for start in (1, 3, 5):
        _same_batches(run(start, 8 - start), full[start:])


def test_each_epoch_visits_every_sample_once_per_view_across_ranks(shards):
    stream = StreamShards(_sources(shards)["braces"], T)
    stream.decode = lambda sample, seed: {"key": int(sample[1])}      # which sample, not its pixels
    seen = []
    for rank in range(2):   # 7 samples x 2 views = 14 = 2 ranks x 7 batches of 1
        batches = StreamBatches(stream, 1, seed=9, rank=rank, world_size=2, shuffle=True, repeat=2, buffer=4)
        assert batches.batches_per_epoch == 7
        seen += [batch["key"].item() for batch in itertools.islice(iter(batches), 7)]
    assert sorted(seen) == sorted(list(range(7)) * 2)
    assert seen[:7] != sorted(seen[:7])                               # shuffled


def test_factory_streams_pipe_and_gz_sources(shards):
    src = _sources(shards)
    assert is_stream(src["pipe:cat"]) and is_stream(src[".tar.gz"]) and not is_stream(src["braces"])
    assert isinstance(create_dataset(src[".tar.gz"], 16, labelled=True, train=True), StreamShards)
    assert isinstance(create_dataset(src["braces"], 16, format="stream"), StreamShards)
    assert isinstance(create_dataset(src["braces"], 16), ShardDataset)       # local plain tars: random access


def test_missing_and_corrupt_shards_are_one_line_errors_naming_the_shard(shards, tmp_path):
    good = sorted((shards / "tar").glob("*.tar"))
    with pytest.raises(AdatokError, match=r"^pipe:cat .*missing\.tar: cannot read this shard") as err:
        StreamShards(f"pipe:cat {good[0]}::pipe:cat {tmp_path}/missing.tar", T)
    assert "\n" not in str(err.value)
    with pytest.raises(AdatokError, match=r"missing\.tar\.gz: cannot read this shard \(No such file"):
        StreamShards(f"{tmp_path}/missing.tar.gz", T)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(gzip.compress(good[0].read_bytes())[:300])
    with pytest.raises(AdatokError, match=r"cut\.tar\.gz: cannot read this shard") as err:
        StreamShards(str(cut), T)
    assert "\n" not in str(err.value)
    shutil.copy(good[1], tmp_path / "ok.tar")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar" * 50)
    with pytest.raises(AdatokError, match=r"junk\.tar\.gz: cannot read this shard"):
        StreamShards(f"{tmp_path}/{{ok.tar,junk.tar.gz}}", T)
