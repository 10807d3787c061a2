"""Shard paths: a folder, a list, or shell-style brace and glob patterns (``shard-{000..009}.tar``)."""

from __future__ import annotations

import glob
import re
from collections.abc import Sequence
from pathlib import Path

from ..errors import AdatokError

_BRACE_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?$")
_GLOB_CHARS = re.compile(r"[*?[]")


def expand_braces(pattern: str) -> list[str]:
    """Shell-style brace expansion: ``"a{0..2}"`` -> a0 a1 a2, ``"{x,y}z"`` -> xz yz.

    Numeric ranges keep zero padding (``{000..002}`` -> 000 001 002), may count down and may
    take a step (``{0..10..5}``); lists may nest. A brace pair without a top-level comma or a
    range is kept literally, as in bash.
    """
    start = 0
    while True:
        open_at = pattern.find("{", start)
        if open_at < 0:
            return [pattern]
        close_at, commas = _match_brace(pattern, open_at)
        if close_at < 0:
            return [pattern]
        body = pattern[open_at + 1:close_at]
        head, tail = pattern[:open_at], pattern[close_at + 1:]
        if commas:
            cuts = [open_at] + commas + [close_at]
            choices = [pattern[a + 1:b] for a, b in zip(cuts, cuts[1:])]
        elif _BRACE_RANGE.match(body):
            choices = _numeric_range(body)
        else:
            start = open_at + 1  # literal braces: look for the next group
            continue
        return [out for choice in choices for out in expand_braces(head + choice + tail)]


def _match_brace(text: str, open_at: int) -> tuple[int, list[int]]:
    """Index of the ``}`` closing ``text[open_at]`` (-1 if none) and its top-level commas."""
    depth, commas = 0, []
    for i in range(open_at, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i, commas
        elif c == "," and depth == 1:
            commas.append(i)
    return -1, []


def _numeric_range(body: str) -> list[str]:
    first, last, step = _BRACE_RANGE.match(body).groups()
    a, b, k = int(first), int(last), abs(int(step or 1)) or 1
    padded = any(len(s.lstrip("-")) > 1 and s.lstrip("-")[0] == "0" for s in (first, last))
    width = max(len(first), len(last)) if padded else 0
    values = range(a, b + 1, k) if a <= b else range(a, b - 1, -k)
    return [f"{v:0{width}d}" for v in values]


def expand_shards(shards: str | Path | Sequence[str | Path]) -> list[Path]:
    """Shard paths from a folder (its ``*.tar``, sorted), a list, or brace/glob patterns.

    Order is kept: list order, brace order, sorted glob matches. ``::`` joins patterns.
    Raises AdatokError (one line) naming the folder or pattern that matched nothing.
    """
    if isinstance(shards, (str, Path)):
        items = str(shards).split("::") if isinstance(shards, str) else [shards]
    else:
        items = list(shards)
    paths: list[Path] = []
    for item in items:
        if Path(item).is_dir():
            found = sorted(Path(item).glob("*.tar"))
            if not found:
                raise AdatokError(f"{item}: folder holds no .tar shards")
            paths += found
            continue
        for name in expand_braces(str(item)):
            if _GLOB_CHARS.search(name):
                found = sorted(Path(p) for p in glob.glob(name))
                if not found:
                    raise AdatokError(f"{name}: no shard matches this pattern")
                paths += found
            elif Path(name).is_file():
                paths.append(Path(name))
            else:
                raise AdatokError(f"{name}: no such shard file" + (
                    f" (expanded from {item})" if name != str(item) else ""))
    if not paths:
        raise AdatokError("no shards given — pass a folder, files or a pattern")
    return paths
