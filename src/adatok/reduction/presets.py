"""Named token-reduced classifiers (a timm ViT + a reduction config), in the one model registry.

The presets register as the family ``reduction`` in ``adatok.registry``: they appear in
``adatok.list_models()`` / ``adatok models`` and build with ``adatok.create_model(name)``.
``adatok.reduction.create_model(name, weights=..., **timm_kwargs)`` is the same build with timm
arguments (``num_classes``, ``img_size``, ``depth``, ...) and a weight file; ``list_presets`` and
``get_preset`` are the registry's, filtered to this family. Also: loading classifiers to run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from torch import nn

from ..errors import CheckpointError, ConfigError
from ..registry import PRESETS, Family, Preset, get_config, register_family, register_preset
from ..registry import get_preset as _registry_preset
from .imagepiece import ImagePieceConfig

FAMILY = "reduction"


@dataclass(frozen=True)
class ReducedViTConfig:
    """A timm ViT (``timm_model``, random weights) patched with ``reduction`` (a ToMe, EViT or
    ImagePiece config); ``attention`` as in ``adatok.reduction.apply``."""

    timm_model: str
    reduction: Any
    attention: str = "sdpa"
    image_size: int = 224  # the timm DeiT models' input side

    @property
    def num_tokens(self) -> str:
        return f"{(self.image_size // 16) ** 2} patches, reduced"

    def quantizer_summary(self) -> str:
        return f"{type(self.reduction).__name__.removesuffix('Config')} token reduction (classifier)"


def build(config: ReducedViTConfig, *, trace: bool = False, **timm_kwargs) -> nn.Module:
    """The timm model of ``config`` with its reduction applied."""
    import timm

    from . import apply

    model = timm.create_model(config.timm_model, pretrained=False, **timm_kwargs)
    return apply(model, config.reduction, attention=config.attention, trace=trace)


register_family(Family(name=FAMILY, config_cls=ReducedViTConfig, model_cls=build))
for _name, _timm, _desc in (
    ("imagepiece_deit_tiny", "deit_tiny_patch16_224",
     "DeiT-Ti/16 + LCB stem + ImagePiece, Table-1 setting (keep 0.7 at blocks 4/7/10)"),
    ("imagepiece_deit_small", "deit_small_patch16_224",
     "DeiT-S/16 + LCB stem + ImagePiece, Table-1 setting (keep 0.7 at blocks 4/7/10)"),
):
    register_preset(Preset(_name, FAMILY, (lambda t=_timm: ReducedViTConfig(t, ImagePieceConfig.table1())), _desc))


def list_presets() -> list[str]:
    """Names of the token-reduced classifier presets."""
    return sorted(n for n, p in PRESETS.items() if p.family == FAMILY)


def get_preset(name: str) -> Preset:
    if name not in list_presets():
        raise ConfigError(f"unknown reduction preset {name!r}; presets: {list_presets()}")
    return _registry_preset(name)


def create_model(name: str, *, weights: Optional[str] = None, attention: str = "sdpa", trace: bool = False,
                 **timm_kwargs) -> nn.Module:
    """Build preset ``name`` (random weights unless ``weights``, a file of this patched model's
    state dict); ``timm_kwargs`` go to ``timm.create_model`` (``num_classes``, ``img_size``, ``depth``...)."""
    get_preset(name)
    model = build(get_config(name, attention=attention), trace=trace, **timm_kwargs)
    if weights:
        load_state(model, Path(weights))
    return model


def load_state(model: nn.Module, path: Path) -> None:
    """Strictly load a state dict file (safetensors, or a ``.pth``/``.bin`` via weights_only)."""
    from ..hub import read_state_dict

    state, _ = read_state_dict(path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: does not fit this model (missing {missing[:4]}, unexpected {unexpected[:4]}); "
                              "apply the same reduction (e.g. the LCB stem) the weights were trained with")


@dataclass
class Classifier:
    """A loaded classifier and how to feed it: ``mean``/``std`` (None: takes [0, 1] images as the
    adatok training loop feeds them), input size and class names."""

    model: nn.Module
    image_size: int
    mean: Optional[tuple]
    std: Optional[tuple]
    classes: list
    source: str
    data_config: Optional[dict] = None  # timm's eval settings (input_size, crop_pct, interpolation, mean, std)


def _class_names(num_classes: int, names: Optional[list]) -> list:
    if names and len(names) == num_classes:
        return list(names)
    if num_classes == 1000:
        try:
            from timm.data import ImageNetInfo

            info = ImageNetInfo()
            return [info.index_to_description(i).split(",")[0] for i in range(1000)]
        except Exception:  # older timm: plain indices
            pass
    return [str(i) for i in range(num_classes)]


def load_classifier(source: str, weights: Optional[str] = None, pretrained: bool = False) -> Classifier:
    """A folder exported by ``adatok train`` (task ``classify``; its reduction is re-applied), a
    reduction preset name, or a timm model name (random weights unless ``weights``, a local
    checkpoint, or ``pretrained``: timm's weights, from the hub or its cache). ``data_config`` is
    how to feed it: timm's ``resolve_data_config`` of the model (its pretrained cfg)."""
    import timm

    from ..data.timm_transforms import eval_data_config

    path = Path(source)
    if (path / "config.json").exists():
        meta = json.loads((path / "config.json").read_text())
        if meta.get("format") != "timm":
            raise ConfigError(f"{path}: not a classifier exported by the classify task (format {meta.get('format')!r})")
        model = timm.create_model(meta["model"], pretrained=False, num_classes=meta["num_classes"],
                                  img_size=meta["img_size"], **meta.get("model_overrides", {}))
        reduction = dict(meta.get("reduction") or {})
        if reduction:
            from . import apply

            apply(model, reduction.pop("method"), **reduction)
        load_state(model, Path(weights) if weights else path / "model.safetensors")
        size = int(meta["img_size"])
        # exports before timm's layout: [0, 1] inputs, shorter side resized to the size, center crop
        cfg = meta.get("pretrained_cfg") or {"mean": (0.0,) * 3, "std": (1.0,) * 3, "crop_pct": 1.0,
                                             "interpolation": "bicubic"}
        data_config = {"input_size": (3, size, size), "interpolation": cfg["interpolation"], "mean": tuple(cfg["mean"]),
                       "std": tuple(cfg["std"]), "crop_pct": cfg["crop_pct"], "crop_mode": cfg.get("crop_mode", "center")}
        return Classifier(model.eval(), size, data_config["mean"], data_config["std"],
                          _class_names(meta["num_classes"], meta.get("classes")), str(path), data_config)
    if source in list_presets():
        model = create_model(source, weights=weights)
    elif source in timm.list_models():
        try:
            model = timm.create_model(source, pretrained=pretrained)
        except Exception as e:  # offline, or no weights for this name
            if not pretrained:
                raise
            raise CheckpointError(f"--pretrained {source}: timm could not get its weights ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0][:200]}); offline, pass a local file with --weights") from None
        if weights:
            load_state(model, Path(weights))
    else:
        raise ConfigError(f"--model {source!r}: not an exported classifier folder, a reduction preset "
                          f"({', '.join(list_presets())}) or a timm model name")
    data_config = eval_data_config(model)
    return Classifier(model.eval(), int(data_config["input_size"][-1]), tuple(data_config["mean"]),
                      tuple(data_config["std"]), _class_names(model.num_classes, None), source, data_config)
