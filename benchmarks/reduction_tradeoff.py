#!/usr/bin/env python
"""Accuracy / throughput trade-off of plain vs ToMe vs EViT vs ImagePiece on real data (Fashion-MNIST).

Trains the small recipe ``configs/imagepiece_fashion_mnist.yaml`` four times through the shared
training loop (``adatok.train.run``, the same code as ``adatok train``), from scratch on the same
data, steps and seed: plain, ToMe, EViT and ImagePiece (each with its reduction on during training;
pruning keep rates warmed up EViT-style), then evaluates each export on the 10k test images: top-1
accuracy, images/s (best of ``--repeats`` interleaved passes over the test set, batch
``--batch-size``), images per CPU-second, tokens after each block and GFLOP per image. Rows marked
"off-the-shelf" apply a reduction at test time to the plain model without training it.

    python scripts/fashion_mnist.py data/fashion_mnist
    PYTHONPATH=src python benchmarks/reduction_tradeoff.py --data data/fashion_mnist --out runs/fmnist
    PYTHONPATH=src python benchmarks/reduction_tradeoff.py --data data/fashion_mnist --out runs/fmnist --eval-only

Training settings per method (all at about the same compute, ~42-47 tokens per block on average):
ToMe r=5 (65 -> 25 tokens), EViT keep 0.7 at blocks 2/4/6 with the fused token, ImagePiece keep 0.7
at blocks 2/4/6 with the LCB stem (the Table-1 setting at depth 8).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
try:
    import adatok  # noqa: F401,E402
except ImportError:
    sys.path.insert(0, str(_HERE.parent / "src"))

import torch  # noqa: E402

import adatok.reduction as R  # noqa: E402
from common import count_flops, cpu_busy_fraction, environment, format_table  # noqa: E402

RECIPE = _HERE.parent / "configs" / "imagepiece_fashion_mnist.yaml"
# run name: overrides of the recipe
RUNS = {
    "plain": ["options.reduction="],
    "tome": ["options.reduction=tome", "options.reduction_settings={r: 5}"],
    "evit": ["options.reduction=evit", "options.reduction_settings={keep_rate: 0.7, fuse_token: true}"],
    "imagepiece": [],  # the recipe itself: ImagePiece, keep 0.7, LCB stem
}
# off-the-shelf rows: a reduction applied to the trained plain model at test time
OFF_THE_SHELF = {"tome r=5": ("tome", {"r": 5}), "evit 0.7": ("evit", {"keep_rate": 0.7}),
                 "imagepiece 0.7 (no LCB)": ("imagepiece", {"keep_rate": 0.7})}


def train_all(args) -> None:
    from adatok.train import run
    from adatok.train.config import load_run_config

    for name in args.runs:
        out = args.out / name
        if (out / "model" / "config.json").exists():
            print(f"{name}: already trained ({out / 'model'})")
            continue
        overrides = [f"out={out}", f"data.train={args.data / 'train'}", *RUNS[name], *args.override]
        cfg = load_run_config(RECIPE, overrides)
        t0 = time.perf_counter()
        print(f"== training {name}: {' '.join(RUNS[name]) or '(recipe as is)'}", flush=True)
        run(cfg)
        print(f"   {name}: {time.perf_counter() - t0:.0f} s", flush=True)


def load_test(folder: Path, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from adatok.data.images import load_image

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((folder / name).glob("*.png")):
            images.append(load_image(path, size))
            labels.append(label)
    return torch.stack(images), torch.tensor(labels)


def evaluate(models: dict, images: torch.Tensor, labels: torch.Tensor, args) -> list:
    """Accuracy, then throughput with interleaved timed passes over the test set."""
    rows = []
    batches = list(zip(images.split(args.batch_size), labels.split(args.batch_size)))
    times = {k: [] for k in models}
    cpu = {k: [] for k in models}
    with torch.inference_mode():
        for name, model in models.items():
            correct = sum(int((model(x).argmax(-1) == y).sum()) for x, y in batches)
            rows.append({"name": name, "accuracy": 100.0 * correct / len(labels),
                         "tokens": R.info(model).tokens if R.is_patched(model) else None})
        for _ in range(args.repeats):
            for name, model in models.items():
                c0, t0 = time.process_time(), time.perf_counter()
                for x, _ in batches[: args.timed_batches]:
                    model(x)
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    n = sum(len(x) for x, _ in batches[: args.timed_batches])
    for row in rows:
        row["images_per_s"] = n / min(times[row["name"]])
        row["images_per_cpu_s"] = n / min(cpu[row["name"]])
    return rows


def mean_tokens(model) -> torch.Tensor:
    """Per image of the last forward: the mean over blocks of the tokens each block's MLP ran on (the
    per-image compute); fixed-count methods give every image the same."""
    info = R.info(model)
    if info.block_lengths:
        return torch.stack(info.block_lengths, 1).float().mean(1)
    return torch.full((info.size.shape[0],), sum(info.tokens) / len(info.tokens))


def sweep_configs(plain: torch.nn.Module, args) -> dict:
    """name -> (kind, settings) of the sweep's fixed-count and per-image (threshold) rows for ``args.method``."""
    from adatok.reduction.tome import ToMeReducer

    depth, n = len(plain.blocks), plain.patch_embed.num_patches
    configs = {}
    if args.method == "tome":
        rs = args.fixed_rs or list(range(1, ToMeReducer._max_constant_r(depth, n) + 1))
        configs.update({f"tome r={r}": ("fixed", {"r": r}) for r in rs})
        for t in args.thresholds:
            configs[f"tome threshold {t:g} (cap {args.cap}, floor {args.floor})"] = (
                "threshold", {"r": args.cap, "threshold": t, "min_tokens": args.floor})
        return configs
    extra = {"merge_threshold": args.merge_threshold} if args.method == "imagepiece" and args.merge_threshold else {}
    configs.update({f"{args.method} keep {k:g}": ("fixed", {"keep_rate": k}) for k in args.fixed_keep_rates})
    for t in args.thresholds:
        configs[f"{args.method} threshold {t:g} (cap keep {args.keep_cap:g}, floor {args.floor})"] = (
            "threshold", {"keep_rate": args.keep_cap, "threshold": t, "min_tokens": args.floor, **extra})
    return configs


def threshold_sweep(plain: torch.nn.Module, images, labels, args) -> list:
    """Per-image (threshold) vs fixed-count ToMe / EViT / ImagePiece (``args.method``) applied to the plain
    model: accuracy (unless ``args.random_init``: meaningless on random weights) and mean tokens on the
    whole test set, throughput (shared protocol) on the first timed batches."""
    from common import interleave

    n = plain.patch_embed.num_patches
    configs = sweep_configs(plain, args)
    batches = list(zip(images.split(args.batch_size), labels.split(args.batch_size)))
    models, rows = {"plain": plain}, []
    for name, (_, settings) in configs.items():
        models[name] = R.apply(copy.deepcopy(plain), args.method, **settings)
    with torch.inference_mode():
        for name, model in models.items():
            correct, toks = 0, []
            for x, y in batches:
                correct += int((model(x).argmax(-1) == y).sum())
                toks.append(mean_tokens(model) if R.is_patched(model) else torch.full((len(x),), float(n + 1)))
            toks = torch.cat(toks)
            kind, settings = configs.get(name, ("plain", {}))
            accuracy = None if args.random_init else 100.0 * correct / len(labels)
            rows.append({"name": name, "kind": kind, "settings": settings, "accuracy": accuracy,
                         "mean_tokens": float(toks.mean()), "tokens_p10": float(toks.quantile(0.1)),
                         "tokens_p90": float(toks.quantile(0.9))})
            print(f"  {name}: top-1 {_pct(rows[-1]['accuracy'])} %, mean tokens {rows[-1]['mean_tokens']:.1f}",
                  flush=True)
        timed_batches = batches[: args.timed_batches]

        def pass_of(model):
            return lambda: [model(x) for x, _ in timed_batches]
        timed = interleave({k: pass_of(m) for k, m in models.items()}, "cpu", rounds=args.repeats, warmup=1,
                           max_calls=1)
    count = sum(len(x) for x, _ in timed_batches)
    for row in rows:
        t = timed[row["name"]]
        row.update(images_per_s=count / t.median, images_per_cpu_s=count / t.cpu_median,
                   timing=t.summary())
    return rows


def _pct(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_sweep(rows: list) -> None:
    plain = next(r for r in rows if r["name"] == "plain")
    fixed = [r for r in rows if r["kind"] == "fixed"]
    table = []
    for r in rows:
        near = ""
        if r["kind"] == "threshold" and fixed:
            f = min(fixed, key=lambda q: abs(q["mean_tokens"] - r["mean_tokens"]))
            near = (f"{f['name']}: {_pct(f['accuracy'])} % at {f['mean_tokens']:.1f} tokens, "
                    f"{f['images_per_s']:.0f} img/s")
        table.append([r["name"], _pct(r["accuracy"]), f"{r['mean_tokens']:.1f}",
                      f"{r['tokens_p10']:.0f}-{r['tokens_p90']:.0f}", f"{r['images_per_s']:.0f}",
                      f"{r['images_per_cpu_s'] / plain['images_per_cpu_s']:.2f}x", near])
    print("\n" + format_table(["model", "top-1 %", "mean tokens", "p10-p90 per image", "img/s", "vs plain (CPU-s)",
                               "fixed count nearest in mean tokens"], table))


def random_plain() -> torch.nn.Module:
    """The recipe's model (``configs/imagepiece_fashion_mnist.yaml``: DeiT-Ti shape, width 96, depth 8, 3 heads,
    4x4 patches at 32 px, 10 classes) with random weights (seed 0)."""
    import timm

    torch.manual_seed(0)
    return timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=4, embed_dim=96,
                             depth=8, num_heads=3, num_classes=10).eval()


def flops_of(model: torch.nn.Module, size: int) -> float:
    model = copy.deepcopy(model)
    if R.is_patched(model):
        model._adatok_reduction.attention = "eager"  # count the attention matmuls the fused kernel hides
    else:
        for blk in model.blocks:
            blk.attn.fused_attn = False
    with torch.no_grad():
        return count_flops(lambda: model(torch.rand(1, 3, size, size))) / 1e9


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="ImageFolder root with train/ and test/ (scripts/fashion_mnist.py)")
    p.add_argument("--out", type=Path, default=Path("runs/fmnist"), help="runs folder (default runs/fmnist)")
    p.add_argument("--runs", default=",".join(RUNS), help=f"comma list of {', '.join(RUNS)}")
    p.add_argument("--eval-only", action="store_true", help="evaluate existing runs, do not train")
    p.add_argument("--override", action="append", default=[], help="extra recipe override key=value (repeatable)")
    p.add_argument("--batch-size", type=int, default=250, help="evaluation batch size (default 250)")
    p.add_argument("--timed-batches", type=int, default=8, help="batches per timed pass (default 8 = 2000 images)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timed passes, best kept (default 3)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--json", type=Path, help="write the rows as JSON")
    p.add_argument("--threshold-sweep", action="store_true",
                   help="only: per-image (threshold) vs fixed-count reduction (--method) on the trained plain model")
    p.add_argument("--method", default="tome", choices=("tome", "evit", "imagepiece"), help="for --threshold-sweep")
    p.add_argument("--random-init", action="store_true",
                   help="for --threshold-sweep: the recipe's model with random weights instead of the trained one: "
                        "throughput vs mean tokens only (no accuracy: meaningless untrained)")
    p.add_argument("--fixed-keep-rates", default="0.5,0.7,0.9", help="fixed rows for --method evit / imagepiece")
    p.add_argument("--keep-cap", type=float, default=0.3, help="keep rate cap of the threshold rows (evit / imagepiece)")
    p.add_argument("--merge-threshold", type=float, default=None,
                   help="imagepiece threshold rows: also merge only above this cosine (default: r merges, the cap)")
    p.add_argument("--thresholds", default="0.5,0.6,0.7,0.8,0.9", help="for --threshold-sweep")
    p.add_argument("--fixed-rs", default="", help="fixed r values for --threshold-sweep (default: all allowed)")
    p.add_argument("--cap", type=int, default=8, help="merges per block at most, threshold mode (default 8)")
    p.add_argument("--floor", type=int, default=5, help="tokens per image at least, threshold mode (default 5)")
    args = p.parse_args(argv)
    args.thresholds = [float(t) for t in args.thresholds.split(",") if t]
    args.fixed_rs = [int(r) for r in args.fixed_rs.split(",") if r]
    args.fixed_keep_rates = [float(k) for k in args.fixed_keep_rates.split(",") if k]
    args.runs = [r for r in args.runs.split(",") if r]
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    busy = [cpu_busy_fraction()]
    if args.threshold_sweep:
        if args.random_init:
            plain, size = random_plain(), 32
        else:
            clf = R.load_classifier(str(args.out / "plain" / "model"))
            plain, size = clf.model, clf.image_size
        images, labels = load_test(args.data / "test", size)
        rows = threshold_sweep(plain, images, labels, args)
        print_sweep(rows)
        print(f"\n{len(labels)} test images (accuracy, mean tokens); throughput: {args.timed_batches} x "
              f"{args.batch_size} images per pass, median of {args.repeats} interleaved passes, "
              f"{torch.get_num_threads()} threads; total {time.perf_counter() - start:.0f} s")
        if args.json:
            from common import write_json

            write_json(args.json, {"env": environment(torch.device("cpu")), "rows": rows})
        return 0
    if not args.eval_only:
        train_all(args)
    models, meta = {}, {}
    for name in args.runs:
        clf = R.load_classifier(str(args.out / name / "model"))
        models[name] = clf.model
        meta[name] = clf
    if "plain" in models:
        for label, (method, settings) in OFF_THE_SHELF.items():
            model = copy.deepcopy(models["plain"])
            R.apply(model, method, **settings)
            models[f"plain + {label} (off-the-shelf)"] = model
    size = next(iter(meta.values())).image_size
    images, labels = load_test(args.data / "test", size)
    rows = evaluate(models, images, labels, args)
    busy.append(cpu_busy_fraction())
    plain = next((r for r in rows if r["name"] == "plain"), None)
    table = []
    for r in rows:
        r["gflops"] = flops_of(models[r["name"]], size)
        tokens = " ".join(map(str, r["tokens"])) if r["tokens"] else "all"
        speed = r["images_per_s"] / plain["images_per_s"] if plain else None
        cpu_speed = r["images_per_cpu_s"] / plain["images_per_cpu_s"] if plain else None
        table.append([r["name"], f"{r['accuracy']:.2f}", f"{r['images_per_s']:.0f}", f"{speed:.2f}x" if speed else "-",
                      f"{cpu_speed:.2f}x" if cpu_speed else "-", f"{r['gflops'] * 1e3:.0f}", tokens])
    print("\n" + format_table(["model", "top-1 %", "img/s", "vs plain", "vs plain (CPU-s)", "MFLOP/img",
                               "tokens per block"], table))
    env = environment(torch.device("cpu"))
    others = ", ".join("?" if b is None else f"{100 * b:.0f}%" for b in busy)
    print(f"\n{len(labels)} test images; timing: {args.timed_batches} x {args.batch_size} images per pass, best of "
          f"{args.repeats}, {env['threads']} threads; other processes' CPU use before / after: {others}; "
          f"total {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"env": env, "rows": rows, "busy": busy}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
