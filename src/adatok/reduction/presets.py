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
    if source in PRESETS:
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
