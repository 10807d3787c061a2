"""Files written whole or not at all: a temp file beside the target is filled, synced to disk and
renamed over the target, so a reader (or a resumed run after a crash) sees the old file or the new
one, never half of one. One mechanism for checkpoints, exported models, token files, shards and
the photo pool.

The new file gets the permissions of any new file (``0o666`` less the umask), not the ``0o600`` of
``tempfile.mkstemp``: exported models and checkpoints are meant to be read by others. A full disk
(or quota) while writing is an :class:`~adatok.errors.OutputError` saying so; the old file is kept.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import OutputError

_FULL = (errno.ENOSPC, errno.EDQUOT)


def atomic_write_path(target, fill: Callable[[Path], None]) -> Path:
    """``fill(tmp)`` writes the new content to the path ``tmp`` (for writers that want a file name,
    e.g. safetensors' ``save_file``). ``tmp`` is hidden and ends in ``.tmp``, so no glob for the
    target's kind (``*.tar``, ``*.safetensors``) picks up a leftover of a killed process."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as e:
        raise _output_error(target, e) from None
    tmp = Path(name)
    try:
        os.close(fd)
        fill(tmp)
        # after fill: some writers (safetensors) replace the file with one of their own, mode 0600
        os.chmod(tmp, 0o666 & ~current_umask())
        with open(tmp, "r+b") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except Exception as e:
        if is_disk_full(e, target.parent):
            raise OutputError(f"{target}: disk full (no space left on device) — nothing was written and any "
                              "earlier file is intact; free some space and run again") from None
        raise
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


def current_umask() -> int:
    """The process umask (read from /proc where it can be, without the set-and-restore race)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def is_disk_full(error: BaseException, folder=None) -> bool:
    """Whether ``error`` (or an error it was raised from) is ENOSPC/EDQUOT. Writers that wrap the
    OS error in their own (torch's "unexpected pos ...") are recognised by the folder's free space."""
    seen = set()
    e = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _FULL:
            return True
        if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
            return True
        e = e.__cause__ or e.__context__
    if folder is not None and "unexpected pos" in str(error):
        try:
            st = os.statvfs(folder)
            return st.f_bavail * st.f_frsize < (1 << 20)
        except OSError:
            return False
    return False


def _output_error(target: Path, e: OSError) -> OutputError:
    if e.errno in _FULL:
        return OutputError(f"{target}: disk full (no space left on device); free some space and run again")
    if isinstance(e, (FileExistsError, NotADirectoryError)) or e.errno == errno.ENOTDIR:
        return OutputError(f"{target}: cannot create it, a part of the path is a file, not a folder "
                           "— pick another output path")
    if isinstance(e, PermissionError) or e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"{target}: cannot write there (permission denied or read-only) — pick another "
                           "output path")
    return OutputError(f"{target}: cannot write there ({e.strerror or e}) — pick another output path")
