"""The ``adatok`` command line, end to end on a tiny saved model and the bundled photos."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import adatok
from adatok.cli.main import main
from adatok.data.images import load_image
from adatok.eval.metrics import psnr

SAMPLES = Path(adatok.__file__).parent / "data" / "samples"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    return adatok.save(adatok.create_model("titok_tiny"), tmp_path_factory.mktemp("m") / "tiny")


@pytest.fixture()
def inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for p in sorted(SAMPLES.glob("*.jpg"))[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (folder / "notes.jpg").write_text("not an image")
    Image.new("L", (300, 120), 90).save(folder / "gray.png")  # odd size + grayscale: converted
    return folder


def test_models_lists_presets(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "titok_l32" in out and "641.1M" in out and "VQ 4096x12" in out and "rFID 2.21" in out
    assert main(["models", "vae"]) == 0
    out = capsys.readouterr().out
    assert "titok_ll32_vae_c16" in out and "titok_l32 " not in out


def test_tokenize_reports_bad_files_and_keeps_the_rest(model_dir, inputs, tmp_path, capsys):
    out = tmp_path / "ids.safetensors"
    code = main(["tokenize", str(inputs), "--model", str(model_dir), "--out", str(out), "--batch-size", "2"])
    cap = capsys.readouterr()
    assert code == 1  # some files failed, the good ones are written
    bad_lines = [l for l in cap.err.splitlines() if "skipped" in l]
    assert len(bad_lines) == 2 and any("broken.png" in l for l in bad_lines) and any("notes.jpg" in l for l in bad_lines)
    with safe_open(str(out), "pt") as f:
        ids, lengths = f.get_tensor("ids"), f.get_tensor("lengths")
        meta = json.loads(f.metadata()["adatok"])
    assert ids.shape == (4, 8) and ids.dtype == torch.int64 and lengths.tolist() == [8] * 4
    assert [Path(p).name for p in meta["paths"]] == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "gray.png"]
    # the file's ids are the Python API's ids
    model = adatok.load(model_dir)
    with torch.no_grad():
        want = model.encode(load_image(inputs / "chelsea.jpg", 64)[None]).ids
    assert torch.equal(ids[1:2], want)
    assert "wrote 4 image(s)" in cap.out and "2 file(s) skipped" in cap.out


def test_tokenize_npz(model_dir, inputs, tmp_path):
    out = tmp_path / "ids.npz"
    assert main(["tokenize", str(inputs / "coffee.jpg"), "--model", str(model_dir), "--out", str(out)]) == 0
    data = np.load(out)
    assert data["ids"].shape == (1, 8) and data["lengths"].tolist() == [8]


def test_reconstruct_writes_pngs_and_true_psnr(model_dir, inputs, tmp_path, capsys):
    out = tmp_path / "rec"
    code = main(["reconstruct", str(inputs / "astronaut.jpg"), str(inputs / "coffee.jpg"), "--model", str(model_dir),
                 "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    png = out / "astronaut_recon.png"
    assert png.exists() and Image.open(png).size == (64, 64)
    recon = torch.from_numpy(np.array(Image.open(png))).permute(2, 0, 1).float()[None] / 255
    value = psnr(recon, load_image(inputs / "astronaut.jpg", 64)[None]).item()
    reported = float(printed.split("astronaut.jpg")[1].split("PSNR ")[1].split(" dB")[0])
    assert abs(value - reported) < 0.2  # the PNG is 8-bit rounded; PSNR printed is before rounding
    assert "mean PSNR" in printed


def test_convert_official_checkpoint(tmp_path, capsys):
    from reference import titok_ref as ref

    shapes = ref.official_titok_shapes(enc_width=128, enc_depth=1, dec_width=128, dec_depth=1, num_tokens=8,
                                       token_size=12, codebook_size=256, image_size=64, pixel_channels=32)
    torch.save(ref.random_official_state_dict(shapes), tmp_path / "official.bin")
    assert main(["convert", str(tmp_path / "official.bin"), str(tmp_path / "ours")]) == 0
    assert "wrote" in capsys.readouterr().out
    model = adatok.load(tmp_path / "ours")
    assert model.config.num_tokens == 8 and model.config.legacy_reshape


@pytest.mark.parametrize(
    "argv, message",
    [
        (["tokenize", "x.png", "--model", "titok_nope", "--out", "o.safetensors"], "unknown model 'titok_nope'"),
        (["tokenize", "x.png", "--model", "titok_tiny", "--out", "o.txt"], ".safetensors or .npz"),
        (["reconstruct", "/no/such/dir", "--model", "MODEL", "--out", "o"], "/no/such/dir"),
        (["reconstruct", "x.png", "--model", "MODEL", "--out", "o", "--batch-size", "0"], "--batch-size"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(argv, message, model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [str(model_dir) if a == "MODEL" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("adatok: error:") and "\n" not in err


def test_console_entry_point_runs(model_dir, inputs, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(adatok.__file__).parents[1]), HF_HUB_OFFLINE="1")
    res = subprocess.run([sys.executable, "-m", "adatok", "tokenize", str(inputs / "broken.png"), "--model",
                          str(model_dir), "--out", str(tmp_path / "o.safetensors")], capture_output=True, text=True, env=env)
    assert res.returncode == 1
    assert "broken.png" in res.stderr and "Traceback" not in res.stderr
    assert "no image could be read" in res.stdout


def test_eval_reports_psnr_ssim_and_codebook_usage(model_dir, inputs, capsys):
    code = main(["eval", str(inputs), "--model", str(model_dir)])
    out = capsys.readouterr().out
    assert code == 1  # two unreadable files in the folder
    assert "4 image(s): PSNR" in out and "SSIM" in out and "8.0 tokens/image" in out and "codebook usage" in out
    assert "2 file(s) skipped" in out
    from adatok.cli.evaluate import evaluate

    model = adatok.load(model_dir)
    batch = torch.stack([load_image(inputs / n, 64) for n in ("astronaut.jpg", "coffee.jpg")])
    result = evaluate(model, [(["a", "b"], batch)], torch.device("cpu"))
    with torch.no_grad():
        recon = (model.reconstruct(batch) * 255).round() / 255
    assert result["psnr"] == pytest.approx(psnr(recon, batch).mean().item(), abs=1e-6)
    assert result["images"] == 2 and 0 < result["usage"] <= 1


def test_data_resize(inputs, tmp_path, capsys):
    code = main(["data", "resize", str(inputs), str(tmp_path / "small"), "--shorter-side", "100"])
    assert code == 1 and "2 skipped" in capsys.readouterr().out  # broken.png, notes.jpg
    sizes = {p.name: Image.open(p).size for p in (tmp_path / "small").iterdir()}
    assert sizes["astronaut.jpg"] == (100, 100) and sizes["gray.jpg"] == (250, 100)
