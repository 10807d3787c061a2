"""Model registry: a preset name is a model — one registry for everything ``create_model`` builds.

A *family* knows how to build a model from its config and how to read the official checkpoints
of its paper; a *preset* is a named config of a family (official zoo names, so official
checkpoints map one-to-one, plus ``*_tiny`` presets for tests and CPU demos).

This module imports no model package. Registration happens in the packages (each ``presets.py``
calls ``register_family``/``register_preset``, as timm's model files do); ``adatok.models``
imports every model package once, and ``import adatok`` imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, cast

from torch import nn

from .config_utils import replace_config
from .errors import ConfigError
from .model_types import LoadedModel


@dataclass(frozen=True)
class Family:
    name: str
    config_cls: type
    model_cls: type
    # official checkpoint support (None when the family has no official release)
    is_official: Optional[Callable[[dict], bool]] = None
    convert_official: Optional[Callable[..., dict]] = None
    config_from_official: Optional[Callable[..., Any]] = None


@dataclass(frozen=True)
class Preset:
    name: str
    family: str
    config: Callable[[], Any]
    description: str
    hub_repo: Optional[str] = None  # official weights on the hub (folder with config.json)
    hub_file: Optional[str] = None  # one file of ``hub_repo`` when the repo holds many
    bundled: Optional[str] = None  # weights shipped inside the package: adatok/weights/<bundled>/
    reported: str = ""  # the paper's / README's headline number for these weights


FAMILIES: dict[str, Family] = {}
PRESETS: dict[str, Preset] = {}


def register_family(family: Family) -> None:
    FAMILIES[family.name] = family


def register_preset(preset: Preset) -> None:
    if preset.name in PRESETS:
        raise ConfigError(f"preset {preset.name!r} is registered twice")
    PRESETS[preset.name] = preset


def list_models(pattern: str = "") -> list[str]:
    """Names of the registered presets (those containing ``pattern``), sorted."""
    return sorted(n for n in PRESETS if pattern in n)


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        close = [n for n in PRESETS if name.split("_")[0] in n][:6]
        hint = f"; did you mean one of {close}?" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint} (see `adatok models`)")
    return PRESETS[name]


def get_config(name: str, **overrides):
    """The frozen config of preset ``name``; ``overrides`` replace fields (dotted names reach
    nested fields: ``get_config("titok_s128", **{"encoder.depth": 2})``)."""
    config = get_preset(name).config()
    return replace_config(config, **overrides) if overrides else config


def family_of_config(config) -> Family:
    for family in FAMILIES.values():
        if isinstance(config, family.config_cls):
            return family
    raise ConfigError(f"no model family takes a {type(config).__name__}")


def create_model(config_or_name, **overrides) -> LoadedModel:
    """Build a randomly initialised model from a preset name or a config object (an ``nn.Module``;
    typed as the tokenizer interface, adatok/model_types.py)."""
    if isinstance(config_or_name, str):
        config = get_config(config_or_name, **overrides)
    else:
        config = replace_config(config_or_name, **overrides) if overrides else config_or_name
    return cast(LoadedModel, family_of_config(config).model_cls(config))
