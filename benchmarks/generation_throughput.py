#!/usr/bin/env python
"""Generation throughput: samples/s of MaskGIT sampling + detokenization (ids -> RGB), per preset.

For every generator/tokenizer pair two paths run on the SAME random weights, labels and settings,
in the same process, their timed samples interleaved so both see the same machine conditions:

  ours   ``adatok.generators.generate_images``: SDPA attention, the conditional and unconditional
         passes in ONE batch of 2B, the unconditional pass skipped when the guidance scale is 0,
         ``inference_mode``, bf16 autocast on GPU (``--dtype``), then ``tokenizer.decode_ids``.
  plain  a direct transcription of the official loop (``plain_generate`` below): explicit-softmax
         attention (``Attention.use_sdpa = False``), fp32, the conditional and unconditional passes
         as two separate forwards at every step (also when the scale is 0), then ``decode_ids``.

Settings are each preset's official ImageNet ones (L-32: 8 steps, linear guidance 4.5; B-64: 8
steps, linear 3.0; S-128: 64 steps, power-cosine 6.9), plus a guidance-0 row (unconditional
sampling, where skipping the unconditional pass halves the generator work). At temperature 0 in
fp32 both paths must give identical ids (checked and printed).

Timing: the shared protocol (``benchmarks/common.py``: 1 warm-up call per path, then ``--repeats``
interleaved rounds in alternating order, CUDA synchronised). samples/s = batch / median seconds, detokenization included; the generator alone
(ids only) is timed the same way, to separate the two.

    PYTHONPATH=src python benchmarks/generation_throughput.py --threads 1          # tiny pair on CPU
    PYTHONPATH=src python benchmarks/generation_throughput.py --device cuda        # every pair, bf16, batch 125
    PYTHONPATH=src python benchmarks/generation_throughput.py --pairs l32 --batch 2 --steps 2 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
try:
    import adatok  # noqa: E402
except ImportError:  # running from a checkout without PYTHONPATH=src
    sys.path.insert(0, str(_HERE.parent / "src"))
    import adatok  # noqa: E402

import torch  # noqa: E402

from adatok.generators import generate_images, guidance_scale  # noqa: E402
from adatok.generators.sampling import gumbel_noise  # noqa: E402
from adatok.layers.attention import Attention  # noqa: E402
from common import (  # noqa: E402
    DTYPES, cpu_busy_fraction, default_device, environment, fmt, format_table, interleave, warn_if_busy,
)

PAIRS = {
    "tiny": ("maskgit_tiny", "titok_tiny"),
    "l32": ("maskgit_titok_l32", "titok_l32"),
    "b64": ("maskgit_titok_b64", "titok_b64"),
    "s128": ("maskgit_titok_s128", "titok_s128"),
}
PAPER_L32_A100 = 101.6  # samples/s, TiTok-L-32 + MaskGIT, 8 steps, A100 (TiTok paper, Yu et al., NeurIPS 2024)


# --------------------------------------------------------------------------- the plain baseline
@torch.inference_mode()
def plain_generate(gen, labels, steps, guidance, schedule, temperature, guidance_pow, annealing, rng):
    """The official ``generate`` loop, transcribed: two separate forwards per step, no skipping."""
    c = gen.config
    b, k = labels.shape[0], c.num_tokens
    ids = torch.full((b, k), c.mask_id, dtype=torch.long, device=labels.device)
    null = torch.full_like(labels, -1)
    for step in range(steps):
        ratio = (step + 1) / steps
        t = temperature * (1 - ratio)
        w = guidance_scale(schedule, step, steps, guidance, guidance_pow)
        is_mask = ids == c.mask_id
        cond = gen(ids, labels).logits.float()
        uncond = gen(ids, null).logits.float()
        logits = uncond + (cond - uncond) * w if schedule == "power-cosine" else cond + (cond - uncond) * w
        if annealing:
            logits = logits / (0.5 + 0.8 * (1 - ratio))
        sampled = (logits + t * gumbel_noise(logits.shape, rng, ids.device)).argmax(-1)
        conf = torch.gather(logits, -1, sampled.unsqueeze(-1)).squeeze(-1)
        sampled = torch.where(is_mask, sampled, ids)
        conf = torch.where(is_mask, conf, torch.tensor(math.inf, device=ids.device))
        mask_len = max(1, min(int(is_mask[0].sum()) - 1, math.floor(k * math.acos(ratio) / (math.pi / 2))))
        conf = conf + t * gumbel_noise(conf.shape, rng, ids.device)
        cut = conf.sort(-1).values[:, mask_len - 1: mask_len]
        ids = sampled if step == steps - 1 else torch.where(conf <= cut, c.mask_id, sampled)
    return ids


@contextlib.contextmanager
def eager_attention():
    previous = Attention.use_sdpa
    Attention.use_sdpa = False
    try:
        yield
    finally:
        Attention.use_sdpa = previous


# --------------------------------------------------------------------------- timing
def best_seconds(fns: dict, device, repeats: int) -> dict:
    """The shared protocol (``common.interleave``: warm-up, alternating interleaved rounds); the
    median seconds per path (the minimum and maximum are in ``LAST_TIMINGS``)."""
    timed = interleave(fns, device, rounds=repeats, warmup=1, max_calls=1)
    LAST_TIMINGS.clear()
    LAST_TIMINGS.update({n: t.summary() for n, t in timed.items()})
    return {name: t.median for name, t in timed.items()}


LAST_TIMINGS: dict = {}


def run_pair(key, args, device, rows, summary):
    gname, tname = PAIRS[key]
    torch.manual_seed(0)
    gen = adatok.create_model(gname).eval().requires_grad_(False).to(device)
    tok = adatok.create_model(tname).eval().requires_grad_(False).to(device)
    s = gen.config.sampling
    steps = args.steps or s.steps
    b = args.batch
    labels = (torch.arange(b) * 37 % max(1, gen.config.num_classes)).to(device)
    dtype = DTYPES[args.dtype]
    nparams = sum(p.numel() for p in gen.parameters()) / 1e6
    print(f"\n== {gname} ({nparams:.1f}M) + {tname}: batch {b}, {steps} steps, temperature {s.temperature}, "
          f"{s.schedule} guidance {s.guidance}, ours {args.dtype}")
    for guidance in (s.guidance, 0.0):
        settings = dict(steps=steps, guidance=guidance, schedule=s.schedule, temperature=s.temperature,
                        guidance_pow=s.guidance_pow, softmax_annealing=s.softmax_annealing)

        autocast = None if dtype == torch.float32 else dtype

        def ours_ids():
            with torch.inference_mode(), torch.autocast(device.type, dtype=autocast or torch.float32,
                                                        enabled=autocast is not None):
                return gen.generate(labels, seed=0, **settings)

        def ours():
            with torch.inference_mode():
                return generate_images(gen, tok, labels.tolist(), n=1, seed=0, autocast_dtype=autocast, **settings)

        def plain_ids():
            rng = torch.Generator(device=device).manual_seed(0)
            with eager_attention(), torch.inference_mode():
                return plain_generate(gen, labels, steps, guidance, s.schedule, s.temperature, s.guidance_pow,
                                      s.softmax_annealing, rng)

        def plain():
            ids = plain_ids()
            with eager_attention(), torch.inference_mode():
                return tok.decode_ids(ids).clamp(0, 1)

        best = best_seconds({"ours": ours, "plain": plain, "ours_gen": ours_ids, "plain_gen": plain_ids},
                            device, args.repeats)
        row = {"pair": key, "guidance": guidance, "batch": b, "steps": steps,
               "ours_sps": b / best["ours"], "plain_sps": b / best["plain"], "ratio": best["plain"] / best["ours"],
               "ours_gen_sps": b / best["ours_gen"], "plain_gen_sps": b / best["plain_gen"],
               "gen_ratio": best["plain_gen"] / best["ours_gen"], "ours_generator_share": best["ours_gen"] / best["ours"]}
        rows.append(row)
        print(f"  guidance {guidance:g}: with detokenization ours {fmt(row['ours_sps'])} samples/s, plain "
              f"{fmt(row['plain_sps'])} -> {row['ratio']:.2f}x; generator alone ours {fmt(row['ours_gen_sps'])}, "
              f"plain {fmt(row['plain_gen_sps'])} -> {row['gen_ratio']:.2f}x "
              f"(generator {100 * row['ours_generator_share']:.0f}% of ours)")
    # equivalence: temperature 0, fp32, both paths -> identical ids
    settings = dict(steps=steps, guidance=s.guidance, schedule=s.schedule, temperature=0.0,
                    guidance_pow=s.guidance_pow, softmax_annealing=s.softmax_annealing)
    with torch.inference_mode():
        a = gen.generate(labels, seed=0, **settings).ids
        with eager_attention():
            p = plain_generate(gen, labels, steps, s.guidance, s.schedule, 0.0, s.guidance_pow,
                               s.softmax_annealing, None)
    same = bool(torch.equal(a, p))
    summary[f"{key}_ids_equal_at_t0"] = same
    print(f"  temperature 0, fp32: ours and plain ids identical: {'yes' if same else 'NO'}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", help="comma-separated: tiny, l32, b64, s128 (default: tiny on CPU, all on CUDA)")
    p.add_argument("--device", default=default_device())
    p.add_argument("--batch", type=int,
                   help="samples per call (default 8 on CPU, 125 on CUDA: the paper's per-GPU batch)")
    p.add_argument("--steps", type=int, help="override the preset's sampling steps (quick CPU runs of real sizes)")
    p.add_argument("--dtype", choices=["fp32", "bf16"], help="ours (default fp32 on CPU, bf16 on CUDA)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    args.pairs = args.pairs or ("tiny,l32,b64,s128" if cuda else "tiny")
    args.batch = args.batch or (125 if cuda else 8)
    args.dtype = args.dtype or ("bf16" if cuda else "fp32")
    env = environment(device)
    print(json.dumps(env))
    warning = warn_if_busy(cpu_busy_fraction()) if not cuda else None
    if warning:
        print(warning)
    rows, summary = [], {}
    for key in args.pairs.split(","):
        run_pair(key.strip(), args, device, rows, summary)
    print()
    print(format_table(["pair", "guidance", "batch", "steps", "ours samples/s", "plain samples/s", "ours/plain",
                        "generator: ours", "plain", "ours/plain"],
                       [[r["pair"], f"{r['guidance']:g}", r["batch"], r["steps"], fmt(r["ours_sps"]),
                         fmt(r["plain_sps"]), f"{r['ratio']:.2f}x", fmt(r["ours_gen_sps"]), fmt(r["plain_gen_sps"]),
                         f"{r['gen_ratio']:.2f}x"] for r in rows]))
    l32 = [r for r in rows if r["pair"] == "l32" and r["guidance"] > 0]
    if l32 and cuda:
        ours = l32[0]["ours_sps"]
        print(f"\nTiTok-L-32 + MaskGIT, {l32[0]['steps']} steps: {ours:.1f} samples/s on {env['device_name']} vs "
              f"{PAPER_L32_A100} on an A100 in the paper ({100 * ours / PAPER_L32_A100:.0f}%)")
    else:
        print(f"\n(paper: {PAPER_L32_A100} samples/s for TiTok-L-32 + 8 steps on an A100; "
              "run with --device cuda to compare)")
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, "rows": rows, "summary": summary}, indent=2))
    return 0 if all(summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
