"""``adatok eval --sweep --report`` on the shipped defaults at toy size: the CSV, JSON, plots and HTML,
rendered in headless Chromium when one is installed."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import adatok
from adatok.cli.main import main

SAMPLES = Path(adatok.__file__).parent / "data" / "samples"
CHECK = Path(__file__).parents[2] / "scripts" / "check_report.py"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The 4 sample photos and a flat image (the simplest possible content)."""
    folder = tmp_path_factory.mktemp("in")
    for p in sorted(SAMPLES.glob("*.jpg")):
        (folder / p.name).write_bytes(p.read_bytes())
    Image.new("RGB", (80, 64), (90, 140, 200)).save(folder / "flat.png")
    return folder


def _read(folder: Path):
    with open(folder / "points.csv") as f:
        rows = list(csv.DictReader(f))
    return rows, json.loads((folder / "report.json").read_text()), (folder / "report.html").read_text()


def _check_png(path: Path):
    img = Image.open(path)
    assert img.format == "PNG" and img.width >= 800 and img.height >= 400
    assert len(np.unique(np.asarray(img.convert("L")))) > 10  # a drawn plot, not an empty canvas


def test_sweep_report_of_the_adaptive_default(inputs, tmp_path, capsys):
    out = tmp_path / "alit"
    code = main(["eval", str(inputs), "--model", "alit_default", "--sweep", "--report", str(out),
                 "--psnr-targets", "21", "24", "--jpeg-qualities", "1", "10", "--webp-qualities", "0", "10"])
    text = capsys.readouterr().out
    assert code == 0 and "5 image(s)" in text and "allocation" in text
    rows, data, html = _read(out)
    lengths = [r["label"] for r in rows if r["kind"] == "length"]
    assert lengths == ["16 tokens", "32 tokens", "48 tokens", "64 tokens"]
    sel = [r for r in rows if r["kind"] == "selection"]
    assert [r["label"] for r in sel] == ["psnr>=21 dB", "psnr>=24 dB"]
    for r in sel:  # bits: tokens x 10 + log2(4) = 2
        assert float(r["bits"]) == pytest.approx(float(r["tokens"]) * 10 + 2)
    assert {r["method"] for r in rows if r["kind"] == "baseline"} == {"thumbnail", "jpeg", "webp"}
    # per-image values and the complexity analysis are kept in the JSON
    first = data["points"][0]
    assert len(first["psnr_per_image"]) == 5 and len(data["psnr_curves"]) == 4
    assert set(data["correlations"]) == {"psnr>=21 dB", "psnr>=24 dB"}
    assert set(data["allocation"]["psnr>=21 dB"]) >= {"chosen_psnr", "fixed_psnr", "shuffled_psnr"}
    assert len(data["complexity"]["png_bytes"]) == 5
    # the flat image is the least complex by both measures
    assert np.argmin(data["complexity"]["png_bytes"]) == np.argmin(data["complexity"]["jpeg90_bytes"])
    _check_png(out / "rd_psnr.png")
    _check_png(out / "length_complexity.png")
    # the HTML is self-contained: both plots and the grid inline, the chosen length outlined once per image
    assert "src=\"file:" not in html and html.count("data:image/png;base64,") == 2 + 5 * 5
    assert html.count('class="chosen"') == 5
    for heading in ("Rate–distortion points", "Spearman", "Allocation check", "Reconstructions"):
        assert heading in html
    chromium = _chromium()
    if chromium:  # the rendered page is not blank
        res = subprocess.run([sys.executable, str(CHECK), str(out / "report.html"), "--out", str(tmp_path / "s.png"),
                              "--chromium", chromium], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        assert (tmp_path / "s.png").stat().st_size > 10_000


def test_sweep_report_of_a_fixed_tokenizer(inputs, tmp_path, capsys):
    out = tmp_path / "titok"
    code = main(["eval", str(inputs), "--model", "titok_default", "--sweep", "--report", str(out),
                 "--jpeg-qualities", "5", "--webp-qualities", "5"])
    assert code == 0
    rows, data, html = _read(out)
    fixed = [r for r in rows if r["kind"] == "fixed"]
    assert len(fixed) == 1 and float(fixed[0]["bits"]) == 640.0 and float(fixed[0]["bpp"]) == 640 / 64 ** 2
    assert [r["label"] for r in rows if r["method"] == "thumbnail"] == ["5x5 px"]  # 640 bits = 80 bytes >= 3 * 5^2
    assert data["correlations"] is None and "Allocation check" not in html
    _check_png(out / "rd_psnr.png")
    assert not (out / "length_complexity.png").exists()


def test_sweep_flags_need_sweep_and_fixed_models_take_no_lengths(inputs, tmp_path, capsys):
    assert main(["eval", str(inputs), "--model", "titok_default", "--report", str(tmp_path / "r")]) == 2
    assert "add --sweep" in capsys.readouterr().err
    assert main(["eval", str(inputs), "--model", "titok_default", "--sweep", "--lengths", "16"]) == 2
    assert "fixed-length" in capsys.readouterr().err
    assert main(["eval", str(inputs), "--model", "alit_default", "--sweep", "--lengths", "20"]) == 2
    assert "not among" in capsys.readouterr().err


def _chromium():
    sys.path.insert(0, str(CHECK.parent))
    try:
        from check_report import find_chromium
    finally:
        sys.path.pop(0)
    return find_chromium()


def test_sweep_report_of_a_prefix_tokenizer_has_lagrangian_points(inputs, tmp_path, capsys):
    import torch

    torch.manual_seed(0)
    model_dir = adatok.save(adatok.create_model("prefix_tiny_step2"), tmp_path / "prefix")
    out = tmp_path / "rd"
    code = main(["eval", str(inputs), "--model", str(model_dir), "--sweep", "--report", str(out),
                 "--psnr-targets", "--lambdas", "0", "1000", "--jpeg-qualities", "--webp-qualities"])
    assert code == 0, capsys.readouterr().err
    rows, data, html = _read(out)
    sel = [r for r in rows if r["kind"] == "selection"]
    assert [r["label"] for r in sel] == ["lambda=0 dB/token", "lambda=1000 dB/token"]
    assert float(sel[1]["tokens"]) == 2.0  # a steep price: every image at the shortest prefix
    # 8 tokens of a 64-code book: 6 bits a token, + log2(4) bits for the length
    assert float(sel[1]["bits"]) == pytest.approx(2 * 6 + 2)
    assert {r["method"] for r in rows if r["kind"] == "baseline"} == {"thumbnail"}
    assert "lagrangian" in html and (out / "length_complexity.png").exists()


# ----------------------------------------------------------------------------- --rfid


@pytest.fixture
def fast_frechet(monkeypatch):
    """tests/eval/test_cli_metrics.py's exact low-rank ``frechet_distance`` (scipy's 2048 x 2048 sqrtm is
    ~15 s), one intra-op thread (the shared test machine's cores)."""
    import torch
    from eval.test_cli_metrics import eigen_frechet

    from adatok.eval import fid

    monkeypatch.setattr(fid, "frechet_distance", eigen_frechet)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_sweep_rfid_per_point_from_an_inception_file(tmp_path, fast_frechet, capsys):
    """2 images 80 x 64, titok_tiny (one fixed point) and a thumbnail at its bytes: every point has an rFID and
    IS (printed, CSV, JSON, HTML); the tokenizer point's equals the FID of the 64 px crops against their
    8-bit reconstructions computed directly (float64 Inception, as the command loads it)."""
    import torch
    from eval.test_cli_metrics import _write_images, exact_fid, inception_score
    from eval.test_fid import write_random_inception

    from adatok.data.images import load_images, to_uint8
    from adatok.eval.inception import load_inception

    paths = _write_images(tmp_path / "in", 5, 2, size=(80, 64))
    torch.manual_seed(0)
    model_dir = adatok.save(adatok.create_model("titok_tiny"), tmp_path / "tiny")
    weights = tmp_path / "inception.pth"
    write_random_inception(weights)
    out = tmp_path / "rd"
    code = main(["eval", str(tmp_path / "in"), "--model", str(model_dir), "--sweep", "--rfid", "--inception",
                 str(weights), "--report", str(out), "--jpeg-qualities", "--webp-qualities"])
    text = capsys.readouterr().out
    assert code == 0, text
    header = next(line for line in text.splitlines() if line.startswith("method"))
    assert header.split()[-2:] == ["rFID", "IS"] and "biased upward" in text
    rows, data, html = _read(out)
    assert [r["kind"] for r in rows] == ["fixed", "baseline"]
    assert all(float(r["rfid"]) > 0 and float(r["inception_score"]) >= 1 for r in rows)
    assert [p["rfid"] for p in data["points"]] == [float(r["rfid"]) for r in rows]
    assert data["inception_score_inputs"] >= 1 and "<th>rFID</th>" in html
    printed = [line.split() for line in text.splitlines() if line.startswith(("tiny", "thumbnail"))]
    assert [float(p[-2]) for p in printed] == pytest.approx([float(r["rfid"]) for r in rows], abs=1e-4)
    net = load_inception(weights)
    model = adatok.load(model_dir)
    refs = load_images(paths, 64)[0]
    with torch.inference_mode():
        recon = to_uint8(model.decode(model.encode(refs)))
        (pr, _), (pf, lf) = net(to_uint8(refs)), net(recon)
    assert float(rows[0]["rfid"]) == pytest.approx(exact_fid(pr, pf), rel=1e-5)
    assert float(rows[0]["inception_score"]) == pytest.approx(inception_score(lf), abs=1e-6)


def test_sweep_rfid_without_the_inception_file_is_one_line_exit_2(inputs, tmp_path, monkeypatch, capsys):
    """Before the tokenizer is loaded (a bad --model is not reported) or an image read."""
    import torch

    from adatok.eval.inception import INCEPTION_FILE

    monkeypatch.setenv("ADATOK_WEIGHTS_DIR", str(tmp_path / "w"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert main(["eval", str(inputs), "--model", "no_such_model", "--sweep", "--rfid"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("adatok: error:") and INCEPTION_FILE in err, err
    assert "--inception FILE" in err and str(tmp_path / "w") in err
    assert main(["eval", str(inputs), "--model", "titok_default", "--sweep", "--rfid", "--inception",
                 str(tmp_path / "x.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "x.pth" in err and "Traceback" not in err, err
