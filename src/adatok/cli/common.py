"""Arguments and helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
import sys

import torch

from ..data.images import iter_image_batches, list_image_files
from ..errors import AdatokError, ConfigError
from ..hub import load
from ..interface import Tokenizer


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="preset name (see `adatok models`), folder, weight file or hub repo id")
    p.add_argument("--weights", help="weight file or folder for a preset name (ours or official)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward (default: 8)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU; quantization stays float32)")


def checked_device(args) -> torch.device:
    """``--device`` (and ``--batch-size``) checked before any work: one-line errors."""
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise ConfigError(f"--device {args.device!r} is not a device name (cpu, cuda, cuda:0, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available")
    return device


def load_model(args) -> torch.nn.Module:
    return load(args.model, weights=args.weights, device=checked_device(args))


def load_tokenizer(args) -> Tokenizer:
    """``--model`` loaded, and a one-line error unless it is an image tokenizer (``adatok.interface``)."""
    model = load_model(args)
    if not isinstance(model, Tokenizer):
        raise ConfigError(f"--model {args.model}: a {type(model).__name__}, not an image tokenizer "
                          "(see `adatok models` for the tokenizers)")
    return model


def autocast(args, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(args.bf16))


def image_batches(args, size: int):
    """(number of files, generator of (paths, batch, errors)). Images are read lazily, one batch
    at a time; bad files are reported on stderr as they come, once each, and skipped."""
    paths = list_image_files(args.images)
    if not paths:
        raise AdatokError("no image files found in the given paths")

    def batches():
        for ok, batch, errors in iter_image_batches(paths, size, args.batch_size, on_error="skip"):
            for err in errors:
                print(f"adatok: skipped {err}", file=sys.stderr)
            yield ok, batch, errors

    return len(paths), batches()


class ReadableBatches:
    """The readable batches of a CLI run, as ``(paths, batch)``; bad files are reported on stderr
    (once each), counted in ``failed``, and drive the progress bar like the good ones."""

    def __init__(self, args, size: int, desc: str):
        self.total, self._batches = image_batches(args, size)
        self.desc = desc
        self.failed = 0

    def __iter__(self):
        bar = progress(self.total, self.desc)
        try:
            for paths, batch, errors in self._batches:
                self.failed += len(errors)
                bar.update(len(paths) + len(errors))
                if paths:
                    yield paths, batch
        finally:
            bar.close()


def progress(total: int, desc: str):
    from tqdm import tqdm

    # Only draw a bar for long runs and interactive terminals.
    return tqdm(total=total, desc=desc, unit="img", disable=total < 16 or not sys.stderr.isatty())
