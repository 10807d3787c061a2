"""scripts/gpu_retrain_alit.py: the step plan that fits a GPU budget, the shipped VQGAN as teacher, and
its errors. (The runs it starts are train_defaults' own, tested end to end in test_train_defaults.py.)"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("gpu_retrain_alit", ROOT / "scripts" / "gpu_retrain_alit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plan_fills_the_budget_by_stage_share(script):
    # 10 min budget, 30 s start-up overhead: 570 s of training, 2/5 then 3/5
    plan = script.plan_steps({"alit": 0.1, "alit_finetune": 0.2}, 600)
    assert plan == {"alit": 2250, "alit_finetune": 1700}  # 228 s / 0.1 = 2280 -> 2250; 342 s / 0.2 = 1710 -> 1700
    total = plan["alit"] * 0.1 + plan["alit_finetune"] * 0.2
    assert total <= 600 - script.OVERHEAD_S
    # a budget too small for anything still trains the minimum, never zero steps
    assert script.plan_steps({"alit": 5.0, "alit_finetune": 5.0}, 60) == {"alit": 50, "alit_finetune": 50}


def test_the_shipped_vqgan_becomes_the_teacher(script, tmp_path):
    vqgan = script.td.WEIGHTS / "maskgit_vqgan_default"
    script.use_teacher(tmp_path, vqgan)
    teacher = script.td.shipped_run(tmp_path, "vqgan")
    assert (teacher / "model.safetensors").read_bytes() == (vqgan / "model.safetensors").read_bytes()
    # every VQGAN run counts as done, so train_defaults trains none of them
    assert all((tmp_path / run / "model" / "model.safetensors").exists() for run in script.td.RUNS["vqgan"])


def test_a_wrong_pool_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_retrain_alit.py"), "--pool", str(tmp_path),
                           "--hires-pool", str(tmp_path), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path}: expected a photo pool")
    assert not (tmp_path / "out").exists()  # nothing written
