"""benchmarks/selection_rules.py: each rule picks what its definition says on hand-made curves, the
PSNR Lagrangian equals the library's select_lagrangian, and the script runs on the shipped prefix default."""

import json
import shutil
from pathlib import Path

import numpy as np
import torch

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "adatok" / "data" / "samples"


def test_rules_on_hand_made_curves():
    import selection_rules

    lengths = np.array([8, 16, 32])
    # image 0 is simple (reaches 30 dB at once), image 1 cluttered (slow, never reaches 24 dB)
    curves = np.array([[30.0, 30.5, 31.0], [15.0, 17.0, 20.0]])
    curves = curves.T  # T x B
    chosen = selection_rules.rules(curves, lengths)
    assert chosen["psnr>=24 dB"].tolist() == [0, 2]  # the shortest reaching it; never reached -> the longest
    # the PSNR Lagrangian at 0.1 dB/token: image 0 gains 0.5 dB for 8 tokens (< 0.8): stays at 8; image 1
    # gains 2 dB for 8 tokens (> 0.8) and 3 dB for 16 more (> 1.6): goes to 32
    assert chosen["PSNR Lagrangian 0.1 dB/token"].tolist() == [0, 2]
    assert chosen["within 1 dB of own longest"].tolist() == [0, 2]
    assert chosen["within 3 dB of own longest"].tolist() == [0, 1]
    floor = chosen["floor 22 dB + PSNR Lagrangian 0.1"]
    assert floor.tolist() == [0, 2]  # image 1 never reaches the floor: its longest length


def test_psnr_lagrangian_is_the_librarys(tmp_path):
    import selection_rules

    import adatok
    from adatok.eval.crops import heldout_crops
    from adatok.tokenizers.prefix.lagrangian import select_lagrangian

    model = adatok.load("titok_prefix_default")
    folder = tmp_path / "h"
    folder.mkdir()
    shutil.copy(SAMPLES / "chelsea.jpg", folder)
    images, _ = heldout_crops(folder, 64)
    images = images[:6]
    with torch.no_grad():
        sweep = model.sweep(images)
        from adatok.eval.metrics import psnr
        from adatok.eval.rate_distortion import round8

        curves = np.stack([psnr(round8(x), images).numpy() for x in sweep.images])
        ours = np.asarray(sweep.lengths)[selection_rules.rules(curves, np.asarray(sweep.lengths))["PSNR Lagrangian 0.1 dB/token"]]
        lib = select_lagrangian(model, images, 0.1).tokens.lengths.numpy()
    assert ours.tolist() == lib.tolist()


def test_script_reports_every_rule(tmp_path, capsys):
    import selection_rules

    folder = tmp_path / "h"
    folder.mkdir()
    shutil.copy(SAMPLES / "chelsea.jpg", folder)
    out = tmp_path / "r.json"
    assert selection_rules.main(["--heldout", str(folder), "--max-images", "8", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "titok_prefix_default on 8 held-out crops" in text and "rules meeting both:" in text
    report = json.loads(out.read_text())
    assert report["crops"] == 8 and len(report["rules"]) == 20
    for r in report["rules"].values():
        assert 8 <= r["mean_tokens"] <= 64
