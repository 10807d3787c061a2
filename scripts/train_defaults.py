"""Train the shipped default models on the real-photo pool, evaluate them on its held-out split,
and write them (weights + model card) into ``src/adatok/weights/``.

    adatok data photos /tmp/photos && adatok data resize /tmp/photos /tmp/pool256 --shorter-side 256
    adatok data resize /tmp/photos /tmp/pool768 --shorter-side 768
    python scripts/train_defaults.py --pool /tmp/pool256 --hires-pool /tmp/pool768 --work runs/defaults

Stages (each skipped when its export already exists, so an interrupted run continues):
  1. maskgit_vqgan_default  configs/defaults/vqgan.yaml (64 px crops of the 256 px pool), then
                            configs/defaults/vqgan_hires.yaml (fine-tuned on crops of the 768 px pool)
  2. titok_default          configs/defaults/titok.yaml (single stage, on pixels)
  3. alit_default           configs/defaults/alit.yaml (stage 1 on the VQGAN's codes), then
                            configs/defaults/alit_finetune.yaml (stage 2, on pixels)
  4. titok_prefix_default   configs/defaults/titok_prefix.yaml (tail-token drop, warm start: stage 2's TiTok)
The VQGAN's second run, TiTok and ALIT train on 64 px crops of 5-100% of each photo of the 768 px pool
(--hires-pool): on the whole photos of the 256 px pool they memorised the training photos (54-59, by the
wheels installed). Then evaluation (PSNR / SSIM per token count on the held-out crop set of the pool
evaluated: 21 crops a held-out photo at scales 1, 1/2, 1/4, adatok/eval/crops.py) and the model cards.
Stages 2 and 3 run one after the other (``--parallel`` runs them together); ``--stages`` trains only
some and ``--no-finalize`` skips the evaluation and export. The recipes train in bf16 on a GPU (most
shipped runs ran on one H100: 4-9 min each) and in fp32 on a CPU (far slower: the VQGAN's second run took
76 min, the prefix TiTok 33; ALIT's stages would take hours: scripts/gpu_retrain_alit.py sizes them to a
GPU's minutes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "src" / "adatok" / "weights"
NAMES = {"vqgan": "maskgit_vqgan_default", "titok": "titok_default", "alit": "alit_default",
         "prefix": "titok_prefix_default"}
# The runs behind each shipped model, in order; the last one's export is what ships.
RUNS = {"vqgan": ["vqgan", "vqgan_hires"], "titok": ["titok"], "alit": ["alit", "alit_finetune"], "prefix": ["titok_prefix"]}
HIRES_RUNS = ("vqgan_hires", "titok", "alit", "alit_finetune", "titok_prefix")  # trained on the --hires-pool (768 px shorter side)
TEACHER_STAGES = ("alit",)  # trained on the codes of the default VQGAN


def train(stage: str, work: Path, pools: dict, extra: dict) -> subprocess.Popen:
    """One run as a subprocess; ``extra[stage]`` are its ``key=value`` overrides (e.g. ``train.steps=20000``)."""
    pool = pools["hires" if stage in HIRES_RUNS else "main"]
    if pool is None:
        raise SystemExit(f"{stage} trains on high-resolution views: pass --hires-pool (adatok data resize PHOTOS "
                         "POOL768 --shorter-side 768)")
    cmd = [sys.executable, "-m", "adatok", "train", str(ROOT / "configs" / "defaults" / f"{stage}.yaml"),
           f"out={work / stage}", f"data.train={pool / 'train'}", f"data.heldout={pool / 'heldout'}",
           *extra.get(stage, [])]
    if stage in TEACHER_STAGES:
        cmd.append(f"teacher={shipped_run(work, 'vqgan')}")
    if stage == "alit_finetune":  # continues stage 1
        cmd.append(f"model={work / 'alit' / 'model'}")
    if stage == "vqgan_hires":  # continues the VQGAN trained on the 256 px pool
        cmd.append(f"model={work / 'vqgan' / 'model'}")
    if stage == "titok_prefix":  # starts from the TiTok this run trained
        cmd.append(f"options.warm_start={shipped_run(work, 'titok')}")
    print("+", " ".join(cmd), flush=True)
    return subprocess.Popen(cmd)


def run_stages(stages: list[str], work: Path, pools: dict, parallel: bool, extra: dict) -> None:
    def done(run: str) -> bool:
        return (work / run / "model" / "model.safetensors").exists()

    todo = [s for s in stages if not all(done(r) for r in RUNS[s])]
    groups = [todo] if parallel else [[s] for s in todo]
    for group in groups:
        start = time.time()
        # each stage's runs go one after the other; the stages of a group run side by side
        pending = {s: [r for r in RUNS[s] if not done(r)] for s in group}
        def start_next(s: str) -> tuple[str, subprocess.Popen]:
            run = pending[s].pop(0)
            return run, train(run, work, pools, extra)

        procs = {s: start_next(s) for s in group}  # stage -> (its run in progress, process)
        while procs:
            for s, (run, p) in list(procs.items()):
                if p.poll() is None:
                    continue
                if p.returncode != 0:
                    raise SystemExit(f"stage {s} failed (exit {p.returncode}); rerun to resume it with --resume")
                (work / run / "trained_on.txt").write_text(device_description())
                if pending[s]:
                    procs[s] = start_next(s)
                else:
                    del procs[s]
                    print(f"stage {s}: {(time.time() - start) / 60:.1f} min", flush=True)
            time.sleep(1)


CPU_DEVICE = "a shared 2-core x86-64 CPU (fp32)"


def device_description() -> str:
    """What a run trained on, for its model card (the recipes train in bf16 on a GPU, fp32 on a CPU)."""
    if torch.cuda.is_available():
        return f"one {torch.cuda.get_device_name()} (bf16 autocast)"
    return CPU_DEVICE


@torch.no_grad()
def evaluate(work: Path, pool: Path, stages: list[str]) -> dict:
    """PSNR / SSIM of each trained stage on the held-out crop set (adatok/eval/crops.py: 21 crops a photo at
    scales 1, 1/2, 1/4, 64 px; 21 per held-out photo), and on crops of the training photos
    (every k-th, at most ~340) to show how much of the held-out gap is memorisation. The held-out count
    follows the pool: 8 photos (168 crops) without matplotlib installed, 9 (189) with it."""
    import torch.nn.functional as F

    import adatok
    from adatok.eval.crops import heldout_crops
    from adatok.eval.metrics import psnr, ssim
    from adatok.eval.rate_distortion import round8

    images, names = heldout_crops(pool / "heldout", 64)
    train_images, _ = heldout_crops(pool / "train", 64)
    train_images = train_images[:: max(1, len(train_images) // 336)]
    photos = sorted({n.split("@")[0] for n in names})
    report = {"heldout": photos, "heldout_images": len(images), "training_images": len(train_images),
              "training photos": {}}

    def scores(recon):
        recon = round8(recon)  # as saved images are
        return {"psnr": float(psnr(recon, images).mean()), "ssim": float(ssim(recon, images).mean())}

    def thumbnail(side):  # a plain baseline for scale: area-shrink, bilinear back up
        small = F.interpolate(images, size=(side, side), mode="area")
        return F.interpolate(small, size=images.shape[-2:], mode="bilinear", align_corners=False)

    report["baselines"] = {f"{s}x{s} thumbnail": scores(thumbnail(s)) for s in (4, 8)}
    trained = {s: adatok.load(shipped_run(work, s), **({"halting": "threshold"} if s == "alit" else {}))
               for s in stages if (shipped_run(work, s) / "model.safetensors").exists()}
    for stage, model in trained.items():
        name = NAMES[stage]
        if stage == "vqgan":
            report[name] = {"64 (8x8 codes)": scores(model.reconstruct(images))}
            longest = model.reconstruct(train_images)
        elif stage == "titok":
            report[name] = {str(model.num_tokens): scores(model.reconstruct(images))}
            longest = model.reconstruct(train_images)
        else:  # adaptive: every length, then per-image selection
            sweep = model.sweep(images)
            report[name] = {str(n): scores(x) for n, x in zip(sweep.lengths, sweep.images)}
            criterion, thresholds = ("l1", (0.06, 0.08, 0.10)) if stage == "alit" else ("psnr", (22.0, 25.0, 28.0))
            for t in thresholds:
                sel = model.select(images, criterion, t)
                sign = "<" if criterion == "l1" else ">="
                report[name][f"adaptive {criterion}{sign}{t:g}"] = {
                    **scores(sel.images), "mean_tokens": float(sel.tokens.lengths.float().mean())}
            if stage == "prefix":  # the mean-PSNR optimal allocation (tokenizers/prefix/lagrangian.py)
                from adatok.tokenizers.prefix.lagrangian import select_lagrangian

                for lam in (0.05, 0.1, 0.15):
                    sel = select_lagrangian(model, images, lam)
                    report[name][f"rate-distortion lam={lam:g} dB/token"] = {
                        **scores(sel.images), "mean_tokens": float(sel.tokens.lengths.float().mean())}
            longest = model.sweep(train_images, (model.max_tokens,)).images[0]
        report["training photos"][name] = float(psnr(round8(longest), train_images).mean())
    return report


CARD = """# {name}

{what}

* **Data**: the real-photo pool of `adatok data photos` (Debian wallpaper / documentation photos and
  the sample images of installed wheels; licences in the pool's `LICENSES.md`), {n_train} training
  photos {data}; evaluated on {n_images} held-out images: 21 crops (scales 1, 1/2, 1/4; `adatok.eval.crops`)
  of each of the {n_held} held-out photos (every 7th, never trained on), 64 px.
* **Recipe**: `{recipe}` — `python scripts/train_defaults.py --pool POOL --hires-pool POOL768 --work runs/defaults`.
* **Training**: {runs}.
* **Config**: {config}

## Held-out reconstruction (64 px)

| tokens | PSNR (dB) | SSIM |
|---|---|---|
{rows}

On crops of its training photos ({n_train_images} images, the same protocol), at its longest length: {train_psnr:.2f} dB.

{caveat}
"""

WHAT = {
    "vqgan": "A small MaskGIT-architecture VQGAN (f8: 64 px -> 8 x 8 codes from 256), trained from scratch at "
             "64 px on crops of whole photos, then fine-tuned on crops of the photos at a higher resolution: the "
             "base tokenizer of ALIT (alit_default's stage 1 reads its codes).",
    "titok": "A small single-stage TiTok: 64 1D tokens (VQ 1024 x 12, l2), 128-wide 4-block ViT encoder and "
             "decoder with an RGB patch head, trained on pixels (L2).",
    "alit": "A small ALIT over maskgit_vqgan_default: 16, 32, 48 or 64 1D tokens per image (VQ 1024 x 12, l2), "
            "128-wide 4-block ViT encoder and decoder, chosen per image. Stage 1 (latent distillation on the "
            "VQGAN's codes), then stage 2 (everything, the base VQGAN included, fine-tuned on pixels with L2).",
    "prefix": "A prefix TiTok: titok_default fine-tuned with tail-token drop (One-D-Piece; FlexTok's nested "
              "dropout), so that any prefix of its 64 1D tokens (8, 16, ..., 64) decodes; the dropped tail is one "
              "learned mask token. Per-image length: `select(images, 'psnr', target)` (bisection over the lengths).",
}
# What each model trained on (the pools of the module docstring).
DATA = {
    "vqgan": "resized to a 256 px shorter side (`adatok data resize`), 64 px random-resized crops of 10-100% "
             "of each photo (run 1), then at a 768 px shorter side (`--shorter-side 768`), 64 px crops of 5-100% "
             "of each photo, each photo twice per epoch (run 2)",
    "titok": "at a 768 px shorter side (`adatok data resize --shorter-side 768`), 64 px random-resized crops "
             "of 5-100% of each photo, each photo twice per epoch (`data.repeat`)",
}
DATA["alit"] = DATA["prefix"] = DATA["titok"]
# How the shipped weights were actually run, where it differs from one plain call of the script.
RUN_NOTES = {
    "vqgan": "Run 1 (`vqgan`) is the earlier default: 10000 steps at batch 48, 5 min on one NVIDIA H100 80GB HBM3 "
             "(bf16 autocast), on the photo pool of that machine (59 training photos; its log was not kept). Run 2 "
             "(`vqgan_hires`) started from run 1's weights on the 2-core CPU (fp32); it was started as a "
             "3000-step run and shortened to the recipe's 2000 at step 250 (`--resume --allow-changes "
             "train.steps=2000`: the cosine schedule then ends at step 2000). On the held-out crops it gained "
             "0.26 dB over run 1 (22.22 -> 22.48, standard error 0.04; better on 75 % of the 189 crops) and 0.44 dB "
             "on crops of its training photos: the higher-resolution crops helped a little, and the gap between "
             "training and held-out PSNR (memorisation of a few dozen photos, even by a convolutional model) "
             "stayed. alit_default was trained over run 1 alone (its own fine-tuned copy of the base is inside "
             "its weights); `scripts/gpu_retrain_alit.py` retrains ALIT over this one. GroupNorm with 8 groups "
             "instead of the official 32 (`norm_groups`): at 32 channels, 32 groups are instance norms, and in "
             "the same run (same seed and data) the training L2 stayed about twice as high "
             "(src/adatok/pixel/layout.py). Earlier defaults, on the CPU: 14.97 dB (32 groups, 32 px crops), "
             "17.50 dB (8 groups, 2000 steps at batch 16), on one center crop per held-out photo.",
    "titok": "The shipped weights are the EMA at step 6000 of the recipe's 8000: the run shared the GPU with two "
             "others and the call's time limit stopped it; the step-6000 checkpoint was exported with "
             "`adatok train configs/defaults/titok.yaml ... train.steps=6000 --resume` (which trains no further). "
             "Earlier defaults: 19.24 dB (CPU, 3000 steps at batch 32), 20.75 dB (H100, 9000 steps at batch 48 on "
             "whole photos of the 256 px pool, 23.2 dB on its training photos).",
    "alit": "Both stages ran on one H100 as `adatok train` with exactly these configs (beside other runs). The "
            "earlier default, trained on whole photos of the 256 px pool, had memorised its 59 training photos: "
            "23.3 dB on them, 15.3-15.7 dB held out, held-out reconstructions that looked like training photos "
            "(16 tokens of 10 bits can name one of 59 images), and a stage-1 cross-entropy of 4.1 nats at every "
            "length; a further CPU stage-2 run on the 768 px crops took it to 17.0-17.3 dB. Trained on those "
            "crops from stage 1 on, the cross-entropy falls with length (3.93 / 3.55 / 3.46 / 3.45 nats at 16 / "
            "32 / 48 / 64 tokens after 2000 steps) and so does the held-out error (table). It stays below the "
            "VQGAN it decodes through (its stage 1 is far from reproducing the VQGAN's codes). Per-image "
            "lengths: use L1 < 0.06 (`make demo`'s default), not the official 0.07-0.08 — at 0.08 most photos' "
            "16-token error already meets it (mean 28 tokens in the table); at 0.06 the flat colour and the "
            "gradient of `make demo` get 16 tokens, its cat and coffee-cup photos 32, the astronaut 48. Do not use "
            "the token-space `confidence` criterion with it: stage 2 trains the soft codes on pixels only, and its "
            "decoder no longer predicts the base codes (held out, mean p(code) 0.004-0.005, chance 1/256, top-1 "
            "0.4-1.0 %; after stage 1: 0.042-0.055 and 7-11 %); stage 2 with `options.code_weight` > 0 keeps "
            "them, and was not used for this model.",
}
RUN_NOTES["prefix"] = (
    "Trained on the 2-core CPU (this recipe as is: 3000 steps, about 30 min). Per-image lengths: a quality target "
    "(`select(x, 'psnr', t)`) equalises quality, so the length follows image complexity (rank correlation with the "
    "PNG size in README \"Prefix tokenizers\"), but at the same mean length its mean PSNR is below a fixed length "
    "(cluttered images take many tokens that buy little); the rate-distortion rows "
    "(`adatok.tokenizers.prefix.lagrangian.select_lagrangian`) maximise the mean PSNR instead and beat the fixed "
    "length. The 64-token PSNR is below titok_default's, whose weights it starts from: part of the capacity now "
    "serves the short prefixes.")
CAVEAT = ("Small 64 px models trained for minutes on {n_train} photos, without perceptual or GAN losses: "
          "reconstructions are blurry; they keep each photo's layout and colours, not its fine detail, and these "
          "numbers are far from the papers' (256 px, ImageNet-scale training). For scale: shrinking the held-out "
          "photos to 8 x 8 pixels and back gives {thumb8:.1f} dB, to 4 x 4 {thumb4:.1f} dB. The models exist so "
          "that the library runs offline on real weights (`make demo`, tests, examples); train the recipes in "
          "`configs/` at scale for real use.")


def logged_steps_and_minutes(log: Path) -> tuple[int, float]:
    """(last step, training minutes) from a run's log.csv: each row covers the steps since the
    previous row at its ``images_per_s`` (start-up and evaluation excluded)."""
    import csv

    with log.open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("images_per_s")]
    seconds, prev, batch = 0.0, 0, _batch_of(log)
    for r in rows:
        step = int(r["step"])
        seconds += (step - prev) * batch / float(r["images_per_s"])
        prev = step
    return prev, seconds / 60


def _batch_of(log: Path) -> int:
    """The run's batch size: from its ``run.yaml`` (the resolved recipe every run writes), else its recipe."""
    import yaml

    recorded = log.parent / "run.yaml"
    recipe = recorded if recorded.exists() else ROOT / "configs" / "defaults" / f"{log.parent.name}.yaml"
    return int(yaml.safe_load(recipe.read_text())["train"]["batch_size"])


def shipped_run(work: Path, stage: str) -> Path:
    """The export that ships for a stage: its last run's model."""
    return work / RUNS[stage][-1] / "model"


def write_cards(work: Path, pool: Path, report: dict, export_to: Path) -> None:
    import adatok
    n_train = len(list((pool / "train").iterdir()))
    for stage, name in NAMES.items():
        if name not in report:
            continue
        # ALIT trains with the official random halting; it ships with the deterministic rule
        model = adatok.load(shipped_run(work, stage), **({"halting": "threshold"} if stage == "alit" else {}))
        target = export_to / name
        adatok.save(model, target)
        runs = []
        for run in RUNS[stage]:
            if not (work / run / "log.csv").exists():  # a run done elsewhere (RUN_NOTES says what it was)
                runs.append(f"`{run}` (its log is not in this work folder)")
                continue
            steps, minutes = logged_steps_and_minutes(work / run / "log.csv")
            device = work / run / "trained_on.txt"
            runs.append(f"`{run}` {steps} steps at batch {_batch_of(work / run / 'log.csv')}, {minutes:.0f} min on "
                        + (device.read_text() if device.exists() else CPU_DEVICE))
        rows = "\n".join(f"| {k}" + (f" (mean {v['mean_tokens']:.1f} tokens)" if "mean_tokens" in v else "")
                         + f" | {v['psnr']:.2f} | {v['ssim']:.3f} |" for k, v in report[name].items())
        card = CARD.format(name=name, what=WHAT[stage], n_train=n_train, n_held=len(report["heldout"]),
                           n_images=report["heldout_images"], n_train_images=report["training_images"],
                           data=DATA[stage], train_psnr=report["training photos"][name],
                           recipe=", then ".join(f"configs/defaults/{run}.yaml" for run in RUNS[stage]),
                           runs="; ".join(runs), config=f"`{model.config}`",
                           rows=rows, caveat=(RUN_NOTES.get(stage, "") + "\n\n" + CAVEAT.format(
                               n_train=n_train, thumb8=report["baselines"]["8x8 thumbnail"]["psnr"],
                               thumb4=report["baselines"]["4x4 thumbnail"]["psnr"])).strip())
        (target / "MODEL_CARD.md").write_text(card)
        print(f"wrote {target} ({sum(f.stat().st_size for f in target.iterdir()) / 1e6:.1f} MB)")


RD_HEADING = "## Rate–distortion (held-out)"


def rate_distortion_section(folder: Path, pool: Path, max_images: Optional[int] = None) -> str:
    """The card's rate–distortion table on the held-out crops (docs/rate_distortion.md's protocol):
    every length (or the one fixed length) and the per-image selections, with bits per image
    (tokens x log2 codebook, + log2 of the number of lengths for a per-image choice), bits per pixel,
    PSNR / SSIM of the 8-bit reconstructions, and an RGB thumbnail of the same bytes."""
    import adatok
    from adatok.eval.baselines import same_bytes_thumbnails
    from adatok.eval.crops import heldout_crops
    from adatok.eval.rate_distortion import rate_distortion

    name = folder.name
    model = adatok.load(folder)
    images, names = heldout_crops(pool / "heldout", model.image_size)
    images, names = images[:max_images], names[:max_images]  # max_images: quick runs (tests) only
    targets = (20.0, 22.0, 24.0)
    prefix = type(model).__name__ == "PrefixTiTok"
    sweep = rate_distortion(model, images, method=name, psnr_targets=targets,
                            lambdas=(0.05, 0.1, 0.15) if prefix else None, preview=0)
    thumbs = same_bytes_thumbnails(images, [q.bits / 8 for q in sweep.points])
    rows = []
    for q, (side, thumb_psnr) in zip(sweep.points, thumbs):
        thumb = f"{thumb_psnr:.2f} ({side}x{side})" if side else "–"
        rows.append(f"| {q.label} | {q.tokens:.1f} | {q.bits:.0f} | {q.bpp:.4f} | {q.psnr:.2f} | {q.ssim:.3f} | {thumb} |")
    return (f"{RD_HEADING}\n\n`adatok.eval.rate_distortion` on the {len(images)} held-out crops of "
            f"{len({n.split('@')[0] for n in names})} photos ({model.image_size} px). Bits = tokens x log2({model.codebook_size}), "
            "plus log2 of the number of allowed lengths for a per-image choice; the thumbnail is the "
            "largest square RGB image of at most the same bytes (area down, bicubic up; "
            "`adatok.eval.baselines`). This is the multi-scale crop set of README and "
            "`benchmarks/adaptive_heldout.py`; a table above measured on one center crop per photo is not "
            "comparable with it.\n\n| point | tokens | bits/image | bits/pixel | PSNR (dB) | SSIM | "
            "same-bytes thumbnail PSNR |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


def update_rate_distortion_cards(pool: Path, export_to: Path, max_images: Optional[int] = None) -> None:
    """Write (or replace) the rate–distortion section of every shipped card in ``export_to``."""
    for name in NAMES.values():
        card = export_to / name / "MODEL_CARD.md"
        if not card.exists():
            continue
        text = card.read_text()
        text = text.split(RD_HEADING)[0].rstrip("\n") + "\n\n" + rate_distortion_section(card.parent, pool, max_images)
        card.write_text(text)
        print(f"wrote the rate–distortion table of {card}", flush=True)


def finalize(work: Path, pool: Path, export_to: Path, stages: list[str], rd_max_images: Optional[int] = None) -> None:
    report = evaluate(work, pool, stages)
    (work / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    write_cards(work, pool, report, export_to)
    update_rate_distortion_cards(pool, export_to, rd_max_images)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pool", type=Path, required=True, help="the resized photo pool (train/ and heldout/)")
    p.add_argument("--work", type=Path, default=Path("runs/defaults"))
    p.add_argument("--hires-pool", type=Path, help="the same photos at a 768 px shorter side "
                   "(TiTok and ALIT train on its crops)")
    p.add_argument("--parallel", action="store_true", help="train TiTok and ALIT at the same time")
    p.add_argument("--stages", nargs="*", choices=list(RUNS), help="train only these (default: all; ALIT needs "
                   "the VQGAN's export in WORK)")
    p.add_argument("--no-finalize", action="store_true", help="train only: no evaluation, no export into the package")
    p.add_argument("--rd-cards", action="store_true", help="only (re)write the rate–distortion tables of the cards "
                   "in --export-to, on the held-out crops of --hires-pool (or --pool); nothing is trained")
    p.add_argument("--rd-max-images", type=int, help="the rate–distortion tables on the first N held-out crops only "
                   "(quick runs; the shipped cards use all)")
    p.add_argument("--export-to", type=Path, default=WEIGHTS, help="where the models and cards go (default: the "
                   "package's adatok/weights/, which adatok.load('titok_default') reads)")
    runs = [r for stage_runs in RUNS.values() for r in stage_runs]
    for run in runs:
        p.add_argument(f"--{run}", nargs="*", default=[], metavar="KEY=VALUE",
                       help=f"overrides for configs/defaults/{run}.yaml, e.g. train.steps=20000 train.precision=auto")
    args = p.parse_args()
    extra = {run: getattr(args, run) for run in runs}
    if args.rd_cards:
        update_rate_distortion_cards(args.hires_pool or args.pool, args.export_to, args.rd_max_images)
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    stages = args.stages or list(RUNS)
    pools = {"main": args.pool, "hires": args.hires_pool}
    if "vqgan" in stages:
        run_stages(["vqgan"], args.work, pools, False, extra)
    run_stages([s for s in ("titok", "alit") if s in stages], args.work, pools, args.parallel, extra)
    if "prefix" in stages:
        run_stages(["prefix"], args.work, pools, False, extra)
    if not args.no_finalize:
        finalize(args.work, args.hires_pool or args.pool, args.export_to, stages, args.rd_max_images)
    return 0


if __name__ == "__main__":
    sys.exit(main())
