"""``adatok eval-fid A [B]``: the FID between two image sets (and the Inception Score of B), e.g.
generated samples against ImageNet statistics. Each side is a folder of images, an ``.npz`` of
samples in the ADM evaluator's format (``arr_0`` uint8 N x H x W x 3), or a statistics ``.npz``
(ADM's reference batches: ``mu`` / ``sigma``; or one ``--save-stats`` wrote). Streams: one batch
of images in memory; under ``torchrun`` each rank reads its share and the statistics are summed."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import ConfigError, InputError
from .eval_metrics import Ranks, add_inception_arg, distributed, find_inception


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval-fid", help="FID between two image sets (folders, ADM .npz samples or statistics files)",
        description="FID of A against B, and the Inception Score of B when B holds images. A and B: a folder "
        "of images (resized on the shorter side and center-cropped to --size), an .npz of samples (arr_0: "
        "uint8 N x H x W x 3, the ADM evaluator's format), or an .npz of statistics (mu, sigma: ADM's "
        "reference batches or --save-stats). The Inception resizes every image to 299 x 299 itself.")
    p.add_argument("a", metavar="A", help="reference set: folder, samples .npz or statistics .npz")
    p.add_argument("b", metavar="B", nargs="?", help="compared set (omit with --save-stats to only save A's statistics)")
    add_inception_arg(p)
    p.add_argument("--save-stats", metavar="FILE", help="also write A's statistics (mu, sigma, n) to this .npz")
    p.add_argument("--size", type=int, default=256, help="folders: side images are cropped to (default 256; "
                   "images already that size are read unchanged)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    p.add_argument("--batch-size", type=int, default=50, help="images per Inception forward (default 50)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


@dataclass
class ImageSet:
    """One side of the comparison: ``kind`` is "folder", "samples" or "stats"."""

    path: Path
    kind: str
    files: Optional[list] = None
    count: int = 0
    stats: Optional[tuple] = None


def open_set(path: str, flag: str) -> ImageSet:
    """What ``path`` holds, checked from its listing / header only (one-line errors)."""
    from ..data.images import list_image_files
    from ..eval.fid import load_stats
    from ..eval.samples_npz import npz_sample_shape

    p = Path(path)
    if p.is_dir():
        files = list_image_files([p])
        if not files:
            raise InputError(f"{flag} {p}: no image files in this folder")
        return ImageSet(p, "folder", files=files, count=len(files))
    if not p.is_file():
        raise InputError(f"{flag} {p}: no such file or folder; give a folder of images or an .npz")
    if p.suffix.lower() != ".npz":
        raise InputError(f"{flag} {p}: expected a folder of images or an .npz (samples arr_0, or mu / sigma)")
    try:
        stats = load_stats(p)
    except Exception as e:  # noqa: BLE001 - any unreadable file becomes one line
        raise InputError(f"{flag} {p}: not a readable .npz file ({type(e).__name__}: {e})") from None
    if stats is not None:
        return ImageSet(p, "stats", stats=stats)
    return ImageSet(p, "samples", count=npz_sample_shape(p)[0])


def batches_of(s: ImageSet, args, ranks: Ranks):
    """uint8 ``B x 3 x H x W`` batches of this rank's share of ``s``."""
    from ..data.images import iter_image_batches, to_uint8
    from ..eval.samples_npz import iter_npz_images

    if s.kind == "samples":
        yield from iter_npz_images(s.path, args.batch_size, ranks.rank, ranks.world)
        return
    for _, batch, errors in iter_image_batches(ranks.share(s.files), args.size, args.batch_size, on_error="skip"):
        for err in errors:
            print(f"adatok: skipped {err}", file=sys.stderr)
        if len(batch):
            yield to_uint8(batch)


def statistics(s: ImageSet, model, args, ranks: Ranks):
    """``(mu, sigma, n, inception score or None)`` of one side (every rank calls it)."""
    from ..eval.fid import stats_of
    from .common import progress

    if s.kind == "stats":
        return (*s.stats, None, None)
    bar = progress(len(ranks.share(range(s.count))), s.path.name, args.quiet)
    try:
        features, scores = stats_of(model, batches_of(s, args, ranks), bar)
    finally:
        bar.close()
    if features.n < 2:
        raise InputError(f"{s.path}: FID needs at least 2 readable images, got {features.n}")
    return (*features.mean_cov(), features.n, scores.score())


def run(args) -> int:
    from ..eval.fid import frechet_distance
    from ..eval.inception import load_inception
    from .common import check_output_file, checked_device

    if args.b is None and not args.save_stats:
        raise ConfigError("give two sets A B to compare (or A with --save-stats FILE to only save its statistics)")
    if args.size < 1:
        raise ConfigError(f"--size must be >= 1, got {args.size}")
    a = open_set(args.a, "A")
    b = open_set(args.b, "B") if args.b is not None else None
    if args.save_stats:
        if a.kind == "stats":
            raise ConfigError(f"--save-stats: A ({a.path}) is a statistics file already")
        check_output_file(args.save_stats, "--save-stats")
    weights = find_inception(args.inception)  # before any work: one line naming where it looked
    with distributed(args) as ranks:
        device = checked_device(args)
        model = load_inception(weights, device=device)
        mu_a, sigma_a, n_a, _ = statistics(a, model, args, ranks)
        if args.save_stats and ranks.main:
            _save(args.save_stats, mu_a, sigma_a, n_a)
        if b is None:
            if ranks.main:
                print(f"wrote the statistics of {n_a} image(s) of {a.path} to {args.save_stats}")
            return 0
        mu_b, sigma_b, n_b, is_b = statistics(b, model, args, ranks)
        if not ranks.main:
            return 0
        fid = frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
        line = f"FID {fid:.4f} (A: {_count(n_a)} of {a.path}; B: {_count(n_b)} of {b.path})"
        if is_b is not None:
            line += f", IS of B {is_b:.4f}"
        print(line)
        few = [n for n in (n_a, n_b) if n is not None and n < 50000]
        if few:
            print(f"note: {min(few)} image(s) in a set; FID is biased upward below 50k images "
                  "(see docs/evaluation.md)", file=sys.stderr)
    return 0


def _count(n) -> str:
    return f"{n} image(s)" if n is not None else "statistics"


def _save(path, mu, sigma, n) -> None:
    import io

    import numpy as np

    from ..atomic import atomic_write

    def write(f):
        buf = io.BytesIO()
        np.savez(buf, mu=mu, sigma=sigma, n=n)
        f.write(buf.getvalue())

    atomic_write(path, write)
