#!/usr/bin/env python
"""Batch-1 latency of ToMe and ImagePiece on timm DeiT-S (random weights) against stock timm, and where
the time goes at batch 1.

Timing: the shared protocol of ``common.interleave`` (warm-up, interleaved rounds A B C / C B A, medians
with min-max, JSON); ms per image and the ratio to stock timm at each batch size (default 1 and 64).
Breakdown (batch 1): ``torch.profiler`` self-CPU time per forward, the top ops and the groups of
``reduction_profile.py`` (GEMMs = the linear layers of attention and MLP; the attention kernel; the
reduction's own matching / sorting / gather / scatter ops; the rest).

    OMP_NUM_THREADS=1 python benchmarks/reduction_latency.py --threads 1 --json runs/bench/reduction_latency.json
"""

from __future__ import annotations

import argparse
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
from common import (cpu_busy_fraction, environment, fmt, format_table, interleave, ratio_text,  # noqa: E402
                    warn_if_busy, write_json)
from op_profile import breakdown, group_table  # noqa: E402

VARIANTS = {
    "timm (stock)": None,
    "ToMe r=13": ("tome", {"r": 13}),
    "ImagePiece keep 0.7": ("imagepiece", {"keep_rate": 0.7}),  # Table-1 schedule without the LCB stem
}


def build(model_name: str) -> dict:
    import timm

    torch.manual_seed(0)
    base = timm.create_model(model_name, pretrained=False).eval()
    models = {}
    for name, spec in VARIANTS.items():
        m = timm.create_model(model_name, pretrained=False).eval()
        m.load_state_dict(base.state_dict())
        if spec:
            R.apply(m, spec[0], **spec[1])
        models[name] = m
    return models


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="deit_small_patch16_224")
    p.add_argument("--batch-sizes", default="1,64")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds at batch 1 (2 at larger batches)")
    p.add_argument("--profile-calls", type=int, default=20)
    p.add_argument("--top", type=int, default=8)
    p.add_argument("--json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.time()
    busy = cpu_busy_fraction()
    warning = warn_if_busy(busy)
    models = build(args.model)
    env = environment(torch.device("cpu"))
    print(f"{args.model}, random weights, {args.threads} thread(s), {env['device_name']}, torch {env['torch']}")
    if warning:
        print(warning)
    results: dict = {"timing": {}, "breakdown": {}}
    for b in [int(v) for v in args.batch_sizes.split(",") if v]:
        x = torch.rand(b, 3, 224, 224, generator=torch.Generator().manual_seed(0))

        def run(m):
            def fn():
                with torch.inference_mode():
                    m(x)
            return fn

        timings = interleave({n: run(m) for n, m in models.items()}, "cpu", rounds=args.rounds if b == 1 else 2,
                             warmup=1)
        ref = timings["timm (stock)"]
        rows, out = [], {}
        for name, t in timings.items():
            with torch.inference_mode():
                models[name](x[:1])
            patched = R.is_patched(models[name])
            tokens = R.info(models[name]).tokens[-1] if patched else models[name].patch_embed.num_patches + 1
            rows.append([name, fmt(1e3 * t.median / b), f"{fmt(1e3 * t.min / b)}-{fmt(1e3 * t.max / b)}",
                         ratio_text(ref, t), tokens])
            out[name] = {**t.summary(), "ms_per_image": 1e3 * t.median / b, "tokens_after_last_block": tokens}
        results["timing"][b] = out
        print(f"\nbatch {b}: ms per image (median over {len(ref.wall)} interleaved rounds), speed-up vs stock timm")
        print(format_table(["variant", "ms/image", "range", "speed-up", "tokens out"], rows))
    x1 = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    results["breakdown"] = breakdown(models, x1, args.profile_calls, args.top)
    headers, grows = group_table(results["breakdown"])
    print(f"\nbatch 1, self-CPU ms per forward by group (torch.profiler, {args.profile_calls} forwards each, "
          "in 4 interleaved chunks)")
    print(format_table(headers, grows))
    for name, r in results["breakdown"].items():
        print(f"\nbatch 1, {name}: top ops by self-CPU time")
        print(format_table(["op", "group", "ms/forward", "calls/forward"],
                           [[o["op"], o["group"], f"{o['ms']:.2f}", f"{o['calls']:.0f}"] for o in r["top"]]))
    print(f"\n({time.time() - started:.0f} s)")
    if args.json:
        write_json(args.json, {"model": args.model, "threads": args.threads, "environment": env,
                               "cpu_busy_before": busy, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
