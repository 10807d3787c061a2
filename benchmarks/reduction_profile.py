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
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
try:
    import adatok  # noqa: F401,E402
except ImportError:
    sys.path.insert(0, str(_HERE.parent / "src"))

import torch  # noqa: E402

import adatok.reduction as R  # noqa: E402
from common import format_table, write_json  # noqa: E402
from op_profile import breakdown, group_table  # noqa: E402

VARIANTS = {"plain": None, "tome_r13": ("tome", {"r": 13}), "imagepiece_t1": ("imagepiece", "table1")}


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
        results[b] = breakdown(models, x, calls, rounds=min(4, calls))
        headers, rows = group_table(results[b])
        print(f"\n{args.model}, batch {b}, {args.threads} thread(s): self-CPU ms per forward (torch.profiler, "
              f"{calls} forwards each in interleaved chunks)")
        print(format_table(headers, rows))
    if args.json:
        write_json(args.json, {"model": args.model, "threads": args.threads, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
