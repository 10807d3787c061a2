"""Training with reduction on (the shared loop), then `adatok classify` / `adatok viz merges` on the export."""

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import adatok
import adatok.reduction as R
from adatok.cli.main import main
from adatok.train import run

SAMPLES = Path(adatok.__file__).parent / "data" / "samples"


@pytest.fixture(scope="module")
def stripes(tmp_path_factory) -> Path:
    """ImageFolder of 32 x 32 images, two classes (horizontal / vertical stripes on a dark ground)."""
    root = tmp_path_factory.mktemp("stripes")
    gen = torch.Generator().manual_seed(0)
    for label in ("horizontal", "vertical"):
        (root / label).mkdir()
        for i in range(8):
            img = torch.zeros(32, 32)
            lines = torch.randperm(24, generator=gen)[:3] + 4
            if label == "horizontal":
                img[lines] = 1.0
            else:
                img[:, lines] = 1.0
            Image.fromarray((img * 255).byte().numpy(), mode="L").save(root / label / f"{i}.png")
    return root


def recipe(out: Path, data: Path, **options) -> dict:
    return {
        "task": "classify", "out": str(out), "model": "vit_tiny_patch16_224",
        "model_overrides": {"depth": 4, "embed_dim": 64, "num_heads": 2, "patch_size": 4},
        "options": {"label_smoothing": 0.0, **options},
        "data": {"train": str(data), "format": "imagefolder", "image_size": 32, "crop": "center", "flip": False,
                 "workers": 0},
        "optim": {"lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 0, "schedule": "constant"},
        "train": {"steps": 24, "batch_size": 8, "log_every": 1, "ckpt_every": 100, "sample_every": 0,
                  "ema_decay": 0.0, "tensorboard": False, "seed": 0},
    }


@pytest.fixture(scope="module")
def trained(stripes, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "imagepiece"
    cfg = recipe(out, stripes, reduction="imagepiece", keep_rate_warmup=[4, 10],
                 reduction_settings={"lcb": True, "keep_rate": 0.5, "merge_ratio": 0.1})
    return out, run(cfg)


def test_training_with_reduction_learns_and_exports_it(trained):
    out, exported = trained
    with (out / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["loss_model"]) for r in rows]
    assert sum(losses[-4:]) / 4 < 0.7 * sum(losses[:4]) / 4
    meta = json.loads((exported / "config.json").read_text())
    assert meta["reduction"]["method"] == "imagepiece" and meta["reduction"]["lcb"] is True
    assert meta["classes"] == ["horizontal", "vertical"]
    clf = R.load_classifier(str(exported))
    # trained on [0, 1] inputs (adatok's transform): identity normalisation in its timm pretrained_cfg
    assert R.settings_of(clf.model)["keep_rate"] == 0.5 and clf.mean == (0.0,) * 3 and clf.std == (1.0,) * 3
    with torch.no_grad():
        clf.model(torch.rand(2, 3, 32, 32))
    assert R.info(clf.model).tokens == R.token_counts(clf.model)  # blocks (1, 2, 3) for depth 4
    assert R.info(clf.model).tokens[0] == 65 and R.info(clf.model).tokens[-1] < 40


def test_keep_rate_warms_up_during_training(stripes, tmp_path):
    from adatok.train.config import load_run_config
    from adatok.train.tasks import get_task

    cfg = load_run_config(recipe(tmp_path / "w", stripes, reduction="evit", keep_rate_warmup=[2, 4],
                                 reduction_settings={"keep_rate": 0.5}))
    task = get_task("classify")(cfg, torch.device("cpu"))
    batch = {"image": torch.rand(2, 3, 32, 32), "label": torch.tensor([0, 1])}
    counts = []
    for step in (0, 2, 4, 6, 100):
        next(task.phases(batch, step, {"model": task.model}))
        counts.append(R.info(task.model).tokens[-1])
    assert counts[0] == counts[1] == 65 and counts[0] > counts[2] > counts[3] == counts[4]


def test_classify_cli_prints_top5_and_tokens_per_block(trained, stripes, capsys):
    _, exported = trained
    assert main(["classify", str(stripes / "vertical"), "--model", str(exported), "--top", "2"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.endswith("%")]
    assert len(lines) == 8 and all("horizontal" in line and "vertical" in line for line in lines)
    assert "tokens per block (imagepiece" in out and "65 in" in out
    assert main(["classify", str(stripes / "vertical"), "--model", str(exported), "--set", "keep_rate=1"]) == 0
    assert "tokens per block (imagepiece, [CLS] included; 65 in): 65 59 53 48" in capsys.readouterr().out


def test_classify_cli_with_a_timm_model_and_reduction(capsys):
    sample = str(SAMPLES / "chelsea.jpg")
    code = main(["classify", sample, "--model", "deit_tiny_patch16_224", "--reduction", "tome", "--set", "r=13"])
    out = capsys.readouterr().out
    assert code == 0 and out.count("%") == 5
    assert "tokens per block (tome, [CLS] included; 197 in): 184 171 158" in out and out.rstrip().endswith(" 41")


def test_classify_cli_errors_are_one_line(capsys):
    sample = str(SAMPLES / "chelsea.jpg")
    assert main(["classify", sample, "--model", "deit_tiny_patch16_224", "--reduction", "tome", "--set", "r=99"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("adatok: error: ToMe r=99") and "\n" not in err
    assert main(["classify", sample, "--model", "no_such_model_xyz"]) == 2
    assert "not an exported classifier folder" in capsys.readouterr().err
    assert main(["classify", sample, "--model", "imagepiece_deit_tiny", "--reduction", "none"]) == 2
    assert "LCB stem" in capsys.readouterr().err


def test_viz_merges_writes_a_png(trained, stripes, tmp_path, capsys):
    _, exported = trained
    out = tmp_path / "m.png"
    assert main(["viz", "merges", str(stripes / "vertical" / "0.png"), "--model", str(exported), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    img = Image.open(out)
    assert img.mode == "RGB" and img.width > 4 * 32 and img.height > 2 * 32  # 4 panels, 2 rows (split row)
    out2 = tmp_path / "tome.png"
    assert main(["viz", "merges", str(SAMPLES / "rocket.jpg"), "--model", "deit_tiny_patch16_224", "--reduction",
                 "tome", "--set", "r=8", "--out", str(out2)]) == 0
    assert Image.open(out2).width > 6 * 224  # 6 panels per row, 13 panels in 3 rows


def test_shipped_reduction_recipes(stripes, tmp_path):
    from adatok.train.config import load_run_config

    root = Path(__file__).parents[2] / "configs"
    # the ImageNet recipe builds the imagepiece_deit_small setting (Table 1: 197 -> 127 -> 83 -> 54 tokens)
    cfg = load_run_config(root / "classify_deit_reduction.yaml")
    import timm

    model = timm.create_model(cfg.model, pretrained=False, depth=12)
    R.apply(model, cfg.options["reduction"], **cfg.options["reduction_settings"])
    assert R.token_counts(model)[2::3] == [197, 127, 83, 54]
    assert R.settings_of(model) == R.settings_of(R.create_model("imagepiece_deit_small"))
    # the small real-data recipe runs as shipped (3 steps on tiny data)
    small = load_run_config(root / "imagepiece_fashion_mnist.yaml",
                            [f"out={tmp_path / 'fm'}", f"data.train={stripes}", "train.steps=3", "train.log_every=1",
                             "train.batch_size=8"])
    exported = run(small)
    clf = R.load_classifier(str(exported))
    assert R.settings_of(clf.model)["lcb"] and clf.classes == ["horizontal", "vertical"]
