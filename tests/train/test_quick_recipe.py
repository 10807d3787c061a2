"""The README's first CPU run (the shipped ``titok_quick`` recipe) learns: at toy length its loss
falls well below where it starts, and it writes sample grids and a checkpoint on the way."""

import csv
import shutil
from pathlib import Path

import adatok
from adatok.train import run

SAMPLES = Path(adatok.__file__).parent / "data" / "samples"


def test_quick_recipe_loss_falls(tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    for p in SAMPLES.glob("*.jpg"):
        shutil.copy(p, pool / p.name)
    out = tmp_path / "run"
    run("titok_quick", [f"data.train={pool}", f"out={out}", "train.steps=30", "train.batch_size=8",
                        "train.log_every=5", "train.sample_every=15", "train.ckpt_every=15"])
    with (out / "log.csv").open() as f:
        losses = [float(r["loss_model"]) for r in csv.DictReader(f)]
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0], losses
    assert (out / "samples" / "step_0000015.png").exists() and (out / "checkpoints" / "latest.pt").exists()
    assert (out / "model" / "model.safetensors").exists()
