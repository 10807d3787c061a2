#!/usr/bin/env python
"""Retrain alit_default in one bounded GPU call, over the shipped maskgit_vqgan_default.

A GPU is lent for minutes at a time, so this sizes the two ALIT runs to the minutes given: a short
timing probe of each run (``configs/defaults/alit.yaml`` then ``alit_finetune.yaml``), then both runs
with the steps that fit (2/5 of the budget for stage 1, 3/5 for stage 2, whole multiples of 50),
then the evaluation and model card of ``scripts/train_defaults.py`` and the held-out targets of
``benchmarks/adaptive_heldout.py``. The teacher is the VQGAN that ships (``--vqgan``): its
training runs are convolutional and were done beforehand (on the CPU), so the GPU minutes go to ALIT.

    python scripts/gpu_retrain_alit.py --pool POOL256 --hires-pool POOL768 --out OUT --minutes 5
    python scripts/gpu_retrain_alit.py --pool P --hires-pool P --out /tmp/smoke --smoke   # CPU, toy runs

OUT gets ``weights/alit_default/`` (the export and its card), ``report.json`` (train_defaults'
evaluation), ``adaptive_heldout.json`` / ``.txt`` (the targets of issue 15) and ``plan.json`` (probe
timings and the steps chosen); the runs themselves stay in ``--work`` (default: a temporary folder).
Check the numbers, then copy ``weights/alit_default`` into ``src/adatok/weights/`` (and say in
train_defaults' RUN_NOTES["alit"] how it was run). On a machine without this checkout's photo pool, copy
the two pools along (about 15 MB) and point --pool / --hires-pool at them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_defaults as td  # noqa: E402

TOY = ["train.steps=2", "train.batch_size=4", "train.log_every=1", "train.ckpt_every=2", "train.precision=fp32",
       "data.workers=0"]
STAGE_SHARE = {"alit": 0.4, "alit_finetune": 0.6}
OVERHEAD_S = 30  # start-up of the two runs (model build, photo cache), taken from the training budget


def use_teacher(work: Path, vqgan: Path) -> None:
    """Make ``vqgan`` the VQGAN runs' export in ``work``: train_defaults then skips them and
    ALIT's stage 1 reads its codes."""
    for run in td.RUNS["vqgan"]:
        target = work / run / "model"
        target.mkdir(parents=True, exist_ok=True)
        for f in ("config.json", "model.safetensors"):
            shutil.copy2(vqgan / f, target / f)


def seconds_per_step(work: Path, run: str) -> float:
    steps, minutes = td.logged_steps_and_minutes(work / run / "log.csv")
    if steps < 1 or minutes <= 0:
        raise SystemExit(f"probe of {run}: no timed steps in {work / run / 'log.csv'}")
    return minutes * 60 / steps


def plan_steps(per_step: dict, budget_s: float, multiple: int = 50) -> dict:
    """Steps per run that fill ``budget_s`` (minus the start-up overhead) by STAGE_SHARE."""
    left = max(budget_s - OVERHEAD_S, 0.0)
    return {run: max(multiple, int(left * share / per_step[run]) // multiple * multiple)
            for run, share in STAGE_SHARE.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pool", type=Path, required=True, help="the 256 px photo pool (train/, heldout/)")
    p.add_argument("--hires-pool", type=Path, required=True, help="the same photos at a 768 px shorter side")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--work", type=Path, help="where the runs go (default: a temporary folder)")
    p.add_argument("--vqgan", type=Path, default=td.WEIGHTS / "maskgit_vqgan_default", help="the teacher VQGAN")
    p.add_argument("--minutes", type=float, default=5.0, help="training budget of the two runs together (the probes, start-ups and evaluation take about 3-4 min more)")
    p.add_argument("--probe-steps", type=int, default=40)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides for both runs and their probes (e.g. train.batch_size=48)")
    p.add_argument("--smoke", action="store_true", help="toy runs (2 steps at batch 4): checks the plumbing")
    args = p.parse_args()
    for folder in (args.pool, args.hires_pool):
        if not (folder / "train").is_dir() or not (folder / "heldout").is_dir():
            raise SystemExit(f"error: {folder}: expected a photo pool with train/ and heldout/ "
                             "(adatok data photos, then adatok data resize)")
    if not (args.vqgan / "model.safetensors").exists():
        raise SystemExit(f"error: --vqgan {args.vqgan}: no model.safetensors there")
    start = time.time()
    work = args.work or Path(tempfile.mkdtemp(prefix="alit_retrain_"))
    args.out.mkdir(parents=True, exist_ok=True)
    pools = {"main": args.pool, "hires": args.hires_pool}
    plan = {"device": td.device_description(), "budget_min": args.minutes}
    if args.smoke:
        extra = {run: TOY + args.set for run in STAGE_SHARE}
    else:
        probe = work / "probe"
        use_teacher(probe, args.vqgan)
        knobs = [*args.set, f"train.steps={args.probe_steps}", f"train.log_every={max(1, args.probe_steps // 4)}",
                 f"train.ckpt_every={args.probe_steps}"]
        td.run_stages(["alit"], probe, pools, False, {run: knobs for run in STAGE_SHARE})  # stage 2 continues 1
        per_step = {run: seconds_per_step(probe, run) for run in STAGE_SHARE}
        # the probes' warm-up steps are slower than the rest: the plan errs on the short side
        plan.update(seconds_per_step=per_step, steps=plan_steps(per_step, args.minutes * 60),
                    probe_minutes=(time.time() - start) / 60)
        # held-out PSNR in each run's log.csv every 250 steps (training itself is unchanged by it)
        extra = {run: [*args.set, f"train.steps={n}", "train.eval_every=250"] for run, n in plan["steps"].items()}
        shutil.rmtree(probe)
    print(json.dumps(plan, indent=2), flush=True)
    (args.out / "plan.json").write_text(json.dumps(plan, indent=2))  # now: a call cut short still returns it
    use_teacher(work, args.vqgan)
    td.run_stages(["alit"], work, pools, False, extra)
    td.finalize(work, args.hires_pool, args.out / "weights", ["alit"], 6 if args.smoke else None)
    shutil.copy2(work / "report.json", args.out / "report.json")
    bench = [sys.executable, str(td.ROOT / "benchmarks" / "adaptive_heldout.py"), "--heldout",
             str(args.hires_pool / "heldout"), "--alit", str(args.out / "weights" / "alit_default"),
             "--json", str(args.out / "adaptive_heldout.json")] + (["--max-images", "6"] if args.smoke else [])
    done = subprocess.run(bench, capture_output=True, text=True)
    (args.out / "adaptive_heldout.txt").write_text(done.stdout + done.stderr)
    print(done.stdout + done.stderr, flush=True)
    plan["total_minutes"] = (time.time() - start) / 60
    (args.out / "plan.json").write_text(json.dumps(plan, indent=2))
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
