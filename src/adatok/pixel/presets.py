"""Pixel autoencoder presets: the MaskGIT-VQGAN and its official checkpoint
(``maskgit-vqgan-imagenet-f16-256.bin``, whose keys are ours: conversion is the identity, with the
usual strict checks), and the KL-16 VAE (MAR's ``kl16``, keys also ours)."""

from __future__ import annotations

from ..errors import CheckpointError
from ..registry import Family, Preset, register_family, register_preset
from .kl_vae import KLVAE, KLVAEConfig
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
    """The shipped default base tokenizer (configs/defaults/vqgan.yaml): f8, 64 px -> 8 x 8 codes,
    GroupNorm with 8 groups (4 channels per group at 32 channels; see pixel/layout.py)."""
    return MaskGITVQGANConfig(base_channels=32, channel_mult=(1, 2, 2, 4), num_res_blocks=1, z_channels=32,
                              codebook_size=256, image_size=64, norm_groups=8)


register_preset(Preset("maskgit_vqgan_default", "maskgit_vqgan", default_config,
                       "shipped: small f8 MaskGIT-VQGAN trained on the photo pool",
                       bundled="maskgit_vqgan_default"))


# -- KL-16 VAE (MAR's kl16; ALIT's alternative base tokenizer) ----------------------------------------------
def is_official_kl_vae(state_dict: dict) -> bool:
    """An LDM/MAR ``AutoencoderKL`` state dict (e.g. MAR's ``kl16.ckpt`` ``model`` dict)."""
    return ("quant_conv.weight" in state_dict and "post_quant_conv.weight" in state_dict
            and "encoder.conv_in.weight" in state_dict and "latent_tokens" not in state_dict)


def convert_kl_vae(state_dict: dict, source: str = "checkpoint") -> dict:
    """Our keys are the official ones; LDM training checkpoints also carry the loss module
    (``loss.*``: LPIPS + discriminator, training only), which is dropped."""
    return {k: v for k, v in state_dict.items() if not k.startswith("loss.")}


def kl_vae_config_from_state_dict(state_dict: dict, source: str = "checkpoint", prefix: str = "",
                                  latent_size: int = 16, **fields) -> KLVAEConfig:
    """Read the KL-VAE layout off the tensors (keys under ``prefix``); images give ``latent_size``
    latents per side (a bare file cannot tell: MAR's and ALIT's 16); ``fields`` fill the rest."""
    sd = state_dict
    try:
        c = sd[prefix + "encoder.conv_in.weight"].shape[0]
        embed_dim = sd[prefix + "post_quant_conv.weight"].shape[0]
        enc = prefix + "encoder.down."
        levels = sorted({int(k[len(enc):].split(".")[0]) for k in sd if k.startswith(enc)})
        mult = tuple(sd[f"{enc}{i}.block.0.conv1.weight"].shape[0] // c for i in levels)
        blocks = len({k[len(enc):].split(".")[2] for k in sd if k.startswith(enc + "0.block.")})
        dec_blocks = len({k.split(".")[-3] for k in sd if k.startswith(prefix + "decoder.up.0.block.")})
    except KeyError as e:
        raise CheckpointError(f"{source}: not a KL-VAE checkpoint (no tensor {e})") from None
    if dec_blocks != blocks + 1:
        raise CheckpointError(f"{source}: a KL-VAE whose decoder has {dec_blocks} blocks per level for the encoder's "
                              f"{blocks}; supported: the LDM layout (encoder + 1)")

    def attn_levels(side: str) -> tuple:
        p = f"{prefix}{side}."
        return tuple(i for i in levels if any(k.startswith(f"{p}{i}.attn.") for k in sd))

    return KLVAEConfig(base_channels=c, channel_mult=mult, num_res_blocks=blocks, embed_dim=embed_dim,
                       image_size=latent_size * 2 ** (len(mult) - 1),
                       encoder_attn_levels=attn_levels("encoder.down"), decoder_attn_levels=attn_levels("decoder.up"),
                       **fields)


def _kl_vae_config_from_official(official, state_dict: dict, source: str = "checkpoint") -> KLVAEConfig:
    # a standalone file is MAR's: it works on [-1, 1] pixels; image size 256 (MAR's)
    return kl_vae_config_from_state_dict(state_dict, source, signed_pixels=True)


register_family(Family("kl_vae", KLVAEConfig, KLVAE, is_official=is_official_kl_vae, convert_official=convert_kl_vae,
                       config_from_official=_kl_vae_config_from_official))
register_preset(Preset("kl16_vae", "kl_vae", lambda: KLVAEConfig(signed_pixels=True),
                       "KL-16 VAE (LDM AutoencoderKL as MAR's kl16: 16 x 16 x 16 latents at 256 px, [-1, 1] pixels); "
                       "ALIT's VAE base (which feeds it [0, 1] pixels); weights: MAR's kl16.ckpt (weights=FILE)"))
register_preset(Preset("kl_vae_tiny", "kl_vae",
                       lambda: KLVAEConfig(base_channels=32, embed_dim=8, image_size=64),
                       "tiny KL-VAE (tests, CPU)"))
