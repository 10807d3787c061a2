"""benchmarks/adaptive_heldout.py on the shipped defaults, on 6 crops of one photo: every target line is
printed and the JSON numbers agree with what the lines claim."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "adatok" / "data" / "samples"


def test_adaptive_heldout_reports_every_target(tmp_path, capsys, monkeypatch):
    import adaptive_heldout

    folder = tmp_path / "heldout"
    folder.mkdir()
    shutil.copy(SAMPLES / "chelsea.jpg", folder)
    out = tmp_path / "r.json"
    monkeypatch.setattr(sys, "argv", ["adaptive_heldout.py", "--heldout", str(folder), "--json", str(out),
                                      "--max-images", "6"])
    assert adaptive_heldout.main() == 0
    text = capsys.readouterr().out
    assert "held-out set: 6 crops of 1 photo(s) (chelsea)" in text
    for target in ("target 1", "target 2", "target 3", "target 4", "target 4b"):
        assert target in text
    report = json.loads(out.read_text())
    prefix = report["titok_prefix_default"]
    assert prefix["lengths"] == [8, 16, 24, 32, 40, 48, 56, 64]
    assert prefix["strictly_increasing"] == bool(np.all(np.diff(prefix["psnr"]) > 0))
    assert ("target 1 (strictly increasing): met" in text.split("## alit_default")[0]) == prefix["strictly_increasing"]
    rules = [s["rule"] for s in prefix["selections"]]
    assert rules[:3] == ["psnr>=20 dB", "psnr>=22 dB", "psnr>=24 dB"] and len(rules) == 6  # + 3 Lagrangian prices
    for s in prefix["selections"]:
        assert 8 <= s["mean_tokens"] <= 64 and -1 <= s["spearman_png"] <= 1 or np.isnan(s["spearman_png"])
    assert len(report["alit_default"]["thumbnail_margin_db"]) == 4
    assert report["titok_default"]["tokens"] == 64
