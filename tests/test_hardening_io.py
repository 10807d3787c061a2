"""Files and checkpoints under faults, and one-line errors from hub.py (issue 17): written files get
the usual permissions, a full disk says so and keeps the old file, bad config.json / metadata,
plain state dicts, mistyped paths, hub errors and unknowable head counts."""

import errno
import io
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import adatok
import adatok.atomic as atomic
from adatok.atomic import atomic_write, atomic_write_bytes
from adatok.cli.main import main
from adatok.errors import CheckpointError, OutputError
from adatok.train.checkpoint import atomic_save
from reference import titok_ref


@pytest.fixture()
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


class FullDisk(io.RawIOBase):
    """A file on a full disk: every write fails with ENOSPC."""

    def writable(self):
        return True

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")


def _mode(path) -> int:
    return Path(path).stat().st_mode & 0o777


# ----------------------------------------------------------------------------- atomic.py
def test_written_files_get_umask_permissions(tmp_path, umask_022):
    assert _mode(atomic_write_bytes(tmp_path / "a.bin", b"x")) == 0o644
    folder = adatok.save(adatok.create_model("titok_pixels_tiny"), tmp_path / "model")
    assert _mode(folder / "model.safetensors") == 0o644 and _mode(folder / "config.json") == 0o644
    atomic_save({"step": 1}, tmp_path / "ckpt" / "latest.pt")
    assert _mode(tmp_path / "ckpt" / "latest.pt") == 0o644
    os.umask(0o077)  # a private umask is respected too
    assert _mode(atomic_write_bytes(tmp_path / "b.bin", b"x")) == 0o600


def test_disk_full_keeps_the_old_file_and_says_so(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")

    def half_then_full(f):
        f.write(b"new, half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="disk full") as e:
        atomic_write(target, half_then_full)
    assert "\n" not in str(e.value) and str(target) in str(e.value)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]
    # a writer that wraps the OS error in its own (torch's "unexpected pos ...") is recognised too

    def wrapped(f):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    with pytest.raises(OutputError, match="disk full"):
        atomic_write(target, wrapped)
    assert target.read_bytes() == b"old"


def test_checkpoint_on_a_full_disk(tmp_path, monkeypatch):
    ckpt = tmp_path / "latest.pt"
    atomic_save({"step": 1, "w": torch.zeros(3)}, ckpt)
    real_open = open
    monkeypatch.setattr(atomic, "open", lambda p, mode="r", *a, **k: FullDisk() if mode == "wb" else real_open(p, mode),
                        raising=False)
    with pytest.raises(OutputError, match="disk full"):
        atomic_save({"step": 2, "w": torch.ones(1000)}, ckpt)
    monkeypatch.undo()
    assert torch.load(ckpt, weights_only=True)["step"] == 1  # the previous checkpoint is intact


def test_other_write_errors_are_not_called_disk_full(tmp_path):
    with pytest.raises(ValueError, match="boom"):
        atomic_write(tmp_path / "x", lambda f: (_ for _ in ()).throw(ValueError("boom")))
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- hub.py
@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return adatok.create_model("titok_pixels_tiny").eval()


@pytest.mark.parametrize("content, message", [
    (b"[1, 2]", "holds a JSON list, not an object"),
    (b'{"name": "caf\xe9"}', "not UTF-8"),
    (b'"just a string"', "holds a JSON str"),
    (b'{"format": "adatok", "config": [1]}', 'without a "config" object'),
])
def test_bad_config_json_is_one_line(content, message, tiny, tmp_path):
    folder = adatok.save(tiny, tmp_path / "m")
    (folder / "config.json").write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as e:
        adatok.load(folder)
    assert "\n" not in str(e.value) and "config.json" in str(e.value)


@pytest.mark.parametrize("meta, message", [("{not json", "not valid JSON"), ("[1]", "not a JSON object")])
def test_safetensors_metadata_that_is_not_json(meta, message, tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"a": torch.zeros(1)}, str(path), metadata={"adatok": meta})
    with pytest.raises(CheckpointError, match=message):
        adatok.load(path)


def test_plain_state_dict_of_our_model_loads_with_its_preset(tiny, tmp_path):
    torch.save(tiny.state_dict(), tmp_path / "plain.pt")
    model = adatok.load("titok_pixels_tiny", weights=tmp_path / "plain.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), tiny.state_dict().values()))
    into = adatok.load_weights(adatok.create_model("titok_pixels_tiny"), tmp_path / "plain.pt")
    assert all(torch.equal(a, b) for a, b in zip(into.state_dict().values(), tiny.state_dict().values()))
    # the wrong preset for it: strict loading names the problem in one line
    with pytest.raises(CheckpointError) as e:
        adatok.load("titok_vae_tiny", weights=tmp_path / "plain.pt")
    assert "\n" not in str(e.value) and "plain.pt" in str(e.value)


def test_mistyped_local_paths_are_not_tried_on_the_hub(tmp_path, monkeypatch):
    import huggingface_hub

    def no_hub(*a, **k):
        raise AssertionError("tried as a hub repo id")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_hub)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "tiny").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"runs/tinyy: no such file or folder; did you mean runs/tiny\?"):
        adatok.load("runs/tinyy")
    for name in ("runs/tinyy/model", "weights.bin", "./x", "sub/dir/model.safetensors"):
        with pytest.raises(CheckpointError, match="no such file or folder"):
            adatok.load(name)


def test_hub_errors_are_not_cut(monkeypatch):
    import huggingface_hub

    long = "Repository not found for url https://huggingface.co/api/models/x/y. " + "Please make sure " * 20 + "END."
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: (_ for _ in ()).throw(OSError(long)))
    with pytest.raises(CheckpointError) as e:
        adatok.load("someone/some_model")
    assert long in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------- head counts
def _official_titok(tmp_path, width: int) -> Path:
    shapes = titok_ref.official_titok_shapes(enc_width=width, enc_depth=1, dec_width=width, dec_depth=1,
                                             num_tokens=8, token_size=12, codebook_size=64, image_size=64,
                                             legacy=False)
    path = tmp_path / f"official_{width}.bin"
    torch.save(titok_ref.random_official_state_dict(shapes), path)
    return path


def test_bare_official_file_of_a_width_without_a_known_head_count(tmp_path, capsys):
    path = _official_titok(tmp_path, 96)
    with pytest.raises(CheckpointError, match="head count") as e:
        adatok.load(path)
    assert "encoder width 96" in str(e.value) and "--heads" in str(e.value) and "\n" not in str(e.value)
    model = adatok.load(path, heads=2)
    assert model.config.encoder.heads == model.config.decoder.heads == 2
    model = adatok.load(path, **{"encoder.heads": 3, "decoder.heads": 2})
    assert (model.config.encoder.heads, model.config.decoder.heads) == (3, 2)
    assert main(["convert", str(path), str(tmp_path / "a")]) == 2
    assert "head count" in capsys.readouterr().err
    assert main(["convert", str(path), str(tmp_path / "b"), "--heads", "4"]) == 0
    assert adatok.load(tmp_path / "b").config.encoder.heads == 4  # our format stores it
    # a multiple of 64 keeps the official head dim 64
    assert adatok.load(_official_titok(tmp_path, 128)).config.encoder.heads == 2


def test_bare_official_generator_of_an_unofficial_width(tmp_path):
    from reference import maskgit_gen_ref as ref

    sd = ref.random_state_dict(ref.bert_shapes(width=64, depth=1, intermediate=128, num_tokens=8), seed=0)
    torch.save(sd, tmp_path / "gen.bin")
    with pytest.raises(CheckpointError, match="head count"):
        adatok.load(tmp_path / "gen.bin")  # was: 16 heads of 4 silently
    assert adatok.load(tmp_path / "gen.bin", heads=2).config.heads == 2
