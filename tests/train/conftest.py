import shutil
from pathlib import Path

import pytest

import adatok

SAMPLES = Path(adatok.__file__).parent / "data" / "samples"


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """A small real-photo folder: the 4 bundled photos, twice (8 images)."""
    folder = tmp_path_factory.mktemp("photos")
    for p in sorted(SAMPLES.glob("*.jpg")):
        shutil.copy(p, folder / p.name)
        shutil.copy(p, folder / f"copy_{p.name}")
    return folder


@pytest.fixture(scope="session")
def labelled(tmp_path_factory) -> Path:
    """ImageFolder layout: two classes of bundled photos."""
    root = tmp_path_factory.mktemp("labelled")
    for i, p in enumerate(sorted(SAMPLES.glob("*.jpg"))):
        cls = root / ("animals" if p.stem in ("chelsea", "astronaut") else "things")
        cls.mkdir(exist_ok=True)
        shutil.copy(p, cls / p.name)
        shutil.copy(p, cls / f"b_{p.name}")
    return root


def tiny_run(task: str, out: Path, data: Path, **extra) -> dict:
    """A recipe dict for a few fast CPU steps of ``task``."""
    run = {
        "task": task,
        "out": str(out),
        "data": {"train": str(data), "image_size": 64, "workers": 0, "num_samples": 2},
        "optim": {"lr": 1e-3, "betas": [0.9, 0.99], "weight_decay": 0.0, "warmup_steps": 0, "schedule": "constant"},
        "disc_optim": {"lr": 1e-4, "warmup_steps": 0, "schedule": "constant"},
        "train": {"steps": 20, "batch_size": 4, "log_every": 1, "ckpt_every": 10, "sample_every": 10,
                  "ema_decay": 0.9, "tensorboard": False, "seed": 0},
    }
    for key, value in extra.items():
        node = run
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return run
