"""Named token-reduced classifiers (timm model + reduction config) and loading classifiers to run.

The presets live in their own small registry (not ``adatok.list_models()``, which lists
tokenizers): ``adatok.reduction.list_presets()`` / ``create_model(name)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from torch import nn

from ..errors import CheckpointError, ConfigError
from .imagepiece import ImagePieceConfig


@dataclass(frozen=True)
class ReductionPreset:
    name: str
    timm_model: str
    config: Callable[[], object]
    description: str


PRESETS: dict[str, ReductionPreset] = {
    p.name: p
    for p in (
        ReductionPreset("imagepiece_deit_tiny", "deit_tiny_patch16_224", ImagePieceConfig.table1,
                        "DeiT-Ti/16 + LCB stem + ImagePiece, Table-1 setting (keep 0.7 at blocks 4/7/10)"),
        ReductionPreset("imagepiece_deit_small", "deit_small_patch16_224", ImagePieceConfig.table1,
                        "DeiT-S/16 + LCB stem + ImagePiece, Table-1 setting (keep 0.7 at blocks 4/7/10)"),
    )
}


def list_presets() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> ReductionPreset:
    if name not in PRESETS:
        raise ConfigError(f"unknown reduction preset {name!r}; presets: {list_presets()}")
    return PRESETS[name]


def create_model(name: str, *, weights: Optional[str] = None, attention: str = "sdpa", trace: bool = False,
                 **timm_kwargs) -> nn.Module:
    """Build preset ``name`` (random weights unless ``weights``, a file of this patched model's
    state dict); ``timm_kwargs`` go to ``timm.create_model`` (``num_classes``, ``img_size``, ``depth``...)."""
    import timm

    from . import apply

    preset = get_preset(name)
    model = timm.create_model(preset.timm_model, pretrained=False, **timm_kwargs)
    apply(model, preset.config(), attention=attention, trace=trace)
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


def load_classifier(source: str, weights: Optional[str] = None) -> Classifier:
    """A folder exported by ``adatok train`` (task ``classify``; its reduction is re-applied), a
    reduction preset name, or a timm model name (random weights unless ``weights``)."""
    import timm

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
        return Classifier(model.eval(), int(meta["img_size"]), None, None,
                          _class_names(meta["num_classes"], meta.get("classes")), str(path))
    if source in PRESETS:
        model = create_model(source, weights=weights)
    elif source in timm.list_models():
        model = timm.create_model(source, pretrained=False)
        if weights:
            load_state(model, Path(weights))
    else:
        raise ConfigError(f"--model {source!r}: not an exported classifier folder, a reduction preset "
                          f"({', '.join(list_presets())}) or a timm model name")
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    size = int((cfg.get("input_size") or (3, 224, 224))[-1])
    return Classifier(model.eval(), size, tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
                      tuple(cfg.get("std", (0.229, 0.224, 0.225))), _class_names(model.num_classes, None), source)
