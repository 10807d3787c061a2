"""``adatok convert``: an official checkpoint (file, hub folder or repo id) -> our format."""

from __future__ import annotations

from ..errors import ConfigError
from ..hub import load, save
from .common import check_output_dir


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="convert an official checkpoint to adatok's format (safetensors + config.json)")
    p.add_argument("source", help="official weight file, hub folder or repo id (or a preset name with --weights)")
    p.add_argument("dest", help="output folder")
    p.add_argument("--weights", help="weight file when SOURCE is a preset name")
    p.add_argument("--heads", type=int, help="attention head count(s) of a bare official file whose width is not "
                   "an official size (its tensors do not tell; TiTok: encoder and decoder)")
    p.set_defaults(func=run)


def run(args) -> int:
    check_output_dir(args.dest, "DEST")
    if args.heads is not None and args.heads < 1:
        raise ConfigError(f"--heads must be >= 1, got {args.heads}")
    extra = {"heads": args.heads} if args.heads is not None else {}
    model = load(args.source, weights=args.weights, **extra)
    path = save(model, args.dest)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {path} ({type(model).__name__}, {n / 1e6:.1f}M parameters)")
    return 0
