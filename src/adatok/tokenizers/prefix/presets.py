"""Prefix-TiTok presets: tiny test models and the shipped 64 px default."""

from __future__ import annotations

from dataclasses import replace

from ...registry import Family, Preset, register_family, register_preset
from ..titok.config import ViTConfig
from ..titok.presets import _tiny
from .config import PrefixConfig
from .model import PrefixTiTok

register_family(Family(name="prefix", config_cls=PrefixConfig, model_cls=PrefixTiTok))


def _tiny_prefix() -> PrefixConfig:
    # 8 tokens, every length allowed: the tests' prefix tokenizer (RGB head, VQ 64 x 8)
    return PrefixConfig(titok=_tiny("pixels"), length_step=1, predictor_width=16)


def _default_titok():
    """The layout of titok_default (64 tokens at 64 px, RGB head, VQ 1024 x 12): the prefix default
    warm-starts from its weights."""
    vit = ViTConfig(width=128, depth=4, heads=4)
    return replace(_tiny("pixels"), patch_size=8, decoder_patch_size=8, num_tokens=64, encoder=vit, decoder=vit,
                   codebook_size=1024, token_dim=12, restart_dead_codes=True, init="fan_in")


def _default() -> PrefixConfig:
    return PrefixConfig(titok=_default_titok(), length_step=8, train_lengths="uniform", full_prob=0.1)


register_preset(Preset("prefix_tiny", "prefix", _tiny_prefix, "tiny prefix TiTok, every length 1-8 (tests)"))
register_preset(Preset("prefix_tiny_step2", "prefix", lambda: replace(_tiny_prefix(), length_step=2),
                       "tiny prefix TiTok, lengths 2/4/6/8 (tests)"))
# Shipped: configs/defaults/titok_prefix.yaml (fine-tuned from titok_default; held-out numbers in its card).
register_preset(Preset("titok_prefix_default", "prefix", _default,
                       "shipped: prefix TiTok, any of 8, 16, ..., 64 tokens at 64 px, trained on the photo pool",
                       bundled="titok_prefix_default"))
