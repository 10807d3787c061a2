"""``adatok`` entry point: sub-commands, and one-line errors instead of tracebacks."""

from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from ..errors import AdatokError
from ..extras import missing_extra_message
from . import classify, convert, data, eval_fid, evaluate, generate, models, reconstruct, tokenize, train, viz

COMMANDS = [models, tokenize, reconstruct, evaluate, eval_fid, generate, convert, train, data, classify, viz]


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
    _tolerant_output()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # `adatok train R --resume train.steps=50`: key=value overrides may come after the flags
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
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


def _tolerant_output() -> None:
    """File names that are not valid in the terminal's encoding (a Latin-1 name on a UTF-8 system
    reaches Python as surrogates) must not crash a run half-way when printed: such characters
    are written as backslash escapes instead."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", "strict") == "strict":
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a closed or detached stream: leave it
                pass
