"""``adatok train CONFIG [key=value ...]`` — also under ``torchrun --nproc_per_node N -m adatok train``."""

from __future__ import annotations

import logging

from ..errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a recipe (a shipped name, see --list, or a YAML file)",
        description="Train from a YAML recipe; key=value arguments override it (train.steps=100 "
        "data.train=photos/ optim.lr=2e-4). Same command under torchrun for N processes.",
    )
    p.add_argument("config", nargs="?", help="recipe: a shipped name (see --list) or a YAML file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT/checkpoints/latest.pt exactly")
    p.add_argument("--allow-changes", action="store_true",
                   help="with --resume: continue even though the recipe differs from the checkpoint's (model, "
                        "batch size, lr, ...); without it such a resume is refused, naming what differs")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--list", action="store_true", help="print the shipped recipes' names and exit")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.list:
        from ..recipes import RECIPE_DIR, list_recipes

        print(f"shipped recipes ({RECIPE_DIR}); `adatok train NAME key=value ...`:")
        for name in list_recipes():
            print(f"  {name}")
        return 0
    if args.config is None:
        raise ConfigError("adatok train needs a recipe: a shipped name (adatok train --list) or a YAML file")
    from ..train import run as train_run

    logging.basicConfig(level=logging.INFO, format="adatok: %(message)s")
    if args.allow_changes and not args.resume:
        from ..errors import ConfigError

        raise ConfigError("--allow-changes only applies with --resume")
    path = train_run(args.config, args.overrides, resume=args.resume, device=args.device,
                     allow_changes=args.allow_changes)
    print(f"done: model saved to {path}")
    return 0
