"""MaskGIT generator presets: the official TiTok generators (TiTok, Yu et al., NeurIPS 2024; official code bytedance/1d-tokenizer) and tiny ones."""

from __future__ import annotations

from typing import Optional

from ..registry import Family, Preset, register_family, register_preset
from .config import MaskGITConfig, SamplingConfig
from .convert import config_from_official, convert_official_state_dict, is_official_state_dict
from .maskgit import MaskGIT

register_family(
    Family(
        name="maskgit",
        config_cls=MaskGITConfig,
        model_cls=MaskGIT,
        is_official=is_official_state_dict,
        convert_official=convert_official_state_dict,
        config_from_official=config_from_official,
    )
)

# Official ImageNet sampling settings (configs/infer/TiTok/*.yaml + sample_imagenet_titok.py).
_L32 = SamplingConfig(steps=8, temperature=9.5, guidance=4.5, schedule="linear", softmax_annealing=True)
_B64 = SamplingConfig(steps=8, temperature=11.0, guidance=3.0, schedule="linear", softmax_annealing=True)
_S128 = SamplingConfig(steps=64, temperature=2.8, guidance=6.9, schedule="power-cosine", guidance_pow=3.0,
                       softmax_annealing=True)


def _bert(tokens: int, sampling: SamplingConfig, tokenizer: str) -> MaskGITConfig:
    # hidden 768, 24 layers, 16 heads (head dim 48), intermediate 3072, dropout 0.1
    return MaskGITConfig(arch="bert", num_tokens=tokens, width=768, depth=24, heads=16, mlp_ratio=4.0,
                         sampling=sampling, tokenizer=tokenizer)


def _uvit(tokens: int, sampling: SamplingConfig, tokenizer: str) -> MaskGITConfig:
    # hidden 1024, "20 layers" = 10 in + 1 mid + 10 out blocks, 16 heads, no dropout
    return MaskGITConfig(arch="uvit", num_tokens=tokens, width=1024, depth=20, heads=16, mlp_ratio=4.0,
                         dropout=0.0, attn_dropout=0.0, sampling=sampling, tokenizer=tokenizer)


_PAPER = {
    "maskgit_titok_l32": (lambda: _bert(32, _L32, "titok_l32"), "MaskGIT-ViT (BERT) for TiTok-L-32",
                          "gFID 2.77", "yucornetto/generator_titok_l32_imagenet"),
    "maskgit_titok_b64": (lambda: _bert(64, _B64, "titok_b64"), "MaskGIT-ViT (BERT) for TiTok-B-64",
                          "gFID 2.48", "yucornetto/generator_titok_b64_imagenet"),
    "maskgit_titok_s128": (lambda: _uvit(128, _S128, "titok_s128"), "MaskGIT-UViT-L for TiTok-S-128",
                           "gFID 1.97", "yucornetto/generator_titok_s128_imagenet"),
}
for _name, (_factory, _desc, _reported, _repo) in _PAPER.items():
    register_preset(Preset(_name, "maskgit", _factory, _desc, hub_repo=_repo, reported=_reported))


def paper_preset_for(arch: str, num_tokens: int) -> Optional[MaskGITConfig]:
    """The paper preset with this architecture and token count (for bare official files)."""
    for factory, *_ in _PAPER.values():
        config = factory()
        if (config.arch, config.num_tokens) == (arch, num_tokens):
            return config
    return None


# Tiny presets: the token space of titok_tiny (8 tokens, 64 codes); 64-wide, 2 blocks.
_TINY_SAMPLING = SamplingConfig(steps=4, temperature=1.0, guidance=2.0, schedule="constant")


def _tiny(arch: str = "bert", **fields) -> MaskGITConfig:
    base = dict(arch=arch, num_tokens=8, codebook_size=64, num_classes=10, width=64, depth=2, heads=4,
                dropout=0.1 if arch == "bert" else 0.0, attn_dropout=0.1 if arch == "bert" else 0.0,
                tokenizer="titok_tiny", sampling=_TINY_SAMPLING)
    return MaskGITConfig(**{**base, **fields})


register_preset(Preset("maskgit_tiny", "maskgit", _tiny, "tiny BERT generator over titok_tiny tokens (tests, CPU)"))
register_preset(Preset("maskgit_uvit_tiny", "maskgit", lambda: _tiny("uvit"),
                       "tiny UViT generator over titok_tiny tokens (tests, CPU)"))
register_preset(Preset(
    "maskgit_length_tiny", "maskgit",
    lambda: _tiny(num_tokens=16, lengths=(8, 16), num_classes=0, tokenizer="",
                  sampling=SamplingConfig(steps=4, temperature=1.0, guidance=0.0)),
    "tiny length-aware generator: 8 or 16 tokens, unconditional (tests, CPU)"))
