"""The CLI's hardening: bad inputs are skipped with one line while the rest is processed, outputs
are checked before the model loads, nothing old is overwritten or half-written (issue 17)."""

import errno
import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import adatok
from adatok.cli import common as cli_common
from adatok.cli.main import main

SAMPLES = Path(adatok.__file__).parent / "data" / "samples"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    return adatok.save(adatok.create_model("titok_pixels_tiny"), tmp_path_factory.mktemp("m") / "tiny")


@pytest.fixture()
def photos(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for p in sorted(SAMPLES.glob("*.jpg"))[:2]:
        (folder / p.name).write_bytes(p.read_bytes())
    return folder


def _one_line_errors(err: str, word: str) -> list[str]:
    lines = [l for l in err.splitlines() if word in l]
    assert "Traceback" not in err and "internal error" not in err
    return lines


# ----------------------------------------------------------------------------- bad inputs
def test_missing_path_and_symlink_loop_are_skipped_and_the_rest_processed(model_dir, photos, tmp_path, capsys):
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(loop)
    dangling = tmp_path / "gone.png"
    dangling.symlink_to(tmp_path / "nowhere.png")
    out = tmp_path / "rec"
    code = main(["reconstruct", str(tmp_path / "missing.jpg"), str(loop), str(photos), str(dangling),
                 "--model", str(model_dir), "--out", str(out)])
    cap = capsys.readouterr()
    assert code == 1  # some inputs skipped, the others processed
    skipped = _one_line_errors(cap.err, "skipped")
    assert len(skipped) == 3
    assert any("missing.jpg" in l and "no such file" in l for l in skipped)
    assert any("loop.jpg" in l and "symbolic link loop" in l for l in skipped)
    assert any("gone.png" in l and "broken symbolic link" in l for l in skipped)
    assert sorted(p.name for p in out.glob("*_recon.png")) == ["astronaut_recon.png", "chelsea_recon.png"]
    assert sorted(p.name for p in out.glob("*_compare.png")) == ["astronaut_compare.png", "chelsea_compare.png"]


def test_broken_links_inside_a_folder_are_reported_not_silently_dropped(model_dir, photos, tmp_path, capsys):
    (photos / "self.jpg").symlink_to(photos / "self.jpg")
    out = tmp_path / "ids.safetensors"
    code = main(["tokenize", str(photos), "--model", str(model_dir), "--out", str(out)])
    cap = capsys.readouterr()
    assert code == 1
    assert any("self.jpg" in l and "loop" in l for l in _one_line_errors(cap.err, "skipped"))
    with safe_open(str(out), "pt") as f:
        assert f.get_tensor("ids").shape[0] == 2


def test_only_missing_inputs_is_a_usage_error(model_dir, tmp_path, capsys):
    code = main(["tokenize", str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"), "--model", str(model_dir),
                 "--out", str(tmp_path / "o.npz")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "a.jpg" in err and "1 more" in err
    assert not (tmp_path / "o.npz").exists()


def test_non_utf8_file_names_with_a_strict_utf8_stdout(model_dir, photos, tmp_path, monkeypatch):
    name = os.fsdecode(b"caf\xe9.jpg")  # a Latin-1 name: surrogates in Python
    (photos / name).write_bytes((SAMPLES / "coffee.jpg").read_bytes())
    raw = io.BytesIO()
    strict = io.TextIOWrapper(raw, encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdout", strict)
    out = tmp_path / "rec"
    code = main(["reconstruct", str(photos), "--model", str(model_dir), "--out", str(out), "--batch-size", "1"])
    strict.flush()
    text = raw.getvalue().decode("utf-8")
    assert code == 0
    assert len(list(out.glob("*_recon.png"))) == 3  # the whole folder was processed
    assert "caf\\udce9.jpg" in text and "mean PSNR" in text


def test_same_file_names_in_two_folders_do_not_overwrite(model_dir, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "cat.jpg").write_bytes((SAMPLES / "chelsea.jpg").read_bytes())
    (b / "cat.jpg").write_bytes((SAMPLES / "coffee.jpg").read_bytes())
    (b / "cat.png").write_bytes((SAMPLES / "astronaut.jpg").read_bytes())  # same stem, other suffix
    (b / "cat_2.jpg").write_bytes((SAMPLES / "rocket.jpg").read_bytes())   # a real "cat_2" keeps its name
    out = tmp_path / "rec"
    code = main(["reconstruct", str(a / "cat.jpg"), str(b / "cat.jpg"), str(b / "cat.png"), str(b / "cat_2.jpg"),
                 "--model", str(model_dir), "--out", str(out)])
    cap = capsys.readouterr()
    assert code == 0
    written = sorted(p.name for p in out.glob("*_recon.png"))
    assert written == ["cat_2_recon.png", "cat_3_recon.png", "cat_4_recon.png", "cat_recon.png"]
    # each input is printed with its own output file, in input order
    targets = dict(line.split("\t")[0::3] for line in cap.out.splitlines() if "\t" in line)
    assert targets == {str(a / "cat.jpg"): f"-> {out / 'cat_recon.png'}",
                       str(b / "cat.jpg"): f"-> {out / 'cat_3_recon.png'}",
                       str(b / "cat.png"): f"-> {out / 'cat_4_recon.png'}",
                       str(b / "cat_2.jpg"): f"-> {out / 'cat_2_recon.png'}"}


# ----------------------------------------------------------------------------- outputs
def _forbid_model_loading(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(cli_common, "load", fail)


@pytest.mark.parametrize("case", ["folder", "parent_is_file", "read_only", "disk_full"])
def test_bad_out_fails_before_the_model_loads(case, photos, tmp_path, capsys, monkeypatch):
    out = tmp_path / "ids.npz"
    if case == "folder":
        out.mkdir()
    elif case == "parent_is_file":
        (tmp_path / "file.txt").write_text("x")
        out = tmp_path / "file.txt" / "sub" / "ids.npz"
    elif case == "read_only":  # (the tests may run as root, for whom chmod does not stop writes)
        def denied(*a, **k):
            raise PermissionError(errno.EACCES, "Permission denied")

        monkeypatch.setattr(cli_common.tempfile, "NamedTemporaryFile", denied)
    else:
        monkeypatch.setattr(cli_common.tempfile, "NamedTemporaryFile", lambda **k: FullDisk())
    _forbid_model_loading(monkeypatch)
    code = main(["tokenize", str(photos), "--model", "titok_tiny", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("adatok: error: --out") and "\n" not in err
    want = {"folder": "is a folder", "parent_is_file": "is a file, not a folder",
            "read_only": "permission denied", "disk_full": "disk full"}[case]
    assert want in err


def test_reconstruct_and_convert_check_their_output_folder_first(photos, tmp_path, capsys, monkeypatch):
    (tmp_path / "taken").write_text("a file")
    _forbid_model_loading(monkeypatch)
    assert main(["reconstruct", str(photos), "--model", "titok_tiny", "--out", str(tmp_path / "taken")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    import adatok.cli.convert as convert

    monkeypatch.setattr(convert, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    assert main(["convert", "x.bin", str(tmp_path / "taken")]) == 2
    assert "DEST" in capsys.readouterr().err
    assert (tmp_path / "taken").read_text() == "a file"


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_tokenize_on_a_full_disk_keeps_the_old_file(suffix, model_dir, photos, tmp_path, capsys, monkeypatch):
    import adatok.cli.tokenize as tokenize

    out = tmp_path / f"ids{suffix}"
    out.write_bytes(b"the previous token file")

    def full(target, *a, **k):  # writes half a file, then the disk is full
        f = open(target, "wb") if isinstance(target, (str, Path)) else target
        f.write(b"PK\x03\x04 half")
        f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tokenize, "save_file" if suffix == ".safetensors" else "np", _Fake(full, suffix))
    code = main(["tokenize", str(photos), "--model", str(model_dir), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "disk full" in err and "\n" not in err
    assert out.read_bytes() == b"the previous token file"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


class FullDisk(io.RawIOBase):
    """A file on a full disk: every write fails with ENOSPC."""

    def writable(self):
        return True

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")


class _Fake:
    """np (with savez failing) or safetensors' save_file failing."""

    def __init__(self, fail, suffix):
        self.fail, self.suffix = fail, suffix

    def __call__(self, tensors, path, metadata=None):  # save_file(tensors, path, metadata)
        self.fail(path)

    def __getattr__(self, name):
        if name == "savez":
            return lambda f, **arrays: self.fail(f)
        return getattr(np, name)


# ----------------------------------------------------------------------------- arguments
def test_overrides_after_flags_and_unknown_arguments(tmp_path, capsys, monkeypatch):
    import adatok.cli.train as train_cli

    seen = {}
    monkeypatch.setattr("adatok.train.run", lambda config, overrides, **k: seen.update(o=overrides, **k) or tmp_path)
    assert main(["train", "recipe.yaml", "a.b=1", "--resume", "train.steps=50", "optim.lr=2e-4"]) == 0
    assert seen["o"] == ["a.b=1", "train.steps=50", "optim.lr=2e-4"] and seen["resume"] is True
    assert main(["train", "recipe.yaml", "--resume", "--allow-changes", "train.batch_size=2"]) == 0
    assert seen["allow_changes"] is True and seen["o"] == ["train.batch_size=2"]
    assert main(["train", "recipe.yaml", "--allow-changes"]) == 2  # only with --resume
    assert "--allow-changes only applies with --resume" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["train", "recipe.yaml", "--resume", "--bogus"])
    assert e.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # key=value after flags only for commands that take overrides
        main(["models", "--help-me", "x=1"])
    assert train_cli  # imported for the patch target


@pytest.mark.parametrize("argv", [
    ["generate", "--generator", "maskgit_tiny", "--tokenizer", "titok_tiny", "--out", "OUT"],
    ["data", "pretokenize", "SRC", "OUT", "--tokenizer", "titok_tiny"],
    ["viz", "merges", "IMG", "--model", "imagepiece_deit_small", "--out", "OUT"],
])
def test_other_writers_check_their_output_first(argv, photos, tmp_path, capsys, monkeypatch):
    import adatok.hub as hub

    (tmp_path / "file").write_text("x")
    out = str(tmp_path / "file" / "sub")  # its parent is a file
    monkeypatch.setattr(hub, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    _forbid_model_loading(monkeypatch)
    monkeypatch.setattr("adatok.cli.viz.load_reduced", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    argv = [{"OUT": out, "SRC": str(photos), "IMG": str(photos / "chelsea.jpg")}.get(a, a) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "is a file, not a folder" in err and "\n" not in err
