"""Held-out evaluation during training (train.eval_every / eval_images / keep_best): the logged PSNR is
the exported model's on the held-out crops, the best model is kept, evaluation changes no training
result, and a resumed run keeps its best."""

import csv
import json
import shutil

import pytest
import torch

import adatok
from adatok.errors import ConfigError
from adatok.eval.crops import heldout_crops
from adatok.eval.metrics import psnr
from adatok.train import run
from adatok.train.tasks.base import TASKS, Task

from .conftest import tiny_run

PIXELS = {"model": "titok_pixels_tiny", "options.perceptual": "none", "options.gan_weight": 0.0}


@pytest.fixture(scope="module")
def pools(photos, tmp_path_factory):
    """Training photos and two held-out photos (a folder of its own)."""
    root = tmp_path_factory.mktemp("pools")
    train, heldout = root / "train", root / "heldout"
    shutil.copytree(photos, train)
    heldout.mkdir()
    for p in sorted(train.glob("copy_*"))[:2]:
        shutil.move(p, heldout / p.name)
    return train, heldout


def logged(out) -> list[dict]:
    with (out / "log.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def heldout_psnr(model_dir, heldout, limit=None) -> float:
    model = adatok.load(model_dir).eval()
    images, _ = heldout_crops(heldout, 64)
    images = images[:limit]
    with torch.no_grad():
        recon = model.reconstruct(images).clamp(0, 1)
    return float(psnr((recon * 255).round() / 255, images).mean())


def weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_logged_heldout_psnr_is_the_models_and_the_best_is_kept(pools, tmp_path):
    train, heldout = pools
    cfg = tiny_run("titok_single", tmp_path / "r", train, **PIXELS, **{
        "data.heldout": str(heldout), "train.steps": 6, "train.log_every": 3, "train.eval_every": 2,
        "train.eval_images": 30, "train.keep_best": True, "train.ckpt_every": 6, "train.sample_every": 0})
    out = run(cfg).parent
    rows = [r for r in logged(out) if r.get("heldout_psnr")]
    assert [int(r["step"]) for r in rows] == [2, 4, 6]  # every eval_every steps; 6 shares a row with the losses
    assert rows[-1]["loss_model"] and not rows[0]["loss_model"]  # step 2 is not a log step: a row of its own
    # the value at the last step is the exported (EMA) model's PSNR on the first 30 held-out crops
    assert float(rows[-1]["heldout_psnr"]) == pytest.approx(heldout_psnr(out / "model", heldout, 30), abs=1e-4)
    best = json.loads((out / "best" / "best.json").read_text())
    values = {int(r["step"]): float(r["heldout_psnr"]) for r in rows}
    assert best["step"] == max(values, key=values.get) and best["heldout_images"] == 30
    assert best["heldout_psnr"] == pytest.approx(heldout_psnr(out / "best", heldout, 30), abs=1e-4)
    # the training-speed column leaves the evaluation out; it still covers every logged window
    assert all(float(r["images_per_s"]) > 0 for r in logged(out) if r.get("loss_model"))


def test_evaluation_changes_no_training_result_and_resume_keeps_the_best(pools, tmp_path):
    train, heldout = pools
    common = {**PIXELS, "data.heldout": str(heldout), "train.steps": 6, "train.ckpt_every": 3,
              "train.sample_every": 0, "train.eval_images": 12}
    plain = run(tiny_run("titok_single", tmp_path / "plain", train, **common))
    evaluated = run(tiny_run("titok_single", tmp_path / "eval", train, **common,
                             **{"train.eval_every": 1, "train.keep_best": True}))
    a, b = weights(plain), weights(evaluated)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    # an interrupted evaluated run (3 of 6 steps), resumed, ends with the uninterrupted run's best
    half = tiny_run("titok_single", tmp_path / "half", train, **common,
                    **{"train.eval_every": 1, "train.keep_best": True})
    half["train"]["steps"] = 3
    run(half)
    ckpt = tmp_path / "half" / "checkpoints" / "latest.pt"
    best_file = tmp_path / "half" / "best" / "best.json"
    assert torch.load(ckpt, weights_only=False)["best"] == json.loads(best_file.read_text())  # saved with the run
    half["train"]["steps"] = 6
    run(half, resume=True)
    assert json.loads(best_file.read_text()) == json.loads((tmp_path / "eval" / "best" / "best.json").read_text())
    heldout_rows = [(r["step"], r["heldout_psnr"]) for r in logged(tmp_path / "half") if r.get("heldout_psnr")]
    assert heldout_rows == [(r["step"], r["heldout_psnr"]) for r in logged(tmp_path / "eval") if r.get("heldout_psnr")]
    # the best comes back from the checkpoint: one no later evaluation beats is never replaced
    state = torch.load(ckpt, weights_only=False)
    state["best"] = {"step": 6, "heldout_psnr": 99.0, "heldout_images": 12}
    torch.save(state, ckpt)
    before = best_file.read_text()
    half["train"]["steps"] = 8
    run(half, resume=True)
    assert best_file.read_text() == before


class _NoImagesTask(Task):
    name = "no_images_test"

    def __init__(self, run, device):
        super().__init__(run, device)
        self.model = torch.nn.Linear(2, 2)

    def trainable(self):
        return {"model": self.model}


def test_recipe_errors_are_one_line(pools, tmp_path):
    train, heldout = pools
    with pytest.raises(ConfigError, match="train.eval_every needs held-out images: data.heldout=FOLDER"):
        run(tiny_run("titok_single", tmp_path / "a", train, **PIXELS, **{"train.eval_every": 2}))
    with pytest.raises(ConfigError, match="train.keep_best keeps the model of the best held-out PSNR: set train.eval_every"):
        run(tiny_run("titok_single", tmp_path / "b", train, **PIXELS, **{"train.keep_best": True}))
    with pytest.raises(ConfigError, match="train.eval_every must be >= 0"):
        run(tiny_run("titok_single", tmp_path / "c", train, **PIXELS, **{"train.eval_every": -1}))
    TASKS[_NoImagesTask.name] = _NoImagesTask
    try:
        with pytest.raises(ConfigError, match="task no_images_test does not reconstruct images"):
            run(tiny_run("no_images_test", tmp_path / "d", train, **{"data.heldout": str(heldout), "train.eval_every": 2}))
    finally:
        del TASKS[_NoImagesTask.name]
    assert not (tmp_path / "d" / "log.csv").exists()  # refused before anything was written
