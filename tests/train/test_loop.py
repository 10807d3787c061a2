"""The loop's guarantees: DDP equivalence, exact resume after SIGKILL, atomic checkpoints, NaN guard."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import adatok
from adatok.errors import AdatokError, ConfigError
from adatok.train import run
from adatok.train import checkpoint as ckpt_mod
from adatok.train.tasks.base import TASKS, Phase, Task

from .conftest import tiny_run

SRC = str(Path(adatok.__file__).parents[1])


def env():
    return dict(os.environ, PYTHONPATH=SRC, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")


def write_recipe(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_two_process_ddp_equals_one_process_with_the_same_global_batch(photos, tmp_path):
    base = dict(model="titok_pixels_tiny", **{"train.steps": 4, "train.ema_decay": 0.0, "train.sample_every": 0,
                                               "train.ckpt_every": 4})
    one = tiny_run("titok_single", tmp_path / "one", photos, **base, **{"options.perceptual": "none", "options.gan_weight": 0.0})
    one["train"]["batch_size"] = 4
    two = tiny_run("titok_single", tmp_path / "two", photos, **base, **{"options.perceptual": "none", "options.gan_weight": 0.0})
    two["train"]["batch_size"] = 2
    r1 = subprocess.run([sys.executable, "-m", "adatok", "train", str(write_recipe(one, tmp_path / "one.yaml"))],
                        env=env(), capture_output=True, text=True, timeout=300)
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                         "-m", "adatok", "train", str(write_recipe(two, tmp_path / "two.yaml"))],
                        env=env(), capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0, r2.stderr[-2000:]
    a, b = weights(tmp_path / "one" / "model"), weights(tmp_path / "two" / "model")
    assert a.keys() == b.keys()
    start = adatok.create_model("titok_pixels_tiny")
    moved = 0
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-5, rtol=1e-4, msg=k)
        moved += not torch.equal(a[k], start.state_dict()[k])
    assert moved > 10  # the runs did train


def test_sigkill_then_resume_gives_exactly_the_uninterrupted_weights(photos, tmp_path):
    cfg = tiny_run("titok_single", tmp_path / "full", photos, model="titok_pixels_tiny",
                   **{"train.steps": 60, "train.ckpt_every": 5, "train.sample_every": 0, "data.workers": 1,
                      "options.perceptual": "none", "options.gan_weight": 0.1, "options.gan_start": 3,
                      "options.disc_channels": 32})
    full = subprocess.run([sys.executable, "-m", "adatok", "train", str(write_recipe(cfg, tmp_path / "full.yaml"))],
                          env=env(), capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr[-2000:]

    cfg["out"] = str(tmp_path / "killed")
    recipe = write_recipe(cfg, tmp_path / "killed.yaml")
    ckpt = tmp_path / "killed" / "checkpoints" / "latest.pt"
    proc = subprocess.Popen([sys.executable, "-m", "adatok", "train", str(recipe)], env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists():
            try:
                if torch.load(ckpt, weights_only=True)["step"] >= 10:
                    break
            except Exception:
                pass  # never half-written, but it may be replaced while we read it
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(ckpt, weights_only=True)["step"]
    assert 10 <= killed_at < 60
    assert not (tmp_path / "killed" / "model").exists()
    again = subprocess.run([sys.executable, "-m", "adatok", "train", str(recipe), "--resume"], env=env(),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    a, b = weights(tmp_path / "full" / "model"), weights(tmp_path / "killed" / "model")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    full_state = torch.load(tmp_path / "full" / "checkpoints" / "latest.pt", weights_only=True)
    resumed = torch.load(ckpt, weights_only=True)
    for k, v in full_state["modules"]["gan"].items():  # the discriminator and optimizers too
        assert torch.equal(v, resumed["modules"]["gan"][k]), k
    assert resumed["position"] == full_state["position"] == 60


def test_checkpoint_is_never_half_written(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    ckpt_mod.atomic_save({"step": 1, "w": torch.ones(3)}, path)

    def broken_save(obj, f):
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt_mod.atomic_save({"step": 2, "w": torch.zeros(3)}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]


class _NaNTask(Task):
    name = "nan_test"

    def __init__(self, run, device):
        super().__init__(run, device)
        self.model = torch.nn.Linear(2, 1)

    def trainable(self):
        return {"model": self.model}

    def phases(self, batch, step, modules):
        loss = modules["model"](torch.ones(1, 2)).sum() * (float("nan") if step >= 2 else 1.0)
        yield Phase("model", loss, {})

    def save_export(self, model, path):
        path.mkdir(parents=True, exist_ok=True)


def test_nan_guard_skips_then_stops_with_a_clear_message(photos, tmp_path, monkeypatch):
    monkeypatch.setitem(TASKS, "nan_test", _NaNTask)
    cfg = tiny_run("nan_test", tmp_path / "nan", photos, **{"train.steps": 10, "train.max_nan_skips": 3,
                                                            "train.sample_every": 0})
    with pytest.raises(AdatokError, match=r"non-finite loss at step 6 .*4 steps in a row"):
        run(cfg)
    cfg = tiny_run("nan_test", tmp_path / "nan2", photos, **{"train.steps": 10, "train.nan_policy": "stop",
                                                             "train.sample_every": 0})
    with pytest.raises(AdatokError, match="non-finite loss at step 3"):
        run(cfg)


def test_recipe_errors_are_clear(photos, tmp_path):
    with pytest.raises(ConfigError, match="unknown task 'nope'"):
        run(tiny_run("nope", tmp_path / "a", photos))
    with pytest.raises(ConfigError, match="unknown field"):
        run(tiny_run("titok_single", tmp_path / "b", photos, model="titok_pixels_tiny", **{"options.gan_wieght": 1}))
    with pytest.raises(ConfigError, match="too few for batch size 64"):
        run(tiny_run("titok_single", tmp_path / "c", photos, model="titok_pixels_tiny", **{"train.batch_size": 64}))
    recipe = write_recipe({"task": "titok_single"}, tmp_path / "x.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        run(recipe, ["train.steps"])
    with pytest.raises(ConfigError, match="no such recipe"):
        run(tmp_path / "missing.yaml")
    done = tiny_run("titok_single", tmp_path / "d", photos, model="titok_pixels_tiny",
                    **{"train.steps": 2, "options.perceptual": "none", "options.gan_weight": 0.0})
    run(done)
    with pytest.raises(AdatokError, match="--resume"):
        run(done)


def test_a_run_records_its_resolved_recipe_and_it_runs_again(photos, tmp_path):
    from adatok.train.config import load_run_config

    cfg = tiny_run("titok_single", tmp_path / "r", photos, model="titok_pixels_tiny",
                   **{"train.steps": 2, "train.sample_every": 0, "options.perceptual": "none", "options.gan_weight": 0.0})
    recipe, overrides = write_recipe(cfg, tmp_path / "r.yaml"), ["train.batch_size=2", "data.repeat=2"]
    run(recipe, overrides)
    recorded = load_run_config(tmp_path / "r" / "run.yaml")
    assert recorded == load_run_config(recipe, overrides)  # overrides applied, nothing lost in the YAML
    assert recorded.train.batch_size == 2 and recorded.data.repeat == 2 and recorded.data.scale == (0.08, 1.0)
    again = run(recorded.__class__(**{**recorded.__dict__, "out": str(tmp_path / "again")}))
    first, second = weights(tmp_path / "r" / "model"), weights(again)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_shipped_recipes_parse():
    from adatok.train.config import load_run_config
    from adatok.train.tasks import get_task

    recipes = sorted((Path(__file__).parents[2] / "configs").rglob("*.yaml"))  # configs/defaults/ too
    assert len(recipes) >= 12
    for path in recipes:
        cfg = load_run_config(path, ["train.steps=10"])
        task = get_task(cfg.task)
        if task.options_cls:
            from adatok.config_utils import config_from_dict

            config_from_dict(task.options_cls, cfg.options)
        assert cfg.train.steps == 10
