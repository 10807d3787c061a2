"""Adaptive length on images nobody trained on: the four measurable targets, on the held-out crop set.

For each adaptive default (the prefix TiTok, ALIT) and the fixed titok_default, on the multi-scale
crops of the held-out photos (``adatok.eval.crops.heldout_crops``: 21 crops a photo at scales 1, 1/2,
1/4, at the model's size; 168 crops from 8 photos, 189 from 9 with matplotlib's sample photo):

  1. quality rises with every added token (the mean PSNR curve over the lengths strictly increases);
  2. per-image selection at the same mean token count beats a fixed length by >= 0.5 dB PSNR, or
     reaches the fixed length's PSNR with >= 20 % fewer tokens (the fixed curve interpolated);
  3. chosen length vs the image's PNG size: Spearman >= 0.6 (for quality-target selection);
  4. each model beats a same-bytes RGB thumbnail (bytes = tokens * log2(codebook) / 8) at every length,
     and ALIT at 64 tokens is at least as good as titok_default.

Every number comes from ``adatok.eval.rate_distortion`` (reconstructions rounded to 8 bits),
``adatok.eval.baselines`` and ``adatok.eval.complexity`` (docs/rate_distortion.md).

    adatok data photos photos/ && adatok data resize photos/ pool768/ --shorter-side 768
    python benchmarks/adaptive_heldout.py --heldout pool768/heldout [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

import adatok
from adatok.eval.baselines import same_bytes_thumbnails
from adatok.eval.complexity import allocation_check, image_complexity, length_complexity
from adatok.eval.crops import heldout_crops
from adatok.eval.rate_distortion import rate_distortion

PSNR_TARGETS = (20.0, 22.0, 24.0)
LAMBDAS = (0.05, 0.1, 0.15)


def tokens_for_psnr(curve_lengths, mean_curve, target: float) -> float:
    """Tokens a fixed length needs for ``target`` mean PSNR (the increasing mean curve, interpolated)."""
    return float(np.interp(target, mean_curve, curve_lengths))


def selection_score(curves, lengths, chosen, complexity) -> dict:
    """One per-image length choice scored for targets 2 and 3: ``curves`` T x B per-image PSNR at
    ``lengths``, ``chosen`` B lengths among them, ``complexity`` from ``image_complexity``."""
    means = np.asarray(curves).mean(axis=1)
    alloc = allocation_check(curves, lengths, chosen)
    fixed_tokens = tokens_for_psnr(lengths, means, alloc["chosen_psnr"])
    rho = length_complexity(chosen, complexity)
    return {"mean_tokens": alloc["mean_tokens"], "psnr": alloc["chosen_psnr"],
            "vs_fixed_db": alloc["vs_fixed_db"], "vs_shuffled_db": alloc["vs_shuffled_db"],
            "fewer_tokens": 1 - alloc["mean_tokens"] / fixed_tokens if alloc["chosen_psnr"] <= means[-1] else None,
            "spearman_png": rho["png_bytes"]["rho"], "p_png": rho["png_bytes"]["p"],
            "spearman_jpeg90": rho["jpeg90_bytes"]["rho"]}


def meets_target2(score: dict) -> bool:
    return score["vs_fixed_db"] >= 0.5 or (score["fewer_tokens"] or 0) >= 0.2


def meets_target3(score: dict) -> bool:
    return bool(np.nan_to_num(score["spearman_png"], nan=-1) >= 0.6)


def adaptive_report(name: str, model, images, complexity) -> dict:
    sweep = rate_distortion(model, images, method=name, psnr_targets=PSNR_TARGETS,
                            lambdas=LAMBDAS if "prefix" in type(model).__name__.lower() else None, preview=0)
    lengths = list(sweep.lengths)
    means = sweep.curves.mean(axis=1)
    out = {"lengths": lengths, "psnr": [float(m) for m in means],
           "strictly_increasing": bool(np.all(np.diff(means) > 0)), "selections": []}
    budgets = [float(n * np.log2(model.codebook_size) / 8) for n in lengths]
    out["thumbnail_margin_db"] = [float(m - thumb) for m, (_, thumb) in zip(means, same_bytes_thumbnails(images, budgets))]
    for point in sweep.selections:
        out["selections"].append({"rule": point.label,
                                  **selection_score(sweep.curves, lengths, point.lengths, complexity)})
    return out


def print_report(name: str, r: dict) -> None:
    print(f"\n## {name}")
    print("| tokens | " + " | ".join(map(str, r["lengths"])) + " |")
    print("|---" * (len(r["lengths"]) + 1) + "|")
    print("| PSNR dB | " + " | ".join(f"{v:.2f}" for v in r["psnr"]) + " |")
    print("| vs same-bytes thumbnail | " + " | ".join(f"{v:+.2f}" for v in r["thumbnail_margin_db"]) + " |")
    print(f"target 1 (strictly increasing): {'met' if r['strictly_increasing'] else 'MISSED'}")
    print(f"target 4 (beats the thumbnail at every length): "
          f"{'met' if min(r['thumbnail_margin_db']) > 0 else 'MISSED'} (min margin {min(r['thumbnail_margin_db']):+.2f} dB)")
    print("| selection | mean tokens | PSNR | vs fixed at same mean | fewer tokens at same PSNR | vs shuffled "
          "| Spearman PNG (p) | Spearman JPEG-90 |")
    print("|---|---|---|---|---|---|---|---|")
    for s in r["selections"]:
        fewer = "–" if s["fewer_tokens"] is None else f"{s['fewer_tokens']:.0%}"
        print(f"| {s['rule']} | {s['mean_tokens']:.1f} | {s['psnr']:.2f} | {s['vs_fixed_db']:+.2f} dB | {fewer} "
              f"| {s['vs_shuffled_db']:+.2f} dB | {s['spearman_png']:.2f} ({s['p_png']:.1g}) | {s['spearman_jpeg90']:.2f} |")
    best2 = max(r["selections"], key=lambda s: max(s["vs_fixed_db"] / 0.5, (s["fewer_tokens"] or 0) / 0.2))
    print(f"target 2 (>= 0.5 dB or >= 20 % fewer tokens): {'met' if meets_target2(best2) else 'MISSED'} by "
          f"{best2['rule']} "
          f"({best2['vs_fixed_db']:+.2f} dB, {best2['fewer_tokens'] or 0:.0%} fewer tokens)")
    best3 = max(r["selections"], key=lambda s: np.nan_to_num(s["spearman_png"], nan=-1))
    print(f"target 3 (Spearman with PNG size >= 0.6): {'met' if meets_target3(best3) else 'MISSED'} by "
          f"{best3['rule']} (rho {best3['spearman_png']:.2f}, its gain vs fixed {best3['vs_fixed_db']:+.2f} dB)")


@torch.no_grad()  # restores the caller's grad mode (the tests call main in-process)
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--heldout", type=Path, required=True, help="the held-out photos (POOL/heldout)")
    p.add_argument("--prefix", default="titok_prefix_default")
    p.add_argument("--alit", default="alit_default")
    p.add_argument("--titok", default="titok_default")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    p.add_argument("--max-images", type=int, help="only the first N crops (a quick look; the targets need all)")
    args = p.parse_args()
    report = {}
    titok = adatok.load(args.titok)
    images, names = heldout_crops(args.heldout, titok.image_size)
    if args.max_images:
        images, names = images[: args.max_images], names[: args.max_images]
    photos = sorted({n.split("@")[0] for n in names})
    print(f"held-out set: {len(images)} crops of {len(photos)} photo(s) ({', '.join(photos)}), {titok.image_size} px")
    complexity = image_complexity(images)
    titok_psnr = rate_distortion(titok, images, method=args.titok, preview=0).points[0].psnr
    report[args.titok] = {"tokens": titok.max_tokens, "psnr": titok_psnr}
    print(f"{args.titok}: {titok.max_tokens} tokens, {titok_psnr:.2f} dB")
    for name in (args.prefix, args.alit):
        model = adatok.load(name, **({"halting": "threshold"} if name == args.alit else {}))
        report[name] = adaptive_report(name, model, images, complexity)
        print_report(name, report[name])
    alit_64 = dict(zip(report[args.alit]["lengths"], report[args.alit]["psnr"])).get(titok.max_tokens)
    if alit_64 is not None:
        print(f"\ntarget 4b ({args.alit} at {titok.max_tokens} tokens >= {args.titok}): "
              f"{'met' if alit_64 >= titok_psnr else 'MISSED'} ({alit_64:.2f} vs {titok_psnr:.2f} dB, "
              f"{alit_64 - titok_psnr:+.2f})")
    report["heldout"] = {"crops": len(images), "photos": photos}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
