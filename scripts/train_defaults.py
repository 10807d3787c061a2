"""Train the shipped default models on the real-photo pool, evaluate them on its held-out split,
and write them (weights + model card) into ``src/adatok/weights/``.

    adatok data photos /tmp/photos && adatok data resize /tmp/photos /tmp/pool256 --shorter-side 256
    python scripts/train_defaults.py --pool /tmp/pool256 --work runs/defaults

Stages (each skipped when its export already exists, so an interrupted run continues):
  1. maskgit_vqgan_default  configs/defaults/vqgan.yaml (trained on 32 px crops, saved for 64 px)
  2. titok_default          configs/defaults/titok.yaml (stage 1 on the VQGAN's codes)
  3. alit_default           configs/defaults/alit.yaml  (stage 1 on the VQGAN's codes)
then evaluation (PSNR / SSIM per token count on the held-out photos, 64 px center crops) and the
model cards. Stages 2 and 3 run one after the other (``--parallel`` runs them together).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "src" / "adatok" / "weights"
NAMES = {"vqgan": "maskgit_vqgan_default", "titok": "titok_default", "alit": "alit_default"}


def train(stage: str, work: Path, pool: Path, extra: list[str]) -> subprocess.Popen:
    """One stage as a subprocess; ``extra`` are ``key=value`` overrides (e.g. ``train.steps=20000``)."""
    cmd = [sys.executable, "-m", "adatok", "train", str(ROOT / "configs" / "defaults" / f"{stage}.yaml"),
           f"out={work / stage}", f"data.train={pool / 'train'}", f"data.heldout={pool / 'heldout'}", *extra]
    if stage != "vqgan":
        cmd.append(f"teacher={work / 'vqgan64'}")
    print("+", " ".join(cmd), flush=True)
    return subprocess.Popen(cmd)


def run_stages(stages: list[str], work: Path, pool: Path, parallel: bool, extra: dict) -> None:
    times = json.loads((work / "times.json").read_text()) if (work / "times.json").exists() else {}
    todo = [s for s in stages if not (work / s / "model" / "model.safetensors").exists()]
    groups = [todo] if parallel else [[s] for s in todo]
    for group in groups:
        start = time.time()
        procs = {s: train(s, work, pool, extra.get(s, [])) for s in group}
        for s, p in procs.items():
            if p.wait() != 0:
                raise SystemExit(f"stage {s} failed (exit {p.returncode}); rerun to resume it with --resume")
            times[s] = time.time() - start
        (work / "times.json").write_text(json.dumps(times, indent=2))


def resave_vqgan(work: Path) -> None:
    import adatok

    if not (work / "vqgan64" / "model.safetensors").exists():
        adatok.save(adatok.load(work / "vqgan" / "model", image_size=64), work / "vqgan64")


@torch.no_grad()
def evaluate(work: Path, pool: Path) -> dict:
    import adatok
    from adatok.data import list_image_files, load_images
    from adatok.eval.metrics import psnr, ssim

    images, paths, _ = load_images(list_image_files([pool / "heldout"]), 64)
    report = {"heldout": [p.name for p in paths]}

    def scores(recon):
        return {"psnr": float(psnr(recon, images).mean()), "ssim": float(ssim(recon, images).mean())}

    vq = adatok.load(work / "vqgan64")
    report["maskgit_vqgan_default"] = {"64 (8x8 codes)": scores(vq.reconstruct(images))}
    titok = adatok.load(work / "titok" / "model")
    report["titok_default"] = {"32": scores(titok.reconstruct(images))}
    alit = adatok.load(work / "alit" / "model", halting="threshold")
    rollout = alit.rollout(images)
    report["alit_default"] = {str(it.num_tokens): scores(it.images.clamp(0, 1)) for it in rollout.iterations}
    for t in (0.06, 0.08, 0.10):
        sel = alit.select(images, "l1", t)
        report["alit_default"][f"adaptive l1<{t}"] = {**scores(sel.images),
                                                       "mean_tokens": float(sel.tokens.lengths.float().mean())}
    return report


CARD = """# {name}

{what}

* **Data**: the real-photo pool of `adatok data photos` (Debian wallpaper / documentation photos and
  the sample images of installed wheels; licences in the pool's `LICENSES.md`), {n_train} training
  photos resized to a 256 px shorter side (`adatok data resize`), random-resized crops; evaluated on
  the {n_held} held-out photos (every 7th), 64 px center crops.
* **Recipe**: `{recipe}` — `python scripts/train_defaults.py --pool POOL --work runs/defaults`.
* **Steps**: {steps} at batch {batch}; **time**: {minutes:.0f} min on {device}.
* **Config**: {config}

## Held-out reconstruction (64 px)

| tokens | PSNR (dB) | SSIM |
|---|---|---|
{rows}

{caveat}
"""

WHAT = {
    "vqgan": "A small MaskGIT-architecture VQGAN (f8: 64 px -> 8 x 8 codes from 256), trained from scratch: "
             "the base tokenizer of titok_default and alit_default.",
    "titok": "A small two-stage TiTok: 32 1D tokens (VQ 1024 x 12, l2) predicting the 8 x 8 codes of "
             "maskgit_vqgan_default, decoded through its pixel decoder (soft codes). Stage 1 only.",
    "alit": "A small ALIT over maskgit_vqgan_default: 8, 16, 24 or 32 1D tokens per image (VQ 1024 x 12, l2), "
            "chosen per image. Stage 1 (latent distillation) only.",
}
# How the shipped weights were actually run, where it differs from one plain call of the script.
RUN_NOTES = {
    "titok": "The shipped run first trained 600 steps (schedule planned for 600), then was resumed "
             "(`--resume train.steps=2100`) to 2100 steps, the cosine schedule re-planned for 2100.",
    "alit": "The shipped run first trained 500 steps (schedule planned for 500), then was resumed "
            "(`--resume train.steps=2100`) to 2100 steps, the cosine schedule re-planned for 2100.",
}
CAVEAT = ("Trained for minutes on a 2-core CPU without perceptual or GAN losses: the reconstructions are "
          "NOT recognisable (blurry colour layouts; a flat colour comes back as a blob) and these numbers are "
          "far from the papers'. The models exist so that the library runs "
          "offline on real weights (`make demo`, tests, examples); train the recipes in `configs/` at "
          "scale for real use.")


def logged_steps_and_minutes(log: Path) -> tuple[int, float]:
    """(last step, training minutes) from a run's log.csv: each row covers the steps since the
    previous row at its ``images_per_s`` (start-up and evaluation excluded)."""
    import csv

    with log.open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("images_per_s")]
    seconds, prev = 0.0, 0
    for r in rows:
        step = int(r["step"])
        seconds += (step - prev) * _batch_of(log) / float(r["images_per_s"])
        prev = step
    return prev, seconds / 60


def _batch_of(log: Path) -> int:
    import yaml

    stage = log.parent.name
    return int(yaml.safe_load((ROOT / "configs" / "defaults" / f"{stage}.yaml").read_text())["train"]["batch_size"])


def write_cards(work: Path, pool: Path, report: dict) -> None:
    import adatok
    n_train = len(list((pool / "train").iterdir()))
    for stage, name in NAMES.items():
        src = work / ("vqgan64" if stage == "vqgan" else f"{stage}/model")
        # ALIT trains with the official random halting; it ships with the deterministic rule
        model = adatok.load(src, **({"halting": "threshold"} if stage == "alit" else {}))
        target = WEIGHTS / name
        adatok.save(model, target)
        steps, minutes = logged_steps_and_minutes(work / stage / "log.csv")
        rows = "\n".join(f"| {k} | {v['psnr']:.2f} | {v['ssim']:.3f} |"
                         + (f" (mean {v['mean_tokens']:.1f} tokens)" if "mean_tokens" in v else "")
                         for k, v in report[name].items())
        card = CARD.format(name=name, what=WHAT[stage], n_train=n_train, n_held=len(report["heldout"]),
                           recipe=f"configs/defaults/{stage}.yaml", steps=steps,
                           batch=_batch_of(work / stage / "log.csv"), minutes=minutes,
                           device="a shared 2-core x86-64 CPU (fp32)", config=f"`{model.config}`",
                           rows=rows, caveat=(RUN_NOTES.get(stage, "") + "\n\n" + CAVEAT).strip())
        (target / "MODEL_CARD.md").write_text(card)
        print(f"wrote {target} ({sum(f.stat().st_size for f in target.iterdir()) / 1e6:.1f} MB)")


def finalize(work: Path, pool: Path) -> None:
    report = evaluate(work, pool)
    (work / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    write_cards(work, pool, report)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pool", type=Path, required=True, help="the resized photo pool (train/ and heldout/)")
    p.add_argument("--work", type=Path, default=Path("runs/defaults"))
    p.add_argument("--parallel", action="store_true", help="train TiTok and ALIT at the same time")
    for stage in NAMES:
        p.add_argument(f"--{stage}", nargs="*", default=[], metavar="KEY=VALUE",
                       help=f"overrides for the {stage} recipe, e.g. train.steps=20000 train.precision=auto")
    args = p.parse_args()
    extra = {stage: getattr(args, stage) for stage in NAMES}
    args.work.mkdir(parents=True, exist_ok=True)
    run_stages(["vqgan"], args.work, args.pool, False, extra)
    resave_vqgan(args.work)
    run_stages(["titok", "alit"], args.work, args.pool, args.parallel, extra)
    finalize(args.work, args.pool)
    return 0


if __name__ == "__main__":
    sys.exit(main())
