"""Frozen-dataclass configs <-> plain dicts (for config.json), with clear errors on bad fields."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def config_to_dict(config) -> dict:
    """Nested dataclass -> JSON-ready dict (tuples become lists)."""
    return dataclasses.asdict(config)


def config_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build ``cls`` from a dict, recursing into nested dataclass fields.

    Unknown keys are an error (a typo must not silently become a default).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {unknown}; valid fields are {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = config_from_dict(hint, value)
        elif (hint is tuple or typing.get_origin(hint) is tuple) and isinstance(value, list):
            value = tuple(value)
        elif hint in (float, int) and isinstance(value, str):
            value = _number(cls, name, hint, value)
        elif hint is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        kwargs[name] = value
    return cls(**kwargs)


def _number(cls, name: str, hint: type, text: str):
    # YAML 1.1 reads "1e-4" (no dot) as a string: accept numbers written that way.
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{cls.__name__}.{name}: expected a number, got {text!r}") from None
    if hint is int:
        if not value.is_integer():
            raise ConfigError(f"{cls.__name__}.{name}: expected an integer, got {text!r}")
        return int(value)
    return value


def replace_config(config: T, **overrides) -> T:
    """``dataclasses.replace`` that accepts dotted names for nested fields
    (``encoder.width=64`` as ``{"encoder.width": 64}``) and names unknown fields clearly."""
    direct, nested = {}, {}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[key] = value
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted((set(direct) | set(nested)) - names)
    if unknown:
        raise ConfigError(
            f"{type(config).__name__}: unknown field(s) {unknown}; valid fields are {sorted(names)}"
        )
    for head, sub in nested.items():
        direct[head] = replace_config(getattr(config, head), **sub)
    for key, value in list(direct.items()):
        current = getattr(config, key)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            direct[key] = replace_config(current, **value)
    return dataclasses.replace(config, **direct)
