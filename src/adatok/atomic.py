"""Files written whole or not at all: a temp file beside the target is filled, synced to disk and
renamed over the target, so a reader (or a resumed run after a crash) sees the old file or the new
one, never half of one. One mechanism for checkpoints, exported models, token files, shards and
the photo pool."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def atomic_write_path(target, fill: Callable[[Path], None]) -> Path:
    """``fill(tmp)`` writes the new content to the path ``tmp`` (for writers that want a file name,
    e.g. safetensors' ``save_file``). ``tmp`` is hidden and ends in ``.tmp``, so no glob for the
    target's kind (``*.tar``, ``*.safetensors``) picks up a leftover of a killed process."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        fill(tmp)
        with open(tmp, "r+b") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def atomic_write(target, write: Callable[[BinaryIO], None]) -> Path:
    """``write(f)`` writes the new content to the open binary file ``f``."""
    def fill(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)

    return atomic_write_path(target, fill)


def atomic_write_bytes(target, data: bytes) -> Path:
    return atomic_write(target, lambda f: f.write(data))
