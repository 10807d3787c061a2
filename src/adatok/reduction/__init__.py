"""Token reduction for timm ViT classifiers: ImagePiece, ToMe and EViT on the same footing.

::

    import timm, adatok.reduction as R
    model = timm.create_model("deit_small_patch16_224")
    R.apply(model, "tome", r=13)                   # or "evit", keep_rate=0.7 / "imagepiece", keep_rate=0.7
    logits = model(images)                         # images normalised as the timm model expects
    print(R.info(model).tokens)                    # tokens after each block
    R.remove(model)                                # exactly the original model again

    model = R.create_model("imagepiece_deit_small")  # timm DeiT-S + LCB stem + Table-1 schedule

The algorithms are pure tensor functions (:mod:`.ops`); each method is a small reducer
(:mod:`.tome`, :mod:`.evit`, :mod:`.imagepiece`); :mod:`.timm_patch` is the only code that knows
timm. See docs/reduction.md for every choice ImagePiece's paper leaves open.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

from torch import nn

from ..config_utils import config_from_dict
from ..errors import ConfigError, InputError
from . import ops
from .base import BlockTrace, ReductionInfo, Reducer
from .evit import EViTConfig, EViTReducer
from .imagepiece import ImagePieceConfig, ImagePieceReducer
from .presets import create_model, get_preset, list_presets, load_classifier
from .tome import ToMeConfig, ToMeReducer

METHODS = {"tome": (ToMeConfig, ToMeReducer), "evit": (EViTConfig, EViTReducer),
           "imagepiece": (ImagePieceConfig, ImagePieceReducer)}

__all__ = [
    "METHODS", "BlockTrace", "EViTConfig", "ImagePieceConfig", "ReductionInfo", "Reducer", "ToMeConfig", "apply",
    "create_model", "get_preset", "info", "is_patched", "list_presets", "load_classifier", "make_config", "ops",
    "reconfigure", "remove", "set_keep_rate", "settings_of", "token_counts",
]

Config = Union[ToMeConfig, EViTConfig, ImagePieceConfig]


def make_config(method: Union[str, Config], **settings) -> Config:
    """The config dataclass of ``method`` ("tome" | "evit" | "imagepiece") from keyword settings,
    or ``method`` itself (a config, optionally with ``settings`` replacing fields)."""
    if dataclasses.is_dataclass(method) and not isinstance(method, type):
        if type(method) not in [c for c, _ in METHODS.values()]:
            raise ConfigError(f"{type(method).__name__} is not a reduction config")
        return dataclasses.replace(method, **settings) if settings else method
    if not isinstance(method, str) or method not in METHODS:
        raise ConfigError(f"unknown reduction method {method!r}; use one of {sorted(METHODS)}")
    config_cls = METHODS[method][0]
    return config_from_dict(config_cls, settings)


def apply(model: nn.Module, method: Union[str, Config], *, attention: str = "sdpa", trace: bool = False,
          **settings) -> nn.Module:
    """Patch a timm ``VisionTransformer`` in place to reduce tokens with ``method``.

    ``settings`` are the fields of the method's config (:class:`ToMeConfig`, :class:`EViTConfig`,
    :class:`ImagePieceConfig`); ``attention="eager"`` uses explicit softmax attention (reference
    path); ``trace=True`` records per-block source maps for pictures (:func:`info`). Returns the
    model. Bad settings, unsupported models and already-patched models raise ``ConfigError``.

    ``model`` may also be a TiTok tokenizer's encoder (``apply(tok.encoder, "tome", r=8)`` or
    ``"imagepiece"``): its patch tokens are reduced, never its latent tokens (:mod:`.tokenizer_patch`).
    With ``threshold`` (and for ImagePiece ``merge_threshold``) set, every method counts per image
    (padded batch, ``info(model).lengths``; docs/reduction.md)."""
    from . import timm_patch, tokenizer_patch

    config = make_config(method, **settings)
    reducer_cls = next(r for c, r in METHODS.values() if isinstance(config, c))
    if tokenizer_patch.is_tokenizer_encoder(model):
        if trace or attention != "sdpa":
            raise ConfigError("inside a tokenizer encoder: no trace, and attention follows Attention.use_sdpa")
        return tokenizer_patch.apply(model, reducer_cls(config))
    return timm_patch.apply(model, reducer_cls(config), attention=attention, trace=trace)


def reconfigure(model: nn.Module, method: Union[str, Config, None] = None, *, trace: Optional[bool] = None,
                **settings) -> nn.Module:
    """Change the reduction of a patched model (another method, or ``settings`` replacing fields of
    the current one) keeping its weights and LCB stem; ``trace`` switches per-block recording."""
    from . import timm_patch

    current = timm_patch.get_patch(model).reducer
    if method is None or method == current.method:
        config = make_config(current.method, **{**current.settings(), **settings})
    else:
        config = make_config(method, **settings)
    reducer_cls = next(r for c, r in METHODS.values() if isinstance(config, c))
    return timm_patch.reconfigure(model, reducer_cls(config), trace=trace)


def remove(model: nn.Module) -> nn.Module:
    """Undo :func:`apply` (the model is exactly the original again)."""
    from . import timm_patch, tokenizer_patch

    if tokenizer_patch.is_tokenizer_encoder(model):
        return tokenizer_patch.remove(model)
    return timm_patch.remove(model)


def is_patched(model: nn.Module) -> bool:
    from . import timm_patch

    return timm_patch.is_patched(model)


def info(model: nn.Module) -> ReductionInfo:
    """The record of the patched model's last forward (an InputError before the first)."""
    from . import timm_patch

    last = timm_patch.get_patch(model).last
    if last is None:
        raise InputError("no forward has run since the reduction was applied: call the model first, then info(model)")
    return last


def settings_of(model: nn.Module) -> dict:
    """``{"method": ..., **settings}`` of a patched model (enough to re-apply it elsewhere)."""
    from . import timm_patch

    reducer = timm_patch.get_patch(model).reducer
    return {"method": reducer.method, **reducer.settings()}


def set_keep_rate(model: nn.Module, keep_rate: Optional[float]) -> None:
    """Override the pruning keep rate (EViT, ImagePiece) until set back to None — the training-time
    warm-up (``ops.keep_rate_warmup``). A no-op for ToMe."""
    from . import timm_patch

    if keep_rate is not None and not (isinstance(keep_rate, (int, float)) and 0 < keep_rate <= 1):
        raise ConfigError(f"keep_rate={keep_rate!r}: use a number in (0, 1], or None for the configured rate")
    timm_patch.get_patch(model).reducer.keep_rate = None if keep_rate is None else float(keep_rate)


def token_counts(model: nn.Module) -> list[int]:
    """Tokens ([CLS] included) each block of a patched model leaves at its configured input size."""
    from . import timm_patch

    patch = timm_patch.get_patch(model)
    return patch.reducer.token_counts(patch.num_patches)
