"""Arguments and helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
import errno
import os
import sys
import tempfile
from pathlib import Path

import torch

from ..data.images import iter_image_batches, list_image_files
from ..atomic import is_disk_full
from ..errors import AdatokError, ConfigError, OutputError
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


def image_batches(args, size: int, share=None):
    """(file paths, generator of (paths, batch, errors)). Images are read lazily, one batch
    at a time; bad files (and missing inputs) are reported on stderr as they come, once each,
    and skipped: a missing path among the arguments does not stop the others. When no input
    at all can be listed, that is a usage error. ``share`` (``torchrun``): a
    :class:`~adatok.cli.eval_metrics.Ranks`; this process reads only its share of the files and
    only rank 0 reports missing inputs."""
    missing: list = []
    paths = list_image_files(args.images, errors=missing)
    if not paths:  # nothing at all to do: a usage error (exit 2), not a skipped input
        if not missing:
            raise AdatokError("no image files found in the given paths")
        more = f" (and {len(missing) - 1} more bad path(s))" if len(missing) > 1 else ""
        raise AdatokError(f"{missing[0]}{more}")
    if share is not None:
        paths = share.share(paths)
        if not share.main:
            missing = []

    def batches():
        if missing:
            for err in missing:
                print(f"adatok: skipped {err}", file=sys.stderr)
            yield [], None, missing
        for ok, batch, errors in iter_image_batches(paths, size, args.batch_size, on_error="skip"):
            for err in errors:
                print(f"adatok: skipped {err}", file=sys.stderr)
            yield ok, batch, errors

    return paths, batches()


class ReadableBatches:
    """The readable batches of a CLI run, as ``(paths, batch)``; bad files are reported on stderr
    (once each), counted in ``failed``, and drive the progress bar like the good ones."""

    def __init__(self, args, size: int, desc: str, share=None):
        self.paths, self._batches = image_batches(args, size, share)
        self.total = len(self.paths)
        self.desc = desc
        self.failed = 0
        self.quiet = bool(getattr(args, "quiet", False))

    def __iter__(self):
        bar = progress(self.total, self.desc, self.quiet)
        try:
            for paths, batch, errors in self._batches:
                self.failed += len(errors)
                bar.update(len(paths) + len(errors))
                if paths:
                    yield paths, batch
        finally:
            bar.close()


def progress(total: int, desc: str, quiet: bool = False):
    from tqdm import tqdm

    # Only draw a bar (on stderr) for long runs and interactive terminals, unless --quiet.
    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr,
                disable=quiet or total < 16 or not sys.stderr.isatty())


def check_output_file(path, flag: str = "--out") -> Path:
    """Fail before any work (model loading, encoding) if ``path`` cannot be written as a file:
    a folder there, a file where a parent folder should be, no permission, a full disk."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} {path}: is a folder; give a file name, e.g. {path / 'out'}{path.suffix or ''}")
    _probe_folder(path.parent, flag, path)
    return path


def check_output_dir(path, flag: str = "--out", keep: bool = True) -> Path:
    """As :func:`check_output_file`, for an output folder (created if missing; with ``keep=False``
    the folders the check created are removed again, so a run that fails later writes nothing)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path}: is a file, not a folder; give a folder name")
    created = [p for p in [path, *path.parents] if not p.exists()]
    _probe_folder(path, flag, path)
    if not keep:
        for folder in created:  # deepest first
            folder.rmdir()
    return path


def _probe_folder(folder: Path, flag: str, shown: Path) -> None:
    """Create ``folder`` if needed and write (then delete) a small hidden file in it."""
    for parent in [folder, *folder.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{flag} {shown}: {parent} is a file, not a folder; pick another output path")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".adatok-probe.", suffix=".tmp") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if is_disk_full(e):
            raise OutputError(f"{flag} {shown}: disk full (no space left on device); free some space and "
                              "run again") from None
        if isinstance(e, PermissionError) or e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise OutputError(f"{flag} {shown}: cannot write to {folder} (permission denied or read-only); "
                              "pick another output path") from None
        raise OutputError(f"{flag} {shown}: cannot write to {folder} ({e.strerror or e}); pick another "
                          "output path") from None
