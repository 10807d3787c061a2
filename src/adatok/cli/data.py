"""``adatok data``: prepare training data (WebDataset tar shards; the real-photo pool)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="prepare training data: tar shards, the photo pool")
    actions = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    s = actions.add_parser(
        "shard", help="convert a folder of images into WebDataset tar shards",
        description="Write SRC's images (recursive, sorted) into DST/shard-000000.tar, ... "
        "with their original bytes (KEY.<ext>, KEY.json, and KEY.cls with --labelled). "
        "Unreadable images are skipped and reported.")
    s.add_argument("src", help="folder of images (with --labelled: SRC/<class>/<images>)")
    s.add_argument("dst", help="output folder for the shards")
    s.add_argument("--per-shard", type=_positive_int, default=1000, metavar="N",
                   help="samples per shard (default 1000)")
    s.add_argument("--labelled", action="store_true",
                   help="ImageFolder layout: class = first-level sub-folder, ids by sorted name")
    s.add_argument("--overwrite", action="store_true",
                   help="replace shards already in DST")
    s.set_defaults(data_func=_run_shard)

    ph = actions.add_parser(
        "photos", help="assemble the real-photo training pool (Debian packages + wheels)",
        description="Download the wallpaper/doc packages with apt-get download (never "
        "installed), copy their photos into DIR/train and DIR/heldout with their original "
        "bytes, and write DIR/manifest.json and DIR/LICENSES.md. Safe to re-run.")
    ph.add_argument("dir", help="output folder")
    ph.add_argument("--cache", default=None, metavar="DIR",
                    help="where downloaded .deb files are kept (default ~/.cache/adatok/debs)")
    ph.add_argument("--heldout-every", type=int, default=7, metavar="K",
                    help="every K-th photo (by sorted name) is held out (default 7; 0 = none)")
    ph.set_defaults(data_func=_run_photos)
    p.set_defaults(func=run)


def run(args) -> int:
    return args.data_func(args)


def _run_shard(args) -> int:
    from ..data.datasets import write_shards

    paths, skipped = write_shards(args.src, args.dst, samples_per_shard=args.per_shard,
                                  labelled=args.labelled, overwrite=args.overwrite)
    print(f"wrote {len(paths)} shard(s) to {args.dst}"
          + (f"; {skipped} unreadable file(s) skipped" if skipped else ""))
    return 1 if skipped else 0


def _run_photos(args) -> int:
    from ..data.photos import assemble_photo_pool

    summary = assemble_photo_pool(args.dir, cache=args.cache, heldout_every=args.heldout_every)
    # Skipped packages/files were already reported, one warning line each, on the
    # "adatok.data" logger.
    print(f"{summary['dest']}: {summary['train']} train + {summary['heldout']} held-out photos, "
          f"{summary['total_bytes'] / 1e6:.1f} MB ({summary['copied']} copied, "
          f"{summary['reused']} already there) in {summary['seconds']:.0f} s")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return value
