"""scripts/train_defaults.py end to end at toy length: the six default runs, evaluation, export, cards."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import adatok

ROOT = Path(__file__).parents[2]
SRC = str(Path(adatok.__file__).parents[1])
TOY = ["train.steps=2", "train.batch_size=4", "train.log_every=1", "train.ckpt_every=2", "train.precision=fp32",
       "data.workers=0"]


def digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.safetensors"))}


def test_train_defaults_trains_evaluates_and_exports_where_told(photos, tmp_path):
    pool = tmp_path / "pool"
    shutil.copytree(photos, pool / "train")
    (pool / "heldout").mkdir()
    for p in sorted((pool / "train").glob("copy_*"))[:2]:
        shutil.move(p, pool / "heldout" / p.name)
    shipped = digest(adatok.hub.BUNDLED_DIR)
    work, export = tmp_path / "work", tmp_path / "export"
    cmd = [sys.executable, str(ROOT / "scripts" / "train_defaults.py"), "--pool", str(pool), "--hires-pool", str(pool),
           "--work", str(work), "--export-to", str(export), "--rd-max-images", "6"]
    for run in ("vqgan", "vqgan_hires", "titok", "alit", "alit_finetune", "titok_prefix"):
        cmd += [f"--{run}", *TOY]
    env = dict(os.environ, PYTHONPATH=SRC, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    assert digest(adatok.hub.BUNDLED_DIR) == shipped  # the package's weights are untouched
    report = json.loads((work / "report.json").read_text())
    # the held-out set: 21 crops of each held-out photo
    assert len(report["heldout"]) == 2 and report["heldout_images"] == 42
    assert set(report["training photos"]) == {"maskgit_vqgan_default", "titok_default", "alit_default",
                                              "titok_prefix_default"}
    assert set(report["titok_prefix_default"]) >= {"8", "64", "adaptive psnr>=25"}
    assert set(report["alit_default"]) >= {"16", "32", "48", "64", "adaptive l1<0.06"}
    for name in ("maskgit_vqgan_default", "titok_default", "alit_default", "titok_prefix_default"):
        card = (export / name / "MODEL_CARD.md").read_text()
        assert "| PSNR (dB) |" in card and "On crops of its training photos" in card and "42 held-out images" in card
        rd = card.split("## Rate–distortion (held-out)")[1]  # bits, bits/pixel and the same-bytes thumbnail
        assert "on the 6 held-out crops of 1 photos" in rd and "| same-bytes thumbnail PSNR |" in rd
        assert rd.count("\n| ") >= 2
        assert adatok.load(export / name).config.__class__ is adatok.get_config(name).__class__
    card = (export / "alit_default" / "MODEL_CARD.md").read_text()
    # each run's steps and batch come from its log and its recorded run.yaml, not the recipe's 2000 at 96
    assert "`alit` 2 steps at batch 4" in card and "`alit_finetune` 2 steps at batch 4" in card
    assert adatok.load(export / "alit_default").config.halting == "threshold"
    # the VQGAN's second run continues its first (on the high-resolution pool); the card lists both
    card = (export / "maskgit_vqgan_default" / "MODEL_CARD.md").read_text()
    assert "`vqgan` 2 steps at batch 4" in card and "`vqgan_hires` 2 steps at batch 4" in card
    assert "configs/defaults/vqgan.yaml, then configs/defaults/vqgan_hires.yaml" in card
    # the ALIT runs trained on the shipped VQGAN's codes (its last run): its base is that VQGAN (stage 1 freezes it)
    from safetensors.torch import load_file

    vq = load_file(str(work / "vqgan_hires" / "model" / "model.safetensors"))
    first = load_file(str(work / "vqgan" / "model" / "model.safetensors"))
    assert any((first[k] != v).any() for k, v in vq.items())  # it trained on from the first run's weights
    stage1 = load_file(str(work / "alit" / "model" / "model.safetensors"))
    assert all((stage1[f"base.{k}"] == v).all() for k, v in vq.items())
