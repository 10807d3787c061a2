"""``adatok convert``: an official checkpoint (file, hub folder or repo id) -> our format."""

from __future__ import annotations

from ..hub import load, save


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="convert an official checkpoint to adatok's format (safetensors + config.json)")
    p.add_argument("source", help="official weight file, hub folder or repo id (or a preset name with --weights)")
    p.add_argument("dest", help="output folder")
    p.add_argument("--weights", help="weight file when SOURCE is a preset name")
    p.set_defaults(func=run)


def run(args) -> int:
    model = load(args.source, weights=args.weights)
    path = save(model, args.dest)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {path} ({type(model).__name__}, {n / 1e6:.1f}M parameters)")
    return 0
