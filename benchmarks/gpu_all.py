#!/usr/bin/env python
"""Every GPU measurement of issue 19 in one bounded run: one command for the minutes a GPU is lent.

Parts (each a subprocess under its own time limit, so one that hangs or overruns is recorded as
"timed out" and the rest still run; every part writes JSON, this script one summary):

  reduction   ToMe r=13 / EViT 0.7 / ImagePiece Table-1 vs stock timm DeiT-S, batch 64, fp32 and bf16
              (``reduction_throughput.py``); with --official-tome / --official-evit also the official code
  titok       TiTok encode and decode, titok_l32 and titok_s128, batch 32 / 128 / 256, bf16 and fp32 vs the
              eager fp32 re-statement, peak memory, achieved TFLOP/s (``tokenizer_throughput.py``);
              with --official-titok also the official code
  alit        ALIT per-image ``select`` vs the official-rule re-statement at the threshold where the images
              stop at 3/8 of the maximum (``alit_adaptive.py``); with --official-alit the official encode
  (summary)   tokenizer forward TFLOP/s at the largest batch next to the chip's dense bf16 peak

    python benchmarks/gpu_all.py --out out/gpu                 # on the GPU machine (~10 min budget)
    python benchmarks/gpu_all.py --out /tmp/smoke --smoke      # CPU, tiny models, seconds: checks the plumbing

Writes ``OUT/<part>.json``, ``OUT/<part>.log``, ``OUT/summary.json`` and ``OUT/summary.md`` (the table to
paste into benchmarks/README.md, with the date and the chip).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from the vendors' data sheets
BF16_PEAK_TFLOPS = {"H200": 989.4, "H100 SXM": 989.4, "H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.4,
                    "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0, "RTX 4090": 165.2}


def bf16_peak(device_name: str):
    """(label, TFLOP/s) of the first known chip whose name occurs in ``device_name``, else (None, None)."""
    for label, tflops in BF16_PEAK_TFLOPS.items():
        if all(word in device_name for word in label.split()):
            return label, tflops
    return None, None


def parts(args) -> list:
    """(name, argv, time limit in s) of every part."""
    py = [sys.executable]
    out = Path(args.out)
    if args.smoke:
        red = [*py, str(HERE / "reduction_throughput.py"), "--models", "deit_tiny_patch16_224", "--batch-sizes", "1",
               "--dtypes", "fp32", "--repeats", "1", "--variants", "plain,tome_r8", "--device", args.device]
        tok = [*py, str(HERE / "tokenizer_throughput.py"), "--models", "titok_tiny", "--batch-sizes", "1",
               "--dtypes", "fp32", "--repeats", "1", "--retries", "0", "--ops", "encode", "--device", args.device,
               "--no-matmul-reference"]
        alit = [*py, str(HERE / "alit_adaptive.py"), "--model", "alit_test_tiny", "--batch", "2", "--repeats", "1", "--warmup", "0",
                "--device", args.device]
        limits = (args.part_limit or 120,) * 3
    else:
        red = [*py, str(HERE / "reduction_throughput.py"), "--models", "deit_small_patch16_224", "--batch-sizes", "1,64",
               "--dtypes", "fp32,bf16", "--repeats", "5", "--device", args.device,
               "--variants", "plain,plain_eager,tome_r13,tome_r13_eager,evit_0.7,evit_0.7_eager,imagepiece_t1"]
        tok = [*py, str(HERE / "tokenizer_throughput.py"), "--models", "titok_l32,titok_s128", "--batch-sizes",
               "32,128,256", "--dtypes", "bf16,fp32", "--ops", "encode,decode", "--repeats", "5", "--device",
               args.device, "--max-seconds", "30"]
        alit = [*py, str(HERE / "alit_adaptive.py"), "--model", "alit_small", "--batch", "16", "--dtype", "bf16",
                "--repeats", "5", "--device", args.device]
        limits = (args.part_limit or 150, args.part_limit or 300, args.part_limit or 150)
    for cmd, kind in ((red, "tome"), (red, "evit"), (tok, "titok"), (alit, "alit")):
        folder = getattr(args, f"official_{kind}")
        if folder:
            cmd += [f"--official-{kind}", folder]
    return [("reduction", red + ["--json", str(out / "reduction.json")], limits[0]),
            ("titok", tok + ["--json", str(out / "titok.json")], limits[1]),
            ("alit", alit + ["--json", str(out / "alit.json")], limits[2])]


def run_part(name: str, argv: list, limit: float, out: Path) -> dict:
    """Run one part under ``limit`` seconds; its output goes to ``out/<name>.log``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    log = out / f"{name}.log"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        f.write("$ " + " ".join(argv) + "\n")
        f.flush()
        try:
            rc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, timeout=limit, env=env, cwd=ROOT).returncode
            status = "ok" if rc == 0 else f"failed (exit {rc})"
        except subprocess.TimeoutExpired:
            status = f"timed out after {limit:.0f} s"
    return {"part": name, "status": status, "seconds": time.perf_counter() - t0, "limit_s": limit,
            "command": " ".join(argv), "log": str(log)}


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def summarize(out: Path, results: list, device_name: str) -> str:
    """The markdown summary of whatever the parts wrote."""
    label, peak = bf16_peak(device_name)
    lines = [f"# GPU measurements ({datetime.date.today().isoformat()}, {device_name})", "",
             "| part | status | seconds (limit) |", "|---|---|---|"]
    lines += [f"| {r['part']} | {r['status']} | {r['seconds']:.0f} ({r['limit_s']:.0f}) |" for r in results]
    red = _load(out / "reduction.json")
    if red:
        lines += ["", "## Token reduction vs stock timm (median img/s; ratio to `plain`)", "",
                  "| model | batch | dtype | variant | tokens out | img/s | vs plain |", "|---|---|---|---|---|---|---|"]
        for r in red.get("rows", []):
            lines.append(f"| {r['model']} | {r['batch']} | {r['dtype']} | {r['variant']} | {r['tokens'][-1]} | "
                         f"{r['images_per_s']:.1f} | {r['vs_plain']:.2f}x |")
    tok = _load(out / "titok.json")
    if tok:
        lines += ["", "## TiTok encode / decode (median img/s; ours vs the eager fp32 re-statement)", "",
                  "| model | batch | dtype | op | ours img/s | ratio vs eager | TFLOP/s | % bf16 peak | peak GiB |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in tok.get("rows", []):
            if r.get("skipped") or r.get("variant") != "ours":
                continue
            tflops = r["gflops_per_s"] / 1e3
            pct = f"{100 * tflops / peak:.0f} %" if peak and r["dtype"] == "bf16" else "-"
            mem = f"{r['peak_memory_gib']:.1f}" if r.get("peak_memory_gib") is not None else "-"
            lines.append(f"| {r['model']} | {r['batch']} | {r['dtype']} | {r['op']} | {r['images_per_s']:.1f} | "
                         f"{r['ratio_vs_eager']:.2f}x | {tflops:.1f} | {pct} | {mem} |")
        if peak:
            lines.append(f"\nbf16 dense peak used: {label} {peak} TFLOP/s (data sheet).")
    alit = _load(out / "alit.json")
    if alit:
        lines += ["", f"## ALIT select ({alit.get('model')}, batch {alit.get('batch')}, {alit.get('dtype')})", "",
                  "| path | median s | min-max s |", "|---|---|---|"]
        for path, t in alit.get("timings", {}).items():
            lines.append(f"| {path} | {t['median_s']:.3f} | {t['min_s']:.3f}-{t['max_s']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for the JSON, logs and summary")
    p.add_argument("--smoke", action="store_true", help="tiny models on the CPU: checks that every part runs")
    p.add_argument("--device", default=None, help="default: cuda when available (cpu with --smoke)")
    p.add_argument("--part-limit", type=float, default=None, help="seconds per part (default 150/300/150; smoke 120)")
    p.add_argument("--parts", default="reduction,titok,alit", help="comma list of the parts to run")
    for kind in ("tome", "evit", "titok", "alit"):
        p.add_argument(f"--official-{kind}", metavar="DIR", default=None, help=f"passed on to the {kind} part")
    args = p.parse_args(argv)
    import torch

    if args.device is None:
        args.device = "cpu" if args.smoke or not torch.cuda.is_available() else "cuda"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU"
    wanted = [x for x in args.parts.split(",") if x]
    results = []
    for name, cmd, limit in parts(args):
        if name not in wanted:
            continue
        print(f"== {name} (limit {limit:.0f} s)", flush=True)
        results.append(run_part(name, cmd, limit, out))
        print(f"   {results[-1]['status']} in {results[-1]['seconds']:.0f} s; log {results[-1]['log']}", flush=True)
    md = summarize(out, results, device_name)
    (out / "summary.md").write_text(md)
    (out / "summary.json").write_text(json.dumps({"device": device_name, "parts": results}, indent=2))
    print(md)
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
