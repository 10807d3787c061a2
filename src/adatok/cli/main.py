"""``adatok`` entry point: sub-commands, and one-line errors instead of tracebacks."""

from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from ..errors import AdatokError
from ..extras import missing_extra_message
from . import classify, convert, data, evaluate, generate, models, reconstruct, tokenize, train, viz

COMMANDS = [models, tokenize, reconstruct, evaluate, generate, convert, train, data, classify, viz]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adatok",
        description="Adaptive image tokens: tokenize, reconstruct, evaluate and train TiTok and ALIT "
        "tokenizers, generate with MaskGIT, classify with token reduction (ImagePiece, ToMe, EViT). "
        "Images of any size/mode are converted to RGB, resized (shorter side, bicubic) and "
        "center-cropped to the model's size.",
    )
    parser.add_argument("--version", action="version", version=f"adatok {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AdatokError as e:
        print(f"adatok: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("adatok: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # an unexpected bug: keep the traceback when asked for it
        message = missing_extra_message(e) if isinstance(e, ImportError) else None
        if message:  # an optional dependency is missing: name the extra that installs it
            print(f"adatok: error: {message}", file=sys.stderr)
            return 2
        if os.environ.get("ADATOK_DEBUG"):
            raise
        print(f"adatok: internal error: {type(e).__name__}: {e} (set ADATOK_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
