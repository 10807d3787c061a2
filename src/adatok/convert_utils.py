"""Checkpoint conversion machinery: a key table (regex -> replacement, optional tensor transform)
applied as a pure ``state_dict -> state_dict`` map, with strict checks that name what is wrong."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .errors import CheckpointError


@dataclass(frozen=True)
class KeyRule:
    """Source keys matching ``pattern`` (full match) become ``replacement`` (``re`` groups allowed);
    ``transform`` reshapes the tensor when the layouts differ (e.g. a 1x1 conv -> a linear)."""

    pattern: str
    replacement: str
    transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None


def squeeze_1x1(w: torch.Tensor) -> torch.Tensor:
    """1x1 conv weight ``O x I x 1 x 1`` -> linear weight ``O x I``."""
    return w.reshape(w.shape[0], w.shape[1]) if w.ndim == 4 else w


def rename_keys(state_dict: dict, rules: list[KeyRule], source: str = "checkpoint") -> dict:
    """Apply the first matching rule to every key. A key no rule matches is an error."""
    compiled = [(re.compile(r.pattern), r) for r in rules]
    out, unmatched = {}, []
    for key, value in state_dict.items():
        for regex, rule in compiled:
            m = regex.fullmatch(key)
            if m:
                new_key = m.expand(rule.replacement)
                out[new_key] = rule.transform(value) if rule.transform else value
                break
        else:
            unmatched.append(key)
    if unmatched:
        raise CheckpointError(f"{source}: {len(unmatched)} unexpected key(s) {_preview(unmatched)}")
    return out


def check_against_model(state_dict: dict, model: torch.nn.Module, source: str = "checkpoint") -> None:
    """Strict key and shape check of a (converted) state dict against a model, before loading,
    so the message names every missing/unexpected key and every shape mismatch at once."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state_dict))
        if tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s) {_preview(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s) {_preview(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es) {_preview(shapes)}")
    if problems:
        raise CheckpointError(
            f"{source} does not fit {type(model).__name__}: " + "; ".join(problems)
            + " — is it a checkpoint of another model or size?"
        )


def _preview(items: list, n: int = 4) -> str:
    shown = ", ".join(str(i) for i in items[:n])
    return f"[{shown}{', ...' if len(items) > n else ''}]"
