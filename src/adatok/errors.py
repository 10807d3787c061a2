"""User-facing errors.

Every problem a user can cause (a bad file, a wrong tensor, an unknown model name) raises an
``AdatokError`` whose message is one line: *what* was wrong, *where* (file, argument), and
*what to do*. The CLI prints that line without a traceback; Python callers can catch it.
"""

from __future__ import annotations


class AdatokError(Exception):
    """Base class of every error adatok raises on purpose."""


class ConfigError(AdatokError, ValueError):
    """An unknown preset, a bad field value, or an inconsistent configuration."""


class InputError(AdatokError, ValueError):
    """A tensor or argument passed to a model is not what it expects."""


class ImageLoadError(AdatokError, OSError):
    """An image file could not be read or converted."""

    def __init__(self, path, problem: str, hint: str = ""):
        self.path = str(path)
        self.problem = problem
        msg = f"{self.path}: {problem}"
        if hint:
            msg += f" — {hint}"
        super().__init__(msg)


class CheckpointError(AdatokError, RuntimeError):
    """A checkpoint is unreadable, truncated, or belongs to another model."""


class OutputError(AdatokError, OSError):
    """An output file or folder cannot be written (a folder where a file is wanted, read-only,
    disk full). Raised before the work where it can be known then; nothing old is overwritten."""
