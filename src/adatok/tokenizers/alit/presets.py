"""ALIT presets: the official builders (ShivamDuggal4/adaptive-length-tokenizer) over the 256 px MaskGIT-architecture VQGAN
or the KL-16 VAE, quantized (4096 x 12, l2) or continuous 12-d latents, and tiny test models.

The official checkpoints are Dropbox ``.pth`` files (no hub repo): load them with
``adatok.load(path)`` or ``adatok.load("alit_small", weights=path)``.
"""

from __future__ import annotations

from ...pixel.kl_vae import KLVAEConfig
from ...pixel.maskgit_vqgan import MaskGITVQGANConfig
from ...registry import Family, Preset, register_family, register_preset
from .config import ALIT_SIZES, ALITConfig
from .convert import config_from_official, convert_official_state_dict, is_official_state_dict
from .model import ALIT

register_family(
    Family(
        name="alit",
        config_cls=ALITConfig,
        model_cls=ALIT,
        is_official=is_official_state_dict,
        convert_official=convert_official_state_dict,
        config_from_official=config_from_official,
    )
)


def _official(size: str, quantized: bool = True) -> ALITConfig:
    vit = ALIT_SIZES[size]
    return ALITConfig(width=vit.width, depth=vit.depth, heads=vit.heads, quantized=quantized)


_RELEASED = {
    "small": "checkpoints: ImageNet-1K and ImageNet-100",
    "base": "checkpoint: ImageNet-100",
    "semilarge": "checkpoint: ImageNet-100",
    "tiny": "no released checkpoint",
}
for _size, _note in _RELEASED.items():
    register_preset(Preset(f"alit_{_size}", "alit", lambda s=_size: _official(s),
                           f"ALIT-{_size} ({ALIT_SIZES[_size].width}w/{ALIT_SIZES[_size].depth}L), VQGAN base, "
                           f"quantized 1D tokens; {_note}"))
register_preset(Preset("alit_small_continuous", "alit", lambda: _official("small", quantized=False),
                       "ALIT-small, continuous 12-d latents; checkpoint: ImageNet-100"))


def _official_vae(size: str, quantized: bool = True) -> ALITConfig:
    # the KL-16 VAE as ALIT uses it: [0, 1] pixels in and out, latents x 0.2325; no halting (official no-op)
    vit = ALIT_SIZES[size]
    return ALITConfig(width=vit.width, depth=vit.depth, heads=vit.heads, quantized=quantized, halting="off",
                      base_kind="vae", base=KLVAEConfig())


register_preset(Preset("alit_small_vae", "alit", lambda: _official_vae("small"),
                       "ALIT-small over the KL-16 VAE, quantized 1D tokens; checkpoint: ImageNet-100"))
register_preset(Preset("alit_small_vae_continuous", "alit", lambda: _official_vae("small", quantized=False),
                       "ALIT-small over the KL-16 VAE, continuous 12-d latents; checkpoint: ImageNet-100"))

_TINY_BASE = MaskGITVQGANConfig(base_channels=32, z_channels=32, codebook_size=64, image_size=64)


def _tiny(quantized: bool = True) -> ALITConfig:
    return ALITConfig(image_size=64, width=64, depth=2, heads=2, tokens_per_iter=8, max_iters=4, token_dim=8,
                      quantized=quantized, codebook_size=64, base=_TINY_BASE)


register_preset(Preset("alit_test_tiny", "alit", _tiny, "tiny ALIT, 8..32 tokens at 64 px (tests)"))
register_preset(Preset("alit_continuous_test_tiny", "alit", lambda: _tiny(False),
                       "tiny ALIT with continuous latents (tests)"))

_TINY_VAE = KLVAEConfig(base_channels=32, embed_dim=8, image_size=64)


def _tiny_vae(quantized: bool = True) -> ALITConfig:
    return ALITConfig(image_size=64, width=64, depth=2, heads=2, tokens_per_iter=8, max_iters=4, token_dim=8,
                      quantized=quantized, codebook_size=64, halting="off", base_kind="vae", base=_TINY_VAE)


register_preset(Preset("alit_vae_test_tiny", "alit", _tiny_vae, "tiny ALIT over a tiny KL-VAE, 8..32 tokens (tests)"))



def _default() -> ALITConfig:
    """The shipped alit_default (configs/defaults/alit.yaml)."""
    from ...pixel.presets import default_config

    return ALITConfig(image_size=64, width=128, depth=4, heads=4, tokens_per_iter=16, max_iters=4, token_dim=12,
                      codebook_size=1024, restart_dead_codes=True, halting="threshold", init="fan_in",
                      base=default_config())


register_preset(Preset("alit_default", "alit", _default,
                       "shipped: 16..64 tokens at 64 px, trained on the photo pool", bundled="alit_default"))
