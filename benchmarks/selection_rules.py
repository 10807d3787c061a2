#!/usr/bin/env python
"""Can one per-image length rule meet both adaptive-length targets? On the held-out crops, from one sweep
of a prefix tokenizer (per-image PSNR at every length), every rule below is applied to the same
curves and scored as ``benchmarks/adaptive_heldout.py`` scores selections:

  target 2: mean PSNR vs a fixed length at the same mean token count (>= +0.5 dB), or fewer tokens
            than a fixed length at the same PSNR (>= 20 %);
  target 3: Spearman of the chosen lengths with each image's PNG size (>= 0.6).

Rules: a PSNR target (the shortest length reaching it), the Lagrangian on PSNR (max PSNR - lambda * L,
``tokenizers/prefix/lagrangian.py``), the Lagrangian on MSE and on RMSE (min err + lambda * L: tokens
go where the absolute error falls most), a PSNR floor + the PSNR Lagrangian, and "within d dB of the
image's own longest-length PSNR".

    python benchmarks/selection_rules.py --heldout POOL768/heldout [--model titok_prefix_default] [--json F]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

import adatok
from adatok.eval.complexity import image_complexity
from adatok.eval.crops import heldout_crops
from adatok.eval.rate_distortion import rate_distortion

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adaptive_heldout import meets_target2, meets_target3, selection_score  # noqa: E402


def rules(curves: np.ndarray, lengths: np.ndarray) -> dict:
    """Rule label -> chosen row (index into ``lengths``) per image. ``curves``: T x B PSNR."""
    mse = 10 ** (-curves / 10)
    longest = len(lengths) - 1
    out = {}
    for t in (20.0, 22.0, 24.0):
        ok = curves >= t
        out[f"psnr>={t:g} dB"] = np.where(ok.any(0), ok.argmax(0), longest)
    for lam in (0.05, 0.1, 0.15, 0.2):
        out[f"PSNR Lagrangian {lam:g} dB/token"] = np.argmax(curves - lam * lengths[:, None], 0)
    for lam in (1e-5, 2e-5, 4e-5):
        out[f"MSE Lagrangian {lam:g}/token"] = np.argmin(mse + lam * lengths[:, None], 0)
    for lam in (1e-4, 2e-4, 4e-4):
        out[f"RMSE Lagrangian {lam:g}/token"] = np.argmin(np.sqrt(mse) + lam * lengths[:, None], 0)
    for floor in (20.0, 22.0):
        for lam in (0.1, 0.15):
            allowed = (curves >= floor) | ((~(curves >= floor).any(0))[None] & (np.arange(len(lengths)) == longest)[:, None])
            out[f"floor {floor:g} dB + PSNR Lagrangian {lam:g}"] = np.argmax(
                np.where(allowed, curves - lam * lengths[:, None], -np.inf), 0)
    for d in (1.0, 2.0, 3.0):
        out[f"within {d:g} dB of own longest"] = (curves >= curves[-1] - d).argmax(0)
    return out


@torch.no_grad()  # restores the caller's grad mode
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--heldout", type=Path, required=True, help="the held-out photos (POOL768/heldout)")
    p.add_argument("--model", default="titok_prefix_default")
    p.add_argument("--max-images", type=int)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    model = adatok.load(args.model)
    images, _ = heldout_crops(args.heldout, model.image_size)
    images = images[: args.max_images]
    sweep = rate_distortion(model, images, method=args.model, preview=0)
    curves, lengths = np.asarray(sweep.curves), np.asarray(sweep.lengths)
    complexity = image_complexity(images)
    results = {label: selection_score(curves, lengths.tolist(), lengths[rows].tolist(), complexity)
               for label, rows in rules(curves, lengths).items()}
    print(f"{args.model} on {len(images)} held-out crops; fixed lengths {lengths.tolist()}: "
          + " / ".join(f"{m:.2f}" for m in curves.mean(axis=1)) + " dB")
    print("| rule | mean tokens | PSNR | vs fixed at same mean | fewer tokens at same PSNR | Spearman PNG | 2 | 3 |")
    print("|---|---|---|---|---|---|---|---|")
    for label, r in results.items():
        fewer = "–" if r["fewer_tokens"] is None else f"{r['fewer_tokens']:.0%}"
        t2, t3 = meets_target2(r), meets_target3(r)
        print(f"| {label} | {r['mean_tokens']:.1f} | {r['psnr']:.2f} | {r['vs_fixed_db']:+.2f} dB | {fewer} "
              f"| {r['spearman_png']:.2f} | {'met' if t2 else '-'} | {'met' if t3 else '-'} |")
    both = [label for label, r in results.items() if meets_target2(r) and meets_target3(r)]
    print(f"rules meeting both: {', '.join(both) if both else 'none'}")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "crops": len(images), "rules": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
