"""``adatok data``: prepare training data (WebDataset tar shards; the real-photo pool)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="prepare training data: tar shards, the photo pool, token files")
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

    r = actions.add_parser(
        "resize", help="copy a folder of images with the shorter side resized (for fast training)",
        description="Write every image of SRC (recursive, same relative paths) to DST as a JPEG "
        "(quality 95) whose shorter side is N pixels (bicubic, antialiased; smaller images are "
        "copied as they are). Multi-megapixel photos then decode fast enough for random crops.")
    r.add_argument("src", help="folder of images (searched recursively)")
    r.add_argument("dst", help="output folder (same relative paths, .jpg)")
    r.add_argument("--shorter-side", type=_positive_int, default=256, metavar="N",
                   help="shorter side of the copies in pixels (default 256)")
    r.set_defaults(data_func=_run_resize)

    t = actions.add_parser(
        "pretokenize", help="tokenize a dataset once into a token file (for generator training)",
        description="Encode every image of SRC (folder, ImageFolder tree with --labelled, or shards) with "
        "--tokenizer into OUT (.safetensors or .npz: ids, lengths, labels): the center crop, plus its "
        "mirror (--flip) and VIEWS-1 seeded random crops. Unreadable images are reported and skipped. "
        "Under torchrun each rank encodes its share and rank 0 merges one file; parts are kept in OUT.parts "
        "until then, so running an interrupted command again skips the parts already written.")
    t.add_argument("src", help="folder of images, ImageFolder tree (--labelled) or shard pattern")
    t.add_argument("out", help="token file to write (.safetensors or .npz)")
    t.add_argument("--tokenizer", required=True, help="tokenizer preset, folder, weight file or hub repo id")
    t.add_argument("--weights", help="weight file for a tokenizer preset name")
    t.add_argument("--labelled", action="store_true", help="ImageFolder layout: class = first-level sub-folder")
    t.add_argument("--views", type=_positive_int, default=1, metavar="N", help="views per image (default 1)")
    t.add_argument("--flip", action="store_true", help="also the mirrored center crop")
    t.add_argument("--criterion", help="adaptive tokenizers: the length criterion passed to encode")
    t.add_argument("--threshold", type=float, help="adaptive tokenizers: the criterion's threshold")
    t.add_argument("--batch-size", type=_positive_int, default=32, help="images per forward (default 32)")
    t.add_argument("--workers", type=int, default=0, help="image-loading processes (default 0: in this process)")
    t.add_argument("--device", default="cpu",
                   help="cpu, cuda, cuda:1, ... (default: cpu; under torchrun cuda means each rank's own GPU)")
    t.add_argument("--part-size", type=_positive_int, default=1024, metavar="N",
                   help="rows per part written as it finishes (resume and torchrun split unit; default 1024)")
    t.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU; quantization stays float32)")
    t.set_defaults(data_func=_run_pretokenize)
    p.set_defaults(func=run)


def run(args) -> int:
    return args.data_func(args)


def _run_shard(args) -> int:
    from ..data.shard_writer import write_shards

    paths, skipped = write_shards(args.src, args.dst, samples_per_shard=args.per_shard,
                                  labelled=args.labelled, overwrite=args.overwrite)
    print(f"wrote {len(paths)} shard(s) to {args.dst}"
          + (f"; {skipped} unreadable file(s) skipped" if skipped else ""))
    return 1 if skipped else 0


def _run_photos(args) -> int:
    from .photos import assemble_photo_pool

    summary = assemble_photo_pool(args.dir, cache=args.cache, heldout_every=args.heldout_every)
    # Skipped packages/files were already reported, one warning line each, on the
    # "adatok.data" logger.
    print(f"{summary['dest']}: {summary['train']} train + {summary['heldout']} held-out photos, "
          f"{summary['total_bytes'] / 1e6:.1f} MB ({summary['copied']} copied, "
          f"{summary['reused']} already there) in {summary['seconds']:.0f} s")
    return 0


def _run_resize(args) -> int:
    import sys
    from pathlib import Path

    from ..data.images import list_image_files, read_image
    from ..errors import ImageLoadError

    src, dst, side = Path(args.src), Path(args.dst), args.shorter_side
    written = failed = 0
    for path in list_image_files(src):
        try:
            image = read_image(path)
        except ImageLoadError as e:
            print(f"adatok: skipped {e}", file=sys.stderr)
            failed += 1
            continue
        if image.mode != "RGB":
            image = image.convert("RGB")
        scale = side / min(image.size)
        if scale < 1:
            size = (max(side, round(image.size[0] * scale)), max(side, round(image.size[1] * scale)))
            image = image.resize(size, resample=3, reducing_gap=3.0)  # 3 = bicubic
        target = (dst / path.relative_to(src)).with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, quality=95)
        written += 1
    print(f"wrote {written} image(s) to {dst} (shorter side {side})" + (f"; {failed} skipped" if failed else ""))
    return 1 if failed else 0


def _run_pretokenize(args) -> int:
    import torch

    from ..tokenizers.pretokenize import pretokenize
    from ..train.distributed import setup, teardown
    from .common import check_output_file, load_model

    args.model = args.tokenizer
    check_output_file(args.out, "OUT")
    import os

    # torchrun: one rank per process (gloo on CPU, nccl on GPU; --device cuda = the rank's own GPU)
    info = setup(args.device) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
    rank, world = (info.rank, info.world_size) if info else (0, 1)
    try:
        if info:
            args.device = str(info.device)
        tokenizer = load_model(args)
        s = pretokenize(args.src, args.out, tokenizer, tokenizer_name=args.tokenizer, weights=args.weights or "",
                        labelled=args.labelled, views=args.views, flip=args.flip, batch_size=args.batch_size,
                        workers=args.workers, autocast_dtype=torch.bfloat16 if args.bf16 else None,
                        encode_kwargs={k: v for k, v in (("criterion", args.criterion),
                                                         ("threshold", args.threshold)) if v is not None},
                        part_size=args.part_size, rank=rank, world_size=world)
    finally:
        teardown()
    if rank != 0:
        return 0
    reused = f", {s['reused']} of {s['parts']} parts already written" if s["reused"] else ""
    print(f"wrote {s['rows']} rows ({s['images']} images, {s['lengths']}) to {s['out']} in {s['seconds']:.0f} s"
          + reused + (f"; {s['skipped']} unreadable image(s) skipped" if s["skipped"] else ""))
    return 1 if s["skipped"] else 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return value
