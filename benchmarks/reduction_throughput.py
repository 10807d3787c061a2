#!/usr/bin/env python
"""Token-reduction throughput: images/s of timm DeiT-Ti/DeiT-S plain vs ToMe vs EViT vs ImagePiece.

Every variant shares the SAME random weights (timm model, seed 0; the ImagePiece Table-1 preset adds
its LCB stem) and the SAME input, in one process; timed samples are interleaved (a round runs every
variant once) so background load hits all alike. Variants:

  plain            stock timm model (fused SDPA attention, timm's default)
  plain_eager      the same with ``fused_attn = False`` (explicit softmax: the like-for-like reference
                   for the official ToMe / EViT code, which both use explicit attention)
  tome_r8/_r13     ours, ``apply(model, "tome", r=...)`` (SDPA + log-size mask)
  tome_r13_eager   ours with ``attention="eager"``: the same algorithm with explicit softmax attention,
                   i.e. how the official ToMe patch computes it (its decisions and logits are equal)
  evit_0.7         ours, keep 0.7 at blocks 4/7/10, fused inattentive token
  evit_0.7_eager   ours with explicit attention in every block, as the official EViT model
  imagepiece       ours, library defaults (p 0.3, merge 0.08, keep 0.8, no LCB)
  imagepiece_t1    the Table-1 preset (``imagepiece_deit_*``: keep 0.7 at blocks 4/7/10 + LCB stem)

Reported: tokens after each block, GFLOP/img (``FlopCounterMode`` at batch 1 on the explicit-attention
path, which counts the attention matmuls the fused CPU kernel hides), images/s (median of ``--repeats``
wall-clock rounds of the shared protocol, ``benchmarks/common.py``), images per CPU-second (process CPU time; robust to other processes with
``--threads 1``), the CPU share of the median sample (``*`` below 85 %: contended), and the ratios to
plain / plain_eager measured in the same run. Targets (CPU, fp32, batch 64, DeiT-S): imagepiece_t1
>= 1.54x plain (the paper's speed-up); tome_r13 >= 1.51x and evit_0.7 >= 1.37x plain (what the
official code reaches on this kind of CPU, spec 5.2); tome_r13 faster than tome_r13_eager.

    PYTHONPATH=src python benchmarks/reduction_throughput.py --quick                 # smoke run, < 1 min
    PYTHONPATH=src python benchmarks/reduction_throughput.py --threads 1             # CPU, fp32 + bf16
    PYTHONPATH=src python benchmarks/reduction_throughput.py --models deit_small_patch16_224 \\
        --batch-sizes 64 --dtypes fp32 --threads 1 --json out/reduction.json
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from functools import partial
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
try:
    import adatok  # noqa: F401,E402
except ImportError:  # running from a checkout without PYTHONPATH=src
    sys.path.insert(0, str(_HERE.parent / "src"))

import torch  # noqa: E402

import adatok.reduction as R  # noqa: E402
from common import (  # noqa: E402
    DTYPES, PROTOCOL, autocast_ctx, count_flops, cpu_busy_fraction, default_device, environment, fmt,
    format_table, interleave, warn_if_busy, write_json,
)

DEFAULT_MODELS = "deit_tiny_patch16_224,deit_small_patch16_224"
PRESET = {"deit_tiny_patch16_224": "imagepiece_deit_tiny", "deit_small_patch16_224": "imagepiece_deit_small"}
# name: (method, settings, attention); None = no reduction
VARIANTS = {
    "plain": (None, {}, "sdpa"),
    "plain_eager": (None, {}, "eager"),
    "tome_r8": ("tome", {"r": 8}, "sdpa"),
    "tome_r13": ("tome", {"r": 13}, "sdpa"),
    "tome_r13_eager": ("tome", {"r": 13}, "eager"),
    "evit_0.7": ("evit", {"keep_rate": 0.7}, "sdpa"),
    "evit_0.7_eager": ("evit", {"keep_rate": 0.7}, "eager"),
    "imagepiece": ("imagepiece", {}, "sdpa"),
    "imagepiece_t1": ("preset", {}, "sdpa"),
}
# the official code, when --official-tome / --official-evit point at a checkout (benchmarks/official.py)
OFFICIAL = {"tome_r13_official": ("official_tome", {"r": 13}, "eager", "tome_r13"),
            "evit_0.7_official": ("official_evit", {"keep_rate": 0.7}, "eager", "evit_0.7")}
CONTENDED = 0.85
TARGETS = [  # (variant, reference, ratio): CPU fp32 DeiT-S batch 64
    ("imagepiece_t1", "plain", 1.54, "the paper's DeiT-S speed-up (Table 1)"),
    ("tome_r13", "plain", 1.51, "official ToMe r=13 on this CPU (spec 5.2)"),
    ("evit_0.7", "plain", 1.37, "official EViT 0.7 on this CPU (spec 5.2)"),
    ("tome_r13", "tome_r13_eager", 1.0, "ours vs the same algorithm with explicit attention"),
    ("tome_r13", "tome_r13_official", 1.2, "ours vs the official ToMe code (issue 19)"),
    ("evit_0.7", "evit_0.7_official", 1.2, "ours vs the official EViT code (issue 19)"),
]
AGREE_ATOL = 1e-4  # logits of ours vs the official code, fp32, same weights and input


def build(name: str, variant: str, base: torch.nn.Module, device: torch.device, eager_attn: bool = False):
    """The model of ``variant`` (a copy of ``base``, same weights); ``eager_attn`` forces explicit
    attention (for FLOP counting)."""
    method, settings, attention = VARIANTS[variant] if variant in VARIANTS else OFFICIAL[variant][:3]
    attention = "eager" if eager_attn else attention
    if method in ("official_tome", "official_evit"):
        import official as off

        if method == "official_tome":
            model = off.tome_model(OFFICIAL_DIRS["tome"], base, settings["r"])
        else:
            builder = OFFICIAL_DIRS.get("evit_builder") or f"{name.split('_patch')[0]}_patch16_shrink_base"
            model = off.evit_model(OFFICIAL_DIRS["evit"], base, settings["keep_rate"], fuse_token=True, builder=builder)
        return model.requires_grad_(False).to(device)
    if method == "preset":
        torch.manual_seed(1)
        model = R.create_model(PRESET[name], attention=attention)
        state = {k: v for k, v in base.state_dict().items() if not k.startswith("patch_embed.proj.")}
        missing = [k for k in model.load_state_dict(state, strict=False).missing_keys if "patch_embed.proj" not in k]
        assert not missing, missing
    else:
        model = copy.deepcopy(base)
        if method is None:
            for blk in model.blocks:
                blk.attn.fused_attn = attention == "sdpa"
        else:
            R.apply(model, method, attention=attention, **settings)
    return model.eval().requires_grad_(False).to(device)


OFFICIAL_DIRS: dict = {}


def check_agreement(models: dict, x: torch.Tensor) -> list:
    """Each official variant against ours on ``x`` (fp32): max |logit difference| <= AGREE_ATOL, else exit."""
    import official as off

    lines = []
    with torch.inference_mode():
        for v in [v for v in models if v in OFFICIAL]:
            ours = OFFICIAL[v][3]
            if ours not in models:
                continue
            diff = (off.logits_of(models[v](x)) - models[ours](x)).abs().max().item()
            if not diff <= AGREE_ATOL:
                raise SystemExit(f"{v}: logits differ from {ours} by {diff:.2e} (> {AGREE_ATOL:g}): not the same "
                                 "computation, no timing")
            lines.append(f"{v} vs {ours}: max |logit difference| {diff:.1e} (<= {AGREE_ATOL:g})")
    return lines


def tokens_of(model: torch.nn.Module, n0: int, depth: int) -> list:
    return R.info(model).tokens if R.is_patched(model) else [n0] * depth


def count_variant(model: torch.nn.Module, x: torch.Tensor, n0: int, depth: int) -> tuple[int, list]:
    """(FLOPs of one forward of ``x``, tokens after each block)."""
    with torch.no_grad():
        flops = count_flops(lambda: model(x))
    return flops, tokens_of(model, n0, depth)


def measure(name: str, args, device: torch.device, rows: list, token_rows: list) -> None:
    torch.manual_seed(0)
    import timm

    base = timm.create_model(name, pretrained=False).eval()
    size = base.patch_embed.img_size[0]
    n0 = base.patch_embed.num_patches + 1
    models = {v: build(name, v, base, device) for v in args.variants}
    flops = {}
    x1 = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    for line in check_agreement(models, x1):
        print("  " + line)
    for v in args.variants:
        if v in OFFICIAL:  # the official code's counts are ours (checked equal above); FLOPs counted on ours
            flops[v] = None
            continue
        flops[v], tokens = count_variant(build(name, v, base, device, eager_attn=True), x1, n0, len(base.blocks))
        token_rows.append([name, v, f"{flops[v] / 1e9:.2f}", " ".join(map(str, tokens))])
    print(f"\n== {name}: {n0} tokens in, depth {len(base.blocks)}")
    gen = torch.Generator().manual_seed(1)
    for batch in args.batch_sizes:
        images = torch.rand(batch, 3, size, size, generator=gen).to(device)
        for dtype in args.dtypes:
            with torch.inference_mode(), autocast_ctx(device, DTYPES[dtype]):
                timed = interleave({v: partial(models[v], images) for v in args.variants}, device,
                                   rounds=args.repeats, warmup=1)
            med = {v: t.median for v, t in timed.items()}
            for v in args.variants:
                t = timed[v]
                share = t.cpu_share() if device.type == "cpu" else None
                rows.append({
                    "model": name, "batch": batch, "dtype": dtype, "variant": v, "seconds": med[v],
                    "min_seconds": t.min, "max_seconds": t.max,
                    "images_per_s": batch / med[v], "cpu_seconds": t.cpu_median,
                    "images_per_cpu_s": batch / t.cpu_median if device.type == "cpu" else None,
                    "cpu_share": share, "contended": share is not None and share < CONTENDED,
                    "gflops_per_image": flops[v] / 1e9 if flops[v] is not None else flops[OFFICIAL[v][3]] / 1e9, "tokens": tokens_of(models[v], n0, len(base.blocks)),
                    "vs_plain": med.get("plain", med[v]) / med[v],
                    "vs_plain_eager": med.get("plain_eager", med[v]) / med[v], "timing": t.summary(),
                })
            print(f"  B={batch:<3d} {dtype}: " + "  ".join(f"{v} {batch / med[v]:.3g}" for v in args.variants)
                  + " img/s")
        del images
    if device.type == "cuda":
        torch.cuda.empty_cache()


def cpu_ratio(rows, model, batch, dtype, variant, ref, key):
    """Ratio by wall time ("seconds") or CPU time ("cpu_seconds")."""
    get = {(r["model"], r["batch"], r["dtype"], r["variant"]): r for r in rows}
    a, b = get.get((model, batch, dtype, variant)), get.get((model, batch, dtype, ref))
    if not a or not b or a[key] is None or b[key] is None:
        return None
    return b[key] / a[key]


def report(rows: list, token_rows: list, device: torch.device) -> list:
    print("\nTokens after each block ([CLS] included) and GFLOP per image (batch 1, explicit attention counted):")
    print(format_table(["model", "variant", "GFLOP/img", "tokens per block"], token_rows))
    table = []
    for r in rows:
        star = "*" if r["contended"] else ""
        table.append([r["model"].replace("_patch16_224", ""), r["batch"], r["dtype"], r["variant"],
                      r["tokens"][-1], f"{r['gflops_per_image']:.2f}", fmt(r["images_per_s"]) + star,
                      fmt(r["images_per_cpu_s"]), f"{r['vs_plain']:.2f}x",
                      f"{cpu_ratio(rows, r['model'], r['batch'], r['dtype'], r['variant'], 'plain', 'cpu_seconds') or 0:.2f}x",
                      f"{r['vs_plain_eager']:.2f}x"])
    print("\n" + format_table(["model", "B", "dtype", "variant", "tokens out", "GFLOP/img", "img/s", "img/CPU-s",
                               "vs plain", "vs plain (CPU-s)", "vs plain_eager"], table))
    if any(r["contended"] for r in rows):
        print(f"* = the median sample got < {100 * CONTENDED:.0f}% of its threads' CPU time: other processes competed "
              "for the cores (use the CPU-s columns, or rerun on an idle machine)")
    summary = []
    official = sorted({r["variant"] for r in rows if r["variant"] in OFFICIAL})
    print("\nBaselines: " + ("the official code (" + ", ".join(official) + ") and " if official else "")
          + "re-statements: *_eager = our same algorithm with explicit softmax attention, as the official ToMe/EViT "
          "compute (not their code; --official-tome / --official-evit DIR run that); 'official ... on this CPU' "
          "targets are constants measured once with the official code (spec 5.2)")
    print("Targets (fp32, batch 64; ratios by wall time, CPU time in brackets):")
    for model in sorted({r["model"] for r in rows}):
        for variant, ref, target, why in TARGETS:
            wall = cpu_ratio(rows, model, 64, "fp32", variant, ref, "seconds")
            if wall is None:
                continue
            cpu_t = cpu_ratio(rows, model, 64, "fp32", variant, ref, "cpu_seconds")
            ok = wall >= target if ref != "tome_r13_eager" else wall > target
            binding = model == "deit_small_patch16_224" or ref == "tome_r13_eager"
            tag = ("PASS" if ok else "MISS") if binding else "(info)"
            cpu_txt = f" [{cpu_t:.2f}x]" if cpu_t else ""
            print(f"  {model:24s} {variant:14s} vs {ref:14s} {wall:.2f}x{cpu_txt}  target {target:.2f}x ({why}): {tag}")
            summary.append({"model": model, "variant": variant, "reference": ref, "ratio": wall, "cpu_ratio": cpu_t,
                            "target": target, "pass": ok, "binding": binding})
    if not summary:
        print("  not measured (needs batch 64 and fp32)")
    if device.type != "cpu":
        print(f"(device {device}: the targets above were set for the CPU; GPU ratios are informative)")
    return summary


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=DEFAULT_MODELS, help=f"comma list of timm models (default {DEFAULT_MODELS})")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma list (default: all)")
    p.add_argument("--batch-sizes", default="1,16,64", help="comma list (default 1,16,64)")
    p.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32,bf16,fp16 (default fp32,bf16)")
    p.add_argument("--device", default=default_device(), help="torch device (default: cuda if available else cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (1 = robust CPU numbers)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timed rounds, median reported (default 3)")
    p.add_argument("--quick", action="store_true", help="DeiT-Ti, batch 1 and 4, fp32, 1 round: a smoke run")
    p.add_argument("--official-tome", metavar="DIR", help="a clone of facebookresearch/ToMe: adds tome_r13_official "
                   "(tome.patch.timm, r=13) to the variants, outputs checked against ours")
    p.add_argument("--official-evit", metavar="DIR", help="a clone of youweiliang/evit: adds evit_0.7_official (the "
                   "official EViT DeiT, keep 0.7, fused token)")
    p.add_argument("--official-evit-builder", default=None, help="official EViT model function (default: "
                   "deit_{tiny,small}_patch16_shrink_base by model)")
    p.add_argument("--json", metavar="OUT", help="write environment, rows and summary as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.batch_sizes, args.dtypes, args.repeats = "deit_tiny_patch16_224", "1,4", "fp32", 1
    args.models = [m for m in args.models.split(",") if m]
    bad = [m for m in args.models if m not in PRESET]
    if bad:
        p.error(f"unknown model(s) {bad}; use {', '.join(PRESET)}")
    args.variants = [v for v in args.variants.split(",") if v]
    import official as off

    for kind, variant, ours in (("tome", "tome_r13_official", "tome_r13"), ("evit", "evit_0.7_official", "evit_0.7")):
        folder = getattr(args, f"official_{kind}")
        if folder:
            off.check_or_exit(kind, folder)
            OFFICIAL_DIRS[kind] = folder
            args.variants += [v for v in (ours, variant) if v not in args.variants]
    OFFICIAL_DIRS["evit_builder"] = args.official_evit_builder
    if [v for v in args.variants if v not in VARIANTS and v not in OFFICIAL]:
        p.error(f"unknown variant(s); use {', '.join(VARIANTS)}")
    args.batch_sizes = sorted({int(b) for b in args.batch_sizes.split(",") if b})
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    if [d for d in args.dtypes if d not in DTYPES]:
        p.error(f"unknown dtype; use {','.join(DTYPES)}")
    return args, torch.device(args.device)


def main(argv=None) -> int:
    args, device = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    env = environment(device)
    print(f"adatok reduction throughput | torch {env['torch']} | device {device} ({env['device_name']}) | "
          f"threads {env['threads']}")
    print(f"models {','.join(args.models)} | batch sizes {args.batch_sizes} | dtypes {args.dtypes} | "
          f"repeats {args.repeats} (+1 warm-up, interleaved)")
    print(f"timing: {PROTOCOL}")
    busy = [cpu_busy_fraction()] if device.type == "cpu" else []
    if busy and warn_if_busy(busy[0]):
        print(warn_if_busy(busy[0]))
    rows: list = []
    token_rows: list = []
    for name in args.models:
        measure(name, args, device, rows, token_rows)
        if device.type == "cpu":
            busy.append(cpu_busy_fraction())
    summary = report(rows, token_rows, device)
    env["load_average_1min_end"] = environment(device)["load_average_1min"]
    env["other_processes_cpu_busy"] = busy
    elapsed = time.perf_counter() - start
    others = ", ".join("?" if b is None else f"{100 * b:.0f}%" for b in busy) or "n/a"
    print(f"\ntotal {elapsed:.0f} s; CPU used by other processes at start / after each model: {others}; "
          f"1-min load average at start {env['load_average_1min']}, at end {env['load_average_1min_end']}")
    if args.json:
        out = write_json(args.json, {"env": env, "args": {k: v for k, v in vars(args).items()}, "rows": rows,
                                     "tokens": token_rows, "summary": summary, "elapsed_s": elapsed})
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
