"""The classification task and ``adatok classify`` speak timm: its data config (crop_pct,
interpolation, mean/std), its augmentation (RandAugment, random erasing, Mixup/CutMix, seeded so
runs stay reproducible), local timm checkpoints, and an export ``timm.create_model("local-dir:...")``
loads."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import adatok
import adatok.reduction as R
from adatok.cli.main import main
from adatok.data.images import read_image
from adatok.data.timm_transforms import TimmTransform, eval_data_config
from adatok.errors import ConfigError
from adatok.train import run
from adatok.train.config import load_run_config
from adatok.train.tasks.base import get_task

SAMPLE = Path(adatok.__file__).parent / "data" / "samples" / "chelsea.jpg"
ARCH = {"depth": 2, "embed_dim": 32, "num_heads": 2, "patch_size": 8}
DEIT_AUG = {"auto_augment": "rand-m9-mstd0.5-inc1", "re_prob": 0.25, "re_mode": "pixel", "color_jitter": 0.3}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("classes")
    gen = torch.Generator().manual_seed(0)
    for label in ("a", "b"):
        (root / label).mkdir()
        for i in range(4):
            img = (torch.rand(40, 48, 3, generator=gen) * 255).byte().numpy()
            Image.fromarray(img).save(root / label / f"{i}.png")
    return root


def recipe(out, data, steps=3, **options) -> dict:
    return {
        "task": "classify", "out": str(out), "model": "vit_tiny_patch16_224", "model_overrides": ARCH,
        "options": options,
        "data": {"train": str(data), "format": "imagefolder", "image_size": 32, "workers": 0},
        "optim": {"lr": 1e-3, "warmup_steps": 0, "schedule": "constant"},
        "train": {"steps": steps, "batch_size": 4, "log_every": 1, "ckpt_every": 100, "sample_every": 0,
                  "ema_decay": 0.0, "tensorboard": False, "seed": 0},
    }


def test_timm_transform_is_seeded_and_leaves_global_rng_alone():
    model = timm.create_model("deit_tiny_patch16_224")
    cfg = eval_data_config(model)
    assert cfg["crop_pct"] == 0.9 and cfg["interpolation"] == "bicubic"  # DeiT: resize 248 -> crop 224
    t = TimmTransform(cfg, DEIT_AUG)
    img = read_image(SAMPLE)
    state = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    a, b, c = t(img, 7), t(img, 7), t(img, 8)
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == (3, 224, 224)
    assert random.getstate() == state[0] and np.array_equal(np.random.get_state()[1], state[1])
    assert torch.equal(torch.get_rng_state(), state[2])
    want = timm.data.create_transform(**timm.data.resolve_data_config(model=model))(img)
    assert torch.equal(t(img), want)  # the eval path is timm's own


def test_export_loads_with_timm_local_dir_and_deit_augmentation_trains(folder, tmp_path):
    out = tmp_path / "run"
    exported = run(recipe(out, folder, transform="timm", augment=DEIT_AUG, mixup=0.8, cutmix=1.0,
                          label_smoothing=0.1))
    meta = json.loads((exported / "config.json").read_text())
    assert meta["architecture"] == "vit_tiny_patch16_224" and meta["pretrained_cfg"]["crop_pct"] == 0.9
    theirs = timm.create_model(f"local-dir:{exported}", pretrained=True).eval()
    ours = R.load_classifier(str(exported))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), ours.model(x), rtol=0, atol=0)
    resolved = timm.data.resolve_data_config(model=theirs)
    assert resolved["input_size"] == (3, 32, 32) and tuple(resolved["mean"]) == ours.data_config["mean"]
    assert resolved["crop_pct"] == ours.data_config["crop_pct"] == 0.9
    # same recipe, same seed: the seeded augmentation and Mixup give the same run
    again = run(recipe(tmp_path / "again", folder, transform="timm", augment=DEIT_AUG, mixup=0.8, cutmix=1.0,
                       label_smoothing=0.1))
    first = (out / "log.csv").read_text().splitlines()
    second = (tmp_path / "again" / "log.csv").read_text().splitlines()
    loss = first[0].split(",").index("loss_model")
    assert [r.split(",")[loss] for r in first[1:]] == [r.split(",")[loss] for r in second[1:]]
    assert again.exists()


def test_mixup_uses_soft_targets(folder):
    cfg = load_run_config(recipe("unused", folder, mixup=0.8, cutmix=1.0))
    task = get_task("classify")(cfg, torch.device("cpu"))
    batch = {"image": torch.rand(4, 3, 32, 32), "label": torch.tensor([0, 1, 0, 1])}
    (phase,) = task.phases(batch, 0, {"model": task.model})
    images, targets = task.mixup(batch["image"].clone(), batch["label"])
    assert targets.shape == (4, 2) and torch.allclose(targets.sum(1), torch.ones(4))
    assert torch.isfinite(phase.loss)


def test_pretrained_local_checkpoint_and_adatok_transform_export(folder, tmp_path):
    source = timm.create_model("vit_tiny_patch16_224", num_classes=2, img_size=32, **ARCH)
    ckpt = tmp_path / "ckpt.pth"
    torch.save(source.state_dict(), ckpt)
    cfg = load_run_config(recipe("unused", folder, pretrained=str(ckpt)))
    task = get_task("classify")(cfg, torch.device("cpu"))
    theirs = task.model.state_dict()
    loaded = [k for k, v in source.state_dict().items() if torch.equal(v, theirs[k])]
    # everything but the classifier, which timm re-initialises for fine-tuning as it does for its own weights
    not_loaded = set(source.state_dict()) - set(loaded)
    assert "head.weight" in not_loaded and not_loaded <= {"head.weight", "head.bias"}  # (biases start at 0)
    # adatok's own transform feeds [0, 1] images: the export's timm cfg says so (mean 0, std 1)
    assert task.data_config["mean"] == (0.0,) * 3 and task.data_config["crop_pct"] == 1.0
    with pytest.raises(ConfigError, match="no such checkpoint"):
        get_task("classify")(load_run_config(recipe("u", folder, pretrained=str(tmp_path / "nope.pth"))),
                             torch.device("cpu"))
    with pytest.raises(ConfigError, match="options.transform=timm"):
        get_task("classify")(load_run_config(recipe("u", folder, augment=DEIT_AUG)), torch.device("cpu"))


def test_classify_cli_uses_the_models_crop_pct(capsys, monkeypatch):
    seen = []
    real = TimmTransform.__post_init__

    def spy(self):
        seen.append(dict(self.data_config))
        real(self)

    monkeypatch.setattr(TimmTransform, "__post_init__", spy)
    assert main(["classify", str(SAMPLE), "--model", "deit_tiny_patch16_224", "--top", "1"]) == 0
    assert seen and seen[-1]["crop_pct"] == 0.9 and seen[-1]["input_size"] == (3, 224, 224)
    assert "chelsea.jpg" in capsys.readouterr().out


def test_shipped_deit_recipes_are_the_deit_recipe():
    for name in ("classify_deit", "classify_deit_reduction"):
        opts = load_run_config(name).options
        assert opts["transform"] == "timm" and opts["augment"]["auto_augment"] == "rand-m9-mstd0.5-inc1"
        assert opts["augment"]["re_prob"] == 0.25 and opts["mixup"] == 0.8 and opts["cutmix"] == 1.0
