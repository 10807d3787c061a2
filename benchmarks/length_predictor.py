"""Prefix TiTok's learned length predictor: fitted on training photos, measured on held-out ones.

The prefix tokenizer (``adatok.tokenizers.prefix``) picks a per-image length with ``select(x, "psnr",
t)``: encode once, then a bisection over the allowed lengths (``ceil(log2(T + 1))`` batched decodes).
Its length predictor (``predict_lengths``, a small head on the encoder output; a KARL/STAT-style single
pass) guesses that choice with no decode at all. This script

1. fits the head of ``--model`` (default the shipped ``titok_prefix_default``) in memory with
   ``prefix.model.fit_length_predictor`` on the multi-scale crops (``adatok.eval.crops``) of the
   TRAINING photos (``--train``), criterion ``psnr``, at every threshold of ``--thresholds``;
   nothing is written to the model's files;
2. on the crops of the HELD-OUT photos (``--heldout``), per threshold: how often the predicted length
   equals ``select``'s choice, how often it is within one step, the mean tokens predicted vs chosen,
   the mean PSNR at the predicted vs the chosen lengths (the quality cost of not decoding), the share
   of images meeting the target either way, and a constant baseline (every image gets the length the
   criterion chose most often on the training crops) so that "agreement" can be read against chance,
   and a one-number baseline (``tv-knn``: each held-out crop gets the median choice of the 32 training
   crops closest in mean absolute neighbour difference, a crude complexity measure, no network);
3. times ``predict_lengths`` vs ``select`` (and ``select(..., predictor=True)``, which adds the one
   decode of the predicted length) on the held-out crops with the shared protocol
   (``common.interleave``: warm-up, alternating rounds, medians).

    PYTHONPATH=src python benchmarks/length_predictor.py --train /work/pool768/train \\
        --heldout /work/pool768/heldout --json out/length_predictor.json
    PYTHONPATH=src python benchmarks/length_predictor.py --model prefix_tiny --quick   # smoke run, seconds

PSNR is of the reconstructions a user gets (clamped to [0, 1]); the criterion itself scores the
unclamped decode, as ``select`` does, so an image can be "met" by the criterion and sit a hair below
the target here.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import PROTOCOL, device_name, fmt, format_table, interleave, write_json  # noqa: E402

import adatok  # noqa: E402
from adatok.errors import AdatokError  # noqa: E402
from adatok.eval.crops import heldout_crops  # noqa: E402
from adatok.tokenizers.prefix import PrefixTiTok  # noqa: E402
from adatok.tokenizers.prefix.lagrangian import per_image_psnr  # noqa: E402
from adatok.tokenizers.prefix.model import (  # noqa: E402
    criterion_errors, exhaustive_choice, fit_length_predictor, met_matrix)


def load_model(name: str) -> PrefixTiTok:
    try:
        model = adatok.load(name)
    except AdatokError:
        if name not in adatok.list_models():
            raise
        print(f"note: no weights for {name}; using it randomly initialised (seed 0)")
        torch.manual_seed(0)
        model = adatok.create_model(name)
    if not isinstance(model, PrefixTiTok):
        raise SystemExit(f"error: --model {name}: not a prefix tokenizer (got {type(model).__name__})")
    return model.eval()


def synthetic_crops(n: int, size: int, seed: int) -> torch.Tensor:
    """Smooth random images (low-resolution noise upsampled) for ``--quick`` without photo folders."""
    g = torch.Generator().manual_seed(seed)
    side = torch.randint(2, 9, (n,), generator=g)
    out = [torch.nn.functional.interpolate(torch.rand(1, 3, int(s), int(s), generator=g), size=(size, size),
                                           mode="bilinear", align_corners=False)[0] for s in side]
    return torch.stack(out).clamp(0, 1)


@torch.no_grad()
def psnr_table(model: PrefixTiTok, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """PSNR (dB) of every image at every allowed length, ``N x T`` (clamped reconstructions)."""
    rows = []
    for i in range(0, images.shape[0], batch):
        x = images[i:i + batch]
        rows.append(per_image_psnr(model.sweep(x).images, x).T)
    return torch.cat(rows)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of vertical plus horizontal pixel neighbours, per image (``B``)."""
    return ((images[..., 1:, :] - images[..., :-1, :]).abs().mean((1, 2, 3))
            + (images[..., 1:] - images[..., :-1]).abs().mean((1, 2, 3)))


def knn_choice(train_feature: torch.Tensor, train_choice: torch.Tensor, feature: torch.Tensor, k: int = 32):
    """Per image, the median (lower) training choice among the ``k`` training images nearest in the
    1-D ``feature``."""
    k = min(k, len(train_feature))
    near = (feature[:, None] - train_feature[None]).abs().topk(k, dim=1, largest=False).indices
    return train_choice[near].median(dim=1).values


def evaluate(model: PrefixTiTok, images: torch.Tensor, psnr: torch.Tensor, thresholds, majority: dict,
             knn: dict) -> list:
    """Per threshold: the predictor against ``select``'s choice on ``images`` (one row each);
    ``majority`` / ``knn``: the two baselines' choices (index per threshold / per image)."""
    allowed = torch.tensor(model.allowed_lengths)
    rows = []
    with torch.no_grad():
        tokens = model._encode(images)[0]
        for t in thresholds:
            chosen_len = model.select(images, "psnr", t, return_images=False).tokens.lengths.cpu()
            chosen = torch.searchsorted(allowed, chosen_len)
            pred = model.predict_lengths(images, t, tokens=tokens).cpu()
            ar = torch.arange(len(images))
            p_pred, p_chosen = psnr[ar, pred], psnr[ar, chosen]
            const = torch.full_like(chosen, majority[t])
            near = knn[t]
            rows.append({
                "threshold_db": t, "images": len(images),
                "exact": float((pred == chosen).float().mean()),
                "within_one_step": float(((pred - chosen).abs() <= 1).float().mean()),
                "baseline_exact": float((const == chosen).float().mean()),
                "baseline_within_one_step": float(((const - chosen).abs() <= 1).float().mean()),
                "baseline_length": int(allowed[majority[t]]),
                "tv_knn_exact": float((near == chosen).float().mean()),
                "tv_knn_within_one_step": float(((near - chosen).abs() <= 1).float().mean()),
                "tv_knn_tokens": float(allowed[near].float().mean()),
                "tokens_predicted": float(allowed[pred].float().mean()),
                "tokens_chosen": float(chosen_len.float().mean()),
                "shorter": float((pred < chosen).float().mean()), "longer": float((pred > chosen).float().mean()),
                "psnr_predicted": float(p_pred.mean()), "psnr_chosen": float(p_chosen.mean()),
                "met_predicted": float((p_pred >= t).float().mean()),
                "met_chosen": float((p_chosen >= t).float().mean()),
                "chosen_histogram": torch.bincount(chosen, minlength=len(allowed)).tolist(),
                "predicted_histogram": torch.bincount(pred, minlength=len(allowed)).tolist(),
            })
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="titok_prefix_default", help="a prefix tokenizer (preset/folder/file)")
    p.add_argument("--train", help="folder of TRAINING photos (the head is fitted on their crops)")
    p.add_argument("--heldout", help="folder of HELD-OUT photos (evaluation only)")
    p.add_argument("--thresholds", default="20,21,22,23,24", help="PSNR targets in dB, fitted and evaluated")
    p.add_argument("--steps", type=int, default=2000, help="predictor training steps")
    p.add_argument("--batch", type=int, default=256, help="predictor training batch")
    p.add_argument("--max-train-crops", type=int, default=0, help="subsample the training crops (0 = all)")
    p.add_argument("--rounds", type=int, default=3, help="timing rounds")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: synthetic images, 100 steps, 1 round")
    p.add_argument("--json", metavar="OUT", help="write every number (and the timing samples) as JSON")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    if args.quick:
        args.steps, args.rounds = min(args.steps, 100), 1
    t_start = time.perf_counter()
    model = load_model(args.model)
    size = model.image_size
    if args.quick and not (args.train and args.heldout):
        train_x, held_x = synthetic_crops(64, size, 1), synthetic_crops(32, size, 2)
        train_desc, held_desc = "64 synthetic smooth images", "32 synthetic smooth images"
    else:
        if not (args.train and args.heldout):
            raise SystemExit("error: give --train DIR and --heldout DIR (photo folders), or --quick")
        train_x, train_names = heldout_crops(args.train, size)
        held_x, held_names = heldout_crops(args.heldout, size)
        n_train_photos = len({n.split("@")[0] for n in train_names})
        n_held_photos = len({n.split("@")[0] for n in held_names})
        if args.max_train_crops and args.max_train_crops < len(train_x):
            keep = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(args.seed))
            train_x = train_x[keep[:args.max_train_crops].sort().values]
        train_desc = f"{len(train_x)} crops of {n_train_photos} photos in {args.train}"
        held_desc = f"{len(held_x)} crops of {n_held_photos} photos in {args.heldout}"
    print(f"model {args.model}: lengths {list(model.allowed_lengths)}, {size} px")
    print(f"fit on {train_desc}; evaluate on {held_desc}")

    t0 = time.perf_counter()
    train_err = criterion_errors(model, train_x, "psnr")
    sweep_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    fit = fit_length_predictor(model, train_x, "psnr", thresholds, steps=args.steps, batch=args.batch,
                               seed=args.seed, errors=train_err)
    fit_s = time.perf_counter() - t0
    print(f"training sweep {sweep_s:.1f} s, fit {args.steps} steps {fit_s:.1f} s: final BCE {fit['loss']:.4f}, "
          f"exact agreement on the training crops {fit['agreement']:.1%} (mean over thresholds)")
    allowed = torch.tensor(model.allowed_lengths)
    majority, knn, train_tokens = {}, {}, {}
    f_train, f_held = total_variation(train_x), total_variation(held_x)
    for t in thresholds:  # the baselines, from the training crops' choices (the exhaustive rule)
        choice = exhaustive_choice(train_err, met_matrix(train_err, model.allowed_lengths, "psnr", t))
        majority[t] = int(torch.bincount(choice, minlength=len(model.allowed_lengths)).argmax())
        knn[t] = knn_choice(f_train, choice, f_held)
        train_tokens[t] = float(allowed[choice].float().mean())

    held_psnr = psnr_table(model, held_x)
    rows = evaluate(model, held_x, held_psnr, thresholds, majority, knn)
    for r in rows:
        r["tokens_chosen_train_crops"] = train_tokens[r["threshold_db"]]
    table = [[f"{r['threshold_db']:g}", f"{r['exact']:.0%}", f"{r['within_one_step']:.0%}",
              f"{r['baseline_exact']:.0%} / {r['baseline_within_one_step']:.0%} ({r['baseline_length']})",
              f"{r['tv_knn_exact']:.0%} / {r['tv_knn_within_one_step']:.0%}",
              f"{r['tokens_predicted']:.1f}", f"{r['tokens_chosen']:.1f}", f"{r['tokens_chosen_train_crops']:.1f}",
              f"{r['psnr_predicted']:.2f}",
              f"{r['psnr_chosen']:.2f}", f"{r['met_predicted']:.0%}", f"{r['met_chosen']:.0%}"] for r in rows]
    headers = ["target dB", "exact", "+-1 step", "constant exact / +-1 (len)", "tv-knn exact / +-1", "tokens pred",
               "tokens chosen", "chosen on train crops", "PSNR pred", "PSNR chosen", "met pred", "met chosen"]
    print(format_table(headers, table))

    t_mid = thresholds[len(thresholds) // 2]
    paths = {
        "predict_lengths": lambda: model.predict_lengths(held_x, t_mid),
        "select(predictor=True)": lambda: model.select(held_x, "psnr", t_mid, predictor=True, return_images=False),
        "select (bisection)": lambda: model.select(held_x, "psnr", t_mid, return_images=False),
    }
    with torch.inference_mode():
        timed = interleave(paths, torch.device("cpu"), rounds=args.rounds, warmup=1)
    ref = timed["select (bisection)"]
    trows = [[n, fmt(t.median * 1e3), f"{fmt(t.min * 1e3)}-{fmt(t.max * 1e3)}", fmt(t.cpu_median * 1e3),
              f"{ref.median / t.median:.1f}x"] for n, t in timed.items()]
    print(f"timing ({len(held_x)} held-out crops in one batch, target {t_mid:g} dB, "
          f"{torch.get_num_threads()} thread(s), {args.rounds} rounds): {PROTOCOL}")
    print(format_table(["path", "median ms", "min-max ms", "CPU ms", "vs select"], trows))
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{when}; {device_name(torch.device('cpu'))}; torch {torch.__version__}; "
          f"total {time.perf_counter() - t_start:.0f} s")
    if args.json:
        payload = {"date": when, "device": device_name(torch.device("cpu")), "threads": torch.get_num_threads(),
                   "torch": torch.__version__, "model": args.model, "allowed_lengths": list(model.allowed_lengths),
                   "train": train_desc, "heldout": held_desc, "thresholds": thresholds, "steps": args.steps,
                   "batch": args.batch, "fit": {**fit, "sweep_s": sweep_s, "fit_s": fit_s},
                   "rows": rows, "timing_threshold_db": t_mid,
                   "timings": {n: t.summary() for n, t in timed.items()}}
        print(f"wrote {write_json(args.json, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
