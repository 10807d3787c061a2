"""``adatok eval IMAGES --model M --sweep [--report DIR]``: the rate–distortion sweep of a tokenizer
(every allowed length and per-image selections of an adaptive one), classical baselines at the same
bytes, and the length-vs-complexity analysis (docs/rate_distortion.md). ``adatok eval``'s ``--lpips``
and ``--rfid`` / ``--inception FILE`` add LPIPS and rFID / IS to every point."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import torch

from ..errors import ConfigError
from ..interface import AdaptiveTokenizer
from .common import ReadableBatches, check_output_dir, checked_device, load_tokenizer


def add_sweep_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("rate–distortion sweep (--sweep; docs/rate_distortion.md)")
    g.add_argument("--sweep", action="store_true",
                   help="rate–distortion points: every allowed length and per-image selections of an adaptive "
                        "tokenizer (one point for a fixed one), thumbnail/JPEG/WebP at the same bits per pixel, "
                        "and chosen length against PNG/JPEG size")
    g.add_argument("--report", metavar="DIR",
                   help="with --sweep: write points.csv, report.json, rd_psnr.png, length_complexity.png and "
                        "report.html into DIR")
    g.add_argument("--lengths", type=int, nargs="+", help="with --sweep: only these allowed lengths (default: all)")
    g.add_argument("--psnr-targets", type=float, nargs="*",
                   help="with --sweep: dB targets of the per-image psnr selection (default: the set's mean PSNR at "
                        "each length but the longest; none: no psnr selection)")
    g.add_argument("--lambdas", type=float, nargs="*",
                   help="with --sweep, prefix tokenizers: dB-per-token prices of the Lagrangian selection "
                        "(default: the slopes of the set's mean curve; none: skip)")
    g.add_argument("--jpeg-qualities", type=int, nargs="*", help="with --sweep: JPEG qualities (default 1 5 10 20 40)")
    g.add_argument("--webp-qualities", type=int, nargs="*", help="with --sweep: WebP qualities (default 0 5 10 20 40)")
    g.add_argument("--sweep-seed", type=int, default=0,
                   help="with --sweep: seed of random halting rules and of the allocation check's shuffles")


def check_sweep_args(args) -> None:
    """Sweep-only flags without ``--sweep`` are a usage error (one line), before any work."""
    if getattr(args, "sweep", False):
        return
    used = [flag for flag, value in (("--report", args.report), ("--lengths", args.lengths),
                                     ("--psnr-targets", args.psnr_targets), ("--lambdas", args.lambdas),
                                     ("--jpeg-qualities", args.jpeg_qualities),
                                     ("--webp-qualities", args.webp_qualities)) if value is not None]
    if used:
        raise ConfigError(f"{', '.join(used)} only apply to a rate–distortion sweep: add --sweep")


def _check_qualities(values, flag: str, low: int, high: int):
    if values is None:
        return None
    bad = [q for q in values if not low <= q <= high]
    if bad:
        raise ConfigError(f"{flag} {bad}: qualities must lie in [{low}, {high}]")
    return tuple(values)


def _load_all(args, size: int):
    batches = ReadableBatches(args, size, "sweep")
    paths, images = [], []
    for ok, batch in batches:
        paths += ok
        images.append(batch)
    return paths, (torch.cat(images) if images else None), batches.failed


def _lpips_fn(args, device):
    """LPIPS of every point with ``--lpips`` (weights from ``--lpips-dir`` / $ADATOK_WEIGHTS_DIR, as plain eval)."""
    if not args.lpips:
        return None
    from ..eval.lpips import lpips_distance
    from .eval_metrics import load_lpips_checked

    return functools.partial(lpips_distance, load_lpips_checked(args.lpips_dir, device), batch_size=args.batch_size)


def _inception(args):
    """The FID Inception with ``--rfid`` / ``--inception`` (as plain eval), else None; a missing file is a
    one-line error before the tokenizer is loaded."""
    if not (args.rfid or args.inception):
        return None
    from .eval_metrics import load_inception_checked

    return load_inception_checked(args.inception, checked_device(args))


def _protocol(args, model, n_images: int, rfid: bool = False) -> list:
    k = model.codebook_size
    allowed = model.allowed_lengths if isinstance(model, AdaptiveTokenizer) else (model.max_tokens,)
    bits = f"tokens x log2({k}) = tokens x {torch.tensor(float(k)).log2().item():.3g} bits" if k else \
        "continuous tokens: no bit count"
    lines = [f"{n_images} image(s), resized (shorter side, bicubic) and center-cropped to {model.image_size} px, "
              "as adatok reads every image",
              "reconstructions rounded to 8 bits before PSNR / SSIM" + (" / LPIPS" if args.lpips else ""),
              f"bits per image: {bits}; a per-image selection adds log2({len(allowed)}) bits (the chosen length); "
              f"bits per pixel: bits / {model.image_size}^2",
              "thumbnail: area downsample to the largest square whose uint8 RGB bytes fit the budget, bicubic "
              "upsample; JPEG / WebP: Pillow in memory, actual file bytes",
              "complexity: PNG and JPEG (q=90) bytes of each evaluated image; Spearman rho with two-sided p",
              f"allocation check: chosen lengths vs one length at the same mean (interpolated) and vs the lengths "
              f"shuffled across images (seed {args.sweep_seed}, 100 permutations)"]
    if rfid:
        lines.append(f"rFID / IS: FID Inception features of each point's 8-bit reconstructions against the "
                     f"{n_images} input image(s), whose statistics are computed once; biased high on few images: "
                     "compare points of this set only (published rFID: 50,000 ImageNet val images)")
    return lines


def run_sweep(args) -> int:
    from ..eval.baselines import JPEG_QUALITIES, WEBP_QUALITIES, baseline_points
    from ..eval.complexity import allocation_check, image_complexity, length_complexity
    from ..eval.rate_distortion import rate_distortion

    check_sweep_args(args)
    jpeg_q = _check_qualities(args.jpeg_qualities, "--jpeg-qualities", 0, 100)
    webp_q = _check_qualities(args.webp_qualities, "--webp-qualities", 0, 100)
    if args.report is not None:
        check_output_dir(args.report, "--report")
    inception = _inception(args)
    model = load_tokenizer(args)
    adaptive = isinstance(model, AdaptiveTokenizer)
    if args.lengths is not None and not adaptive:
        raise ConfigError(f"--lengths: {args.model} is a fixed-length tokenizer ({model.max_tokens} tokens an image); "
                          "drop --lengths")
    if args.lengths is not None:
        model.sweep_lengths(tuple(args.lengths))  # bad lengths: one line before reading images
    device = next(model.parameters()).device
    lpips = _lpips_fn(args, device)
    paths, images, failed = _load_all(args, model.image_size)
    if images is None:
        print(f"adatok: no image could be read ({failed} failed)")
        return 1
    reference = None
    if inception is not None:  # the inputs' statistics, once for every point (tokenizer and baselines)
        from ..eval.rd_inception import inception_reference

        reference = inception_reference(inception, images, args.batch_size)
    name = Path(args.model).name if Path(args.model).exists() else str(args.model)  # a folder: its name
    sweep = rate_distortion(model, images, method=name, lengths=args.lengths, psnr_targets=args.psnr_targets,
                            lambdas=args.lambdas, lpips=lpips, batch_size=args.batch_size, seed=args.sweep_seed,
                            inception=reference)
    budgets = [p.bits / 8 for p in sweep.points if p.bits is not None]
    baselines = baseline_points(images, budgets, jpeg_q if jpeg_q is not None else JPEG_QUALITIES,
                                webp_q if webp_q is not None else WEBP_QUALITIES, lpips=lpips,
                                inception=reference, batch_size=args.batch_size)
    complexity = correlations = allocation = None
    if sweep.selections:
        complexity = image_complexity(images)
        correlations = {p.label: length_complexity(p.lengths, complexity) for p in sweep.selections}
        full = tuple(sweep.lengths) == tuple(sweep.allowed_lengths)
        if full:  # the chosen lengths are all on the swept curve
            allocation = {p.label: allocation_check(sweep.curves, sweep.lengths, p.lengths, seed=args.sweep_seed)
                          for p in sweep.selections}
    _print(sweep.points + baselines, correlations, allocation, len(paths), reference)
    if args.report is not None:
        from ..eval.report import write_report

        grid = sweep.selections[len(sweep.selections) // 2] if sweep.selections else None
        out = write_report(args.report, sweep, baselines, complexity=complexity, correlations=correlations,
                           allocation=allocation, protocol=_protocol(args, model, len(paths), reference is not None),
                           grid_selection=grid)
        print("report: " + ", ".join(str(p) for p in out.values()))
    if failed:
        print(f"{failed} file(s) skipped")
    return 1 if failed else 0


def _print(points, correlations, allocation, n: int, reference=None) -> None:
    print(f"{n} image(s)")
    rfid = reference is not None
    print(f"{'method':<34} {'label':<22} {'tokens':>7} {'bits':>8} {'bpp':>8} {'PSNR':>7} {'SSIM':>6} {'LPIPS':>6}"
          + (f" {'rFID':>9} {'IS':>7}" if rfid else ""))

    def f(v, spec):
        return format(v, spec) if v is not None else "-"

    for p in points:
        print(f"{p.method:<34} {p.label:<22} {f(p.tokens, '7.1f'):>7} {f(p.bits, '8.1f'):>8} {f(p.bpp, '8.4f'):>8} "
              f"{p.psnr:7.2f} {p.ssim:6.3f} {f(p.lpips, '6.3f'):>6}"
              + (f" {f(p.rfid, '9.4f'):>9} {f(p.inception_score, '7.4f'):>7}" if rfid else ""))
    if rfid:
        print(f"rFID / IS against the {reference.images} input image(s) (IS of the inputs "
              f"{reference.inception_score:.4f})"
              + ("; rFID is biased upward below 50k images, compare points of this set only (docs/evaluation.md)"
                 if reference.images < 50000 else ""))
    for label, measures in (correlations or {}).items():
        text = ", ".join(f"{k}: rho {s['rho']:.2f} (p {s['p']:.2g})" if "note" not in s else f"{k}: undefined, {s['note']}"
                         for k, s in measures.items())
        print(f"length vs complexity, {label}: {text}")
    for label, a in (allocation or {}).items():
        print(f"allocation, {label}: {a['chosen_psnr']:.2f} dB at {a['mean_tokens']:.1f} tokens; fixed "
              f"{a['fixed_psnr']:.2f}, shuffled {a['shuffled_psnr']:.2f} dB")
