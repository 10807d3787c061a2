"""MaskGIT-VQGAN presets and its official checkpoint (``maskgit-vqgan-imagenet-f16-256.bin``,
whose keys are ours: conversion is the identity, with the usual strict checks)."""

from __future__ import annotations

from ..errors import CheckpointError
from ..registry import Family, Preset, register_family, register_preset
from .maskgit_vqgan import MaskGITVQGAN, MaskGITVQGANConfig


def is_official(state_dict: dict) -> bool:
    return "encoder.conv_in.weight" in state_dict and "quantize.embedding.weight" in state_dict and (
        "decoder.conv_in.weight" in state_dict and "latent_tokens" not in state_dict
    )


def config_from_official(official, state_dict: dict, source: str = "checkpoint") -> MaskGITVQGANConfig:
    """Read base channels, latent and codebook sizes off the tensors (the layout is fixed)."""
    try:
        base = state_dict["encoder.conv_in.weight"].shape[0]
        top = state_dict["decoder.conv_in.weight"].shape[0]
        codebook, z = state_dict["quantize.embedding.weight"].shape
    except KeyError as e:
        raise CheckpointError(f"{source}: not a MaskGIT-VQGAN checkpoint (no tensor {e})") from None
    levels = len({k.split(".")[2] for k in state_dict if k.startswith("encoder.down.")})
    mult = MaskGITVQGANConfig().channel_mult
    if levels != len(mult) or top != base * mult[-1]:
        raise CheckpointError(f"{source}: a MaskGIT-VQGAN with an unsupported channel layout ({levels} levels)")
    return MaskGITVQGANConfig(base_channels=base, z_channels=z, codebook_size=codebook)


register_family(Family("maskgit_vqgan", MaskGITVQGANConfig, MaskGITVQGAN, is_official=is_official,
                       convert_official=lambda sd, source="checkpoint": dict(sd),
                       config_from_official=config_from_official))
register_preset(Preset("maskgit_vqgan_f16_256", "maskgit_vqgan", MaskGITVQGANConfig,
                       "MaskGIT-VQGAN f16 (TiTok's teacher and pixel decoder)", hub_repo="fun-research/TiTok",
                       hub_file="maskgit-vqgan-imagenet-f16-256.bin", reported="rFID 2.28"))
register_preset(Preset("maskgit_vqgan_tiny", "maskgit_vqgan",
                       lambda: MaskGITVQGANConfig(base_channels=32, z_channels=32, codebook_size=64, image_size=64),
                       "tiny MaskGIT-VQGAN (tests)"))


def default_config() -> MaskGITVQGANConfig:
    """The shipped default base tokenizer (configs/defaults/vqgan.yaml): f8, 64 px -> 8 x 8 codes."""
    return MaskGITVQGANConfig(base_channels=32, channel_mult=(1, 2, 2, 4), num_res_blocks=1, z_channels=32,
                              codebook_size=256, image_size=64)


register_preset(Preset("maskgit_vqgan_default", "maskgit_vqgan", default_config,
                       "shipped: small f8 MaskGIT-VQGAN trained on the photo pool (CPU)",
                       bundled="maskgit_vqgan_default"))
