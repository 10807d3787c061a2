"""TiTok presets: the official zoo (bytedance/1d-tokenizer; Yu et al. 2024) and tiny test models."""

from __future__ import annotations

from ...pixel.maskgit_vqgan import MaskGITVQGANConfig
from ...registry import Family, Preset, register_family, register_preset
from .config import VIT_SIZES, TiTokConfig, ViTConfig
from .convert import config_from_official, convert_official_state_dict, is_official_state_dict
from .model import TiTok

register_family(
    Family(
        name="titok",
        config_cls=TiTokConfig,
        model_cls=TiTok,
        is_official=is_official_state_dict,
        convert_official=convert_official_state_dict,
        config_from_official=config_from_official,
    )
)


def _two_stage(size: str, tokens: int) -> TiTokConfig:
    vit = VIT_SIZES[size]
    return TiTokConfig(num_tokens=tokens, encoder=vit, decoder=vit, quantizer="vq", codebook_size=4096,
                       token_dim=12, l2_norm=True, decoder_head="proxy", legacy_reshape=True)


def _single_stage(enc: str, dec: str, tokens: int, quantizer: str) -> TiTokConfig:
    vq = quantizer == "vq"
    return TiTokConfig(num_tokens=tokens, encoder=VIT_SIZES[enc], decoder=VIT_SIZES[dec], quantizer=quantizer,
                       codebook_size=8192 if vq else 2, token_dim=64 if vq else 16, l2_norm=False,
                       decoder_head="pixels", legacy_reshape=False)


_TINY_VIT = ViTConfig(width=64, depth=2, heads=4)
_TINY_PIXEL = MaskGITVQGANConfig(base_channels=32, z_channels=32, codebook_size=64, image_size=64)


def _tiny(head: str, quantizer: str = "vq") -> TiTokConfig:
    return TiTokConfig(image_size=64, num_tokens=8, encoder=_TINY_VIT, decoder=_TINY_VIT, quantizer=quantizer,
                       codebook_size=64, token_dim=8, l2_norm=quantizer == "vq", decoder_head=head,
                       pixel=_TINY_PIXEL)


_HUB = "yucornetto/tokenizer_{}_imagenet"
_OFFICIAL = [
    ("titok_l32", lambda: _two_stage("large", 32), "L-32 two-stage (paper)", "rFID 2.21"),
    ("titok_b64", lambda: _two_stage("base", 64), "B-64 two-stage (paper)", "rFID 1.70"),
    ("titok_s128", lambda: _two_stage("small", 128), "S-128 two-stage (paper)", "rFID 1.71"),
    ("titok_bl64_vq8k", lambda: _single_stage("base", "large", 64, "vq"), "B/L-64, VQ 8k, RGB head", "rFID 2.06"),
    ("titok_bl128_vq8k", lambda: _single_stage("base", "large", 128, "vq"), "B/L-128, VQ 8k, RGB head", "rFID 1.49"),
    ("titok_sl256_vq8k", lambda: _single_stage("small", "large", 256, "vq"), "S/L-256, VQ 8k, RGB head", "rFID 1.03"),
    ("titok_ll32_vae_c16", lambda: _single_stage("large", "large", 32, "kl"), "L/L-32, KL 16 ch", "rFID 1.61"),
    ("titok_bl64_vae_c16", lambda: _single_stage("base", "large", 64, "kl"), "B/L-64, KL 16 ch", "rFID 1.25"),
    ("titok_bl128_vae_c16", lambda: _single_stage("base", "large", 128, "kl"), "B/L-128, KL 16 ch", "rFID 0.84"),
]
for _name, _factory, _desc, _reported in _OFFICIAL:
    register_preset(Preset(_name, "titok", _factory, _desc, hub_repo=_HUB.format(_name), reported=_reported))

register_preset(Preset("titok_tiny", "titok", lambda: _tiny("proxy"), "tiny two-stage layout (tests, CPU demo)"))
register_preset(Preset("titok_pixels_tiny", "titok", lambda: _tiny("pixels"), "tiny VQ with RGB head (tests)"))
register_preset(Preset("titok_vae_tiny", "titok", lambda: _tiny("pixels", "kl"), "tiny KL/VAE (tests)"))



def _default() -> TiTokConfig:
    """The shipped titok_default (configs/defaults/titok.yaml): single-stage, RGB head, 64 tokens at 64 px."""
    from dataclasses import replace

    vit = ViTConfig(width=128, depth=4, heads=4)
    return replace(_tiny("pixels"), patch_size=8, decoder_patch_size=8, num_tokens=64, encoder=vit, decoder=vit,
                   codebook_size=1024, token_dim=12, restart_dead_codes=True, init="fan_in")


register_preset(Preset("titok_default", "titok", _default,
                       "shipped: 64 tokens at 64 px, RGB head, trained on the photo pool", bundled="titok_default"))
