"""``adatok viz merges IMAGE``: which patches merged into which tokens, and which were pruned, per block."""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.images import load_image, save_image
from ..errors import ConfigError
from .classify import add_reduction_args, load_reduced, normalise
from .common import check_output_file


def add_parser(sub) -> None:
    p = sub.add_parser("viz", help="pictures of what a model does (merge maps of token reduction)")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    m = kinds.add_parser("merges", help="merge map per reducing block (ToMe-style; ImagePiece's "
                                        "non-semantic pool in a second row)",
                         description="Patches of one token share its mean colour (white borders between "
                                     "tokens); pruned patches are a grey checkerboard; blue = ImagePiece's non-semantic pool.")
    m.add_argument("image", help="one image file")
    add_reduction_args(m, default_method=None)
    m.add_argument("--out", default="merges.png", help="output PNG (default: merges.png)")
    m.set_defaults(func=run_merges)


def run_merges(args) -> int:
    from .. import reduction as R
    from ..viz import merge_figure

    check_output_file(args.out)
    clf, model, device = load_reduced(args, trace=True)
    if not R.is_patched(model):
        if args.reduction is None:
            R.apply(model, "imagepiece", trace=True)
        else:
            raise ConfigError("--reduction none: a merge map needs a reduction (tome, evit or imagepiece)")
    image = load_image(args.image, clf.image_size)
    with torch.inference_mode():
        model(normalise(image[None].to(device), clf))
    info = R.info(model)
    grid = tuple(model.patch_embed.grid_size)
    figure = merge_figure(image, info.blocks, grid, title=f"{info.method}: {info.tokens[-1]} tokens left")
    out = save_image(figure, Path(args.out))
    print(f"wrote {out} ({info.method}; tokens per block: {' '.join(map(str, info.tokens))})")
    return 0
