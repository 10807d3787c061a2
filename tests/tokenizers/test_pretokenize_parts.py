"""Pretokenize in parts: two gloo ranks under torchrun merge into the single-process file, and an
interrupted call resumes (written parts are skipped, the result is the uninterrupted file)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import adatok
from adatok.cli.main import main
from adatok.data import read_token_file
from adatok.errors import ConfigError
from adatok.tokenizers import pretokenize as pretok_mod

SRC = str(Path(adatok.__file__).parents[1])


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """7 tiny labelled images (two classes, odd sizes): 14 rows with --flip, 5 parts of 3."""
    root = tmp_path_factory.mktemp("pretok_parts")
    rng = np.random.default_rng(1)
    for i in range(7):
        path = root / ("b" if i % 3 else "a") / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40 + 3 * i, 48, 3), dtype=np.uint8)).save(path)
    return root


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return adatok.save(adatok.create_model("titok_tiny"), tmp_path_factory.mktemp("tok") / "titok_tiny")


def args(images, out, tokenizer_dir, *extra):
    return ["data", "pretokenize", str(images), str(out), "--tokenizer", str(tokenizer_dir), "--labelled",
            "--flip", "--part-size", "3", "--batch-size", "2", *extra]


def assert_same_file(a, b):
    f, g = read_token_file(a), read_token_file(b)
    for name in ("ids", "lengths", "labels", "source"):
        assert torch.equal(getattr(f, name), getattr(g, name)), name
    assert f.meta == g.meta


def test_two_gloo_ranks_merge_into_the_single_process_file(images, tokenizer_dir, tmp_path):
    single = tmp_path / "single.safetensors"
    assert main(args(images, single, tokenizer_dir)) == 0
    f = read_token_file(single)
    assert f.ids.shape == (14, 8) and f.source.tolist() == list(range(7)) * 2
    assert sorted(f.labels.tolist()) == [0] * 6 + [1] * 8 and not pretok_mod.parts_folder(single).exists()

    merged = tmp_path / "merged.safetensors"
    env = dict(os.environ, PYTHONPATH=SRC, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", "29531", "-m", "adatok", *args(images, merged, tokenizer_dir)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("wrote 14 rows") == 1           # rank 0 merges and reports, once
    assert_same_file(merged, single)
    assert not pretok_mod.parts_folder(merged).exists()


def test_an_interrupted_call_resumes_from_its_written_parts(images, tokenizer_dir, tmp_path, monkeypatch, capsys):
    full = tmp_path / "full.safetensors"
    assert main(args(images, full, tokenizer_dir)) == 0
    out = tmp_path / "t.safetensors"
    real_write, written = pretok_mod._write_part, []

    def dies_after_two(path, *rest):
        if len(written) == 2:
            raise KeyboardInterrupt  # the process is stopped while encoding part 2
        real_write(path, *rest)
        written.append(path.name)

    monkeypatch.setattr(pretok_mod, "_write_part", dies_after_two)
    assert main(args(images, out, tokenizer_dir)) == 130     # Ctrl-C: "adatok: interrupted"
    assert not out.exists()
    assert sorted(p.name for p in pretok_mod.parts_folder(out).glob("*.safetensors")) == written == [
        "part-000000.safetensors", "part-000001.safetensors"]

    # other settings must not mix with these parts
    capsys.readouterr()
    assert main(args(images, out, tokenizer_dir, "--views", "2")) == 2
    assert "other settings" in capsys.readouterr().err

    encoded = []
    monkeypatch.setattr(pretok_mod, "_write_part", lambda path, *rest: (encoded.append(path.name),
                                                                        real_write(path, *rest)))
    assert main(args(images, out, tokenizer_dir)) == 0
    assert encoded == ["part-000002.safetensors", "part-000003.safetensors", "part-000004.safetensors"]
    assert "2 of 5 parts already written" in capsys.readouterr().out
    assert_same_file(out, full)
    assert not pretok_mod.parts_folder(out).exists()


def test_part_size_does_not_change_the_file(images, tokenizer_dir, tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert main(args(images, a, tokenizer_dir)) == 0
    assert main(args(images, b, tokenizer_dir)[:-4] + ["--part-size", "100", "--batch-size", "2"]) == 0
    assert_same_file(a, b)


def test_rank_outside_the_world_is_refused(images, tokenizer_dir, tmp_path):
    with pytest.raises(ConfigError, match="rank 2 is not in"):
        pretok_mod.pretokenize(str(images), tmp_path / "x.safetensors", adatok.load(tokenizer_dir), rank=2,
                               world_size=2)
