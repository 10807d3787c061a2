#!/usr/bin/env python
"""Where the time of a token-reduced forward goes: torch.profiler self-CPU time of timm DeiT plain / ToMe /
ImagePiece, grouped into GEMMs (linear layers), attention kernels, the reduction's own ops (matching,
sorting, gathers, scatters, masks) and the rest (norms, GELU, adds, copies, Python-side op overhead),
per forward, at the batch sizes given (batch 1: the latency case where ToMe users report no speed-up).

    python benchmarks/reduction_profile.py --threads 1 --batch-sizes 1,64
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
from torch.profiler import ProfilerActivity, profile  # noqa: E402

import adatok.reduction as R  # noqa: E402
from common import format_table, write_json  # noqa: E402

GROUPS = {
    "GEMM (linear)": ("aten::addmm", "aten::mm", "aten::linear", "aten::matmul"),
    "attention kernel": ("aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product",
                         "aten::_flash_attention", "aten::_efficient_attention", "aten::softmax", "aten::_softmax"),
    "reduction ops": ("aten::gather", "aten::scatter", "aten::scatter_reduce", "aten::sort", "aten::argsort",
                      "aten::topk", "aten::max", "aten::bmm", "aten::linalg_vector_norm", "aten::cat",
                      "aten::arange", "aten::fill_", "aten::masked_fill", "aten::log", "aten::where",
                      "aten::index", "aten::mean"),
    "patch embedding": ("aten::mkldnn_convolution", "aten::convolution", "aten::_convolution"),
}
VARIANTS = {"plain": None, "tome_r13": ("tome", {"r": 13}), "imagepiece_t1": ("imagepiece", "table1")}


def group_of(name: str) -> str:
    for group, names in GROUPS.items():
        if any(name == n or name.startswith(n) for n in names):
            return group
    return "other (norms, GELU, adds, copies, dispatch)"


def profile_variant(model, x, calls: int) -> dict:
    with torch.inference_mode():
        for _ in range(2):
            model(x)
        t0 = time.process_time()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(calls):
                model(x)
        cpu_total = (time.process_time() - t0) / calls
    out: dict = {}
    for evt in prof.key_averages():
        g = group_of(evt.key)
        out[g] = out.get(g, 0.0) + evt.self_cpu_time_total / 1e3 / calls  # ms per forward
    out["_ops"] = sum(e.count for e in prof.key_averages()) / calls
    out["_process_cpu_ms"] = 1e3 * cpu_total
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="deit_small_patch16_224")
    p.add_argument("--batch-sizes", default="1,64")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--calls", type=int, default=0, help="profiled forwards (default 20 at batch 1, else 2)")
    p.add_argument("--json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import timm

    torch.manual_seed(0)
    base = timm.create_model(args.model, pretrained=False).eval()
    models = {}
    for name, spec in VARIANTS.items():
        m = timm.create_model(args.model, pretrained=False).eval()
        m.load_state_dict(base.state_dict())
        if spec:
            method, settings = spec
            R.apply(m, R.ImagePieceConfig.table1() if settings == "table1" else method,
                    **({} if settings == "table1" else settings))
        models[name] = m
    results = {}
    for b in [int(v) for v in args.batch_sizes.split(",") if v]:
        x = torch.rand(b, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        calls = args.calls or (20 if b == 1 else 2)
        rows = {name: profile_variant(m, x, calls) for name, m in models.items()}
        results[b] = rows
        groups = [g for g in [*GROUPS, "other (norms, GELU, adds, copies, dispatch)"]]
        table = []
        for name, r in rows.items():
            total = sum(r.get(g, 0.0) for g in groups)
            table.append([name, f"{total:.1f}", *[f"{r.get(g, 0.0):.1f} ({100 * r.get(g, 0.0) / total:.0f}%)"
                                                   for g in groups], f"{r['_ops']:.0f}"])
        print(f"\n{args.model}, batch {b}, {args.threads} thread(s): self-CPU ms per forward (torch.profiler)")
        print(format_table(["variant", "total", *groups, "ops/forward"], table))
    if args.json:
        write_json(args.json, {"model": args.model, "threads": args.threads, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
