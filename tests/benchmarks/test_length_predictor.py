"""benchmarks/length_predictor.py on a tiny prefix model and two photo folders: the fitted head is
measured against ``select``'s own choices, and nothing is written back to the model's files."""

import hashlib
import json
import shutil
from pathlib import Path

import torch

import adatok
import length_predictor
from adatok.eval.crops import heldout_crops

SAMPLES = Path(adatok.__file__).parent / "data" / "samples"


def test_fits_in_memory_and_reports_against_select(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run(tmp_path)
    finally:
        torch.set_num_threads(before)


def _run(tmp_path):
    photos = sorted(SAMPLES.glob("*.jpg"))
    for i, p in enumerate(photos):
        folder = tmp_path / ("heldout" if i % 2 else "train")
        folder.mkdir(exist_ok=True)
        shutil.copy(p, folder / p.name)
    torch.manual_seed(0)
    model_dir = adatok.save(adatok.create_model("prefix_tiny_step2"), tmp_path / "prefix")
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in model_dir.iterdir()}
    out = tmp_path / "lp.json"
    assert length_predictor.main(["--model", str(model_dir), "--train", str(tmp_path / "train"), "--heldout",
                                  str(tmp_path / "heldout"), "--thresholds", "9,11", "--quick", "--json",
                                  str(out)]) == 0
    r = json.loads(out.read_text())
    held = heldout_crops(tmp_path / "heldout", 64)[0]
    assert r["heldout"].startswith(f"{len(held)} crops of 2 photos") and r["train"].startswith("42 crops of 2")
    model = adatok.load(model_dir).eval()
    for row in r["rows"]:
        assert 0 <= row["exact"] <= row["within_one_step"] <= 1
        assert abs(row["shorter"] + row["longer"] + row["exact"] - 1) < 1e-6
        assert sum(row["chosen_histogram"]) == sum(row["predicted_histogram"]) == len(held)
        with torch.no_grad():  # "chosen" is select's own choice on the held-out crops
            chosen = model.select(held, "psnr", row["threshold_db"], return_images=False).tokens.lengths
        assert abs(row["tokens_chosen"] - chosen.float().mean().item()) < 1e-4
        assert 2 <= row["tokens_predicted"] <= 8
        assert 0 <= row["tv_knn_exact"] <= row["tv_knn_within_one_step"] <= 1
    assert set(r["timings"]) == {"predict_lengths", "select(predictor=True)", "select (bisection)"}
    # the head was fitted in memory only: the saved model is unchanged, its predictor still untrained
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in model_dir.iterdir()} == digest
    assert not bool(model.length_predictor.trained)


def test_knn_baseline_takes_the_median_of_the_nearest_training_choices():
    train_feature = torch.tensor([0.0, 0.1, 0.2, 1.0, 1.1, 1.2])
    train_choice = torch.tensor([0, 1, 1, 5, 6, 7])
    got = length_predictor.knn_choice(train_feature, train_choice, torch.tensor([0.05, 1.05, 0.75, 0.3]), k=3)
    assert got.tolist() == [1, 6, 6, 1]
    assert length_predictor.knn_choice(train_feature, train_choice, torch.tensor([0.04]), k=2).tolist() == [0]  # lower
