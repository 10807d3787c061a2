"""Official ALIT checkpoints (ShivamDuggal4/adaptive-length-tokenizer) -> adatok.

The released ``.pth`` files are training checkpoints whose ``ema`` dict
holds the ALIT weights, the fine-tuned VQGAN (``base_tokenizer.vqgan.*``) or KL-16 VAE
(``base_tokenizer.vae.*``, whose names are our ``KLVAE``'s: ``base.*``) and eight LPIPS +
PatchGAN loss modules (``gan_losses.*``, training only: dropped here). Two pure functions:
``convert_official_state_dict`` (explicit key table) and ``config_from_official`` (sizes read off
the tensors; the head count cannot be read, see ``_heads``).
"""

from __future__ import annotations

import re

from ...convert_utils import KeyRule, rename_keys
from ...errors import CheckpointError
from ...layers.vit import open_clip_block_rules
from ...pixel.maskgit_vqgan import MaskGITVQGANConfig
from ...pixel.presets import kl_vae_config_from_state_dict
from .config import ALITConfig

_TOP = {
    "encoder_positional_embedding": "encoder.pos_embed",
    "encoder_class_embedding": "encoder.cls_token",
    "encoder_mask_token": "encoder.mask_token",
    "latent_tokens": "encoder.latent_tokens",
    "latent_token_positional_embedding": "encoder.latent_pos_embed",
    "timestep_embedding": "encoder.iter_embed",
    "decoder_positional_embedding": "decoder.pos_embed",
    "decoder_class_embedding": "decoder.cls_token",
    "decoder_mask_token": "decoder.mask_token",
}
_MODULES = {
    "encoder_ln_pre": "encoder.norm_pre",
    "encoder_ln_post": "encoder.norm_post",
    "encoder_ln_recursive": "encoder.norm_recur",
    "pre_quantizer_mlp": "encoder.to_tokens",
    "patch_embed": "encoder.patch_embed",
    "decoder.decoder_embed": "decoder.embed",
    "decoder.ln_pre": "decoder.norm_pre",
    "decoder.ln_post": "decoder.norm_post",
    "decoder.ffn.0": "decoder.head.fc1",
    "decoder.ffn.2": "decoder.head.fc2",
    "quantize.embedding": "quantizer.embedding",
}
_VQGAN = "base_tokenizer.vqgan."
_VAE = "base_tokenizer.vae."
_DROPPED = ("gan_losses.",)  # training-only loss modules


def official_key_rules(vae: bool = False) -> list[KeyRule]:
    """The official -> adatok key table (``vae``: of the models over the KL-16 VAE)."""
    rules = [KeyRule(src, dst) for src, dst in _TOP.items()]
    rules.append(KeyRule(r"decoder\.latent_token_positional_embedding", "decoder.latent_pos_embed"))
    rules += [KeyRule(rf"{re.escape(src)}\.(weight|bias)", rf"{dst}.\1") for src, dst in _MODULES.items()]
    for side in ("encoder", "decoder"):
        rules += open_clip_block_rules(side)
    if vae:  # the KL-VAE keys are ours under ``base.``
        return rules + [KeyRule(rf"{re.escape(_VAE)}(.+)", r"base.\1")]
    v = _VQGAN.replace(".", r"\.")
    rules += [
        # the VQGAN is the MaskGIT architecture with MAGE's module names for mid blocks and upsampling
        KeyRule(rf"{v}(encoder|decoder)\.mid\.block_1\.(.+)", r"base.\1.mid.0.\2"),
        KeyRule(rf"{v}(encoder|decoder)\.mid\.block_2\.(.+)", r"base.\1.mid.1.\2"),
        KeyRule(rf"{v}decoder\.up\.(\d+)\.upsample\.conv\.(weight|bias)", r"base.decoder.up.\1.upsample_conv.\2"),
        KeyRule(rf"{v}(.+)", r"base.\1"),
    ]
    return rules


def is_official_state_dict(state_dict: dict) -> bool:
    return "timestep_embedding" in state_dict and "encoder_positional_embedding" in state_dict


def convert_official_state_dict(state_dict: dict, source: str = "checkpoint") -> dict:
    """Official ALIT ``ema``/``model`` dict -> adatok ALIT state dict (loss modules dropped)."""
    kept = {k: v for k, v in state_dict.items() if not k.startswith(_DROPPED)}
    vae = _is_vae(kept)
    if not vae and not any(k.startswith(_VQGAN) for k in kept):
        raise CheckpointError(f"{source}: no base_tokenizer.vqgan.* (or .vae.*) tensors: this ALIT file lacks its "
                              "VQGAN/VAE")
    return rename_keys(kept, official_key_rules(vae), source)


def _is_vae(state_dict: dict) -> bool:
    return any(k.startswith(_VAE) for k in state_dict)


# (width, depth) -> heads of the official builders; other widths: head dim 64 (override with heads=...)
_OFFICIAL_HEADS = {(512, 8): 8, (1024, 8): 8, (768, 12): 12, (1024, 16): 16}


def _heads(width: int, depth: int) -> int:
    return _OFFICIAL_HEADS.get((width, depth), max(1, width // 64))


def config_from_official(official, state_dict: dict, source: str = "checkpoint") -> ALITConfig:
    """The ALITConfig of an official state dict (``official`` config.json is unused: ALIT files
    are bare ``.pth``). Heads follow the official builders for their sizes, else ``width / 64``:
    pass ``heads=...`` to ``adatok.load`` for a non-standard model."""
    sd = state_dict
    try:
        width = sd["encoder_class_embedding"].shape[-1]
        n2 = sd["encoder_positional_embedding"].shape[0] - 1
        iters, n0, _ = sd["timestep_embedding"].shape
        token_dim = sd["pre_quantizer_mlp.weight"].shape[0]
        depth = len({k.split(".")[2] for k in sd if k.startswith("encoder.transformer.")})
        vae = _is_vae(sd)
        base = _vae_config(sd, source) if vae else _base_config(sd)
    except KeyError as e:
        raise CheckpointError(f"{source}: not an official ALIT checkpoint (no tensor {e})") from None
    grid = int(round(n2**0.5))
    quantized = "quantize.embedding.weight" in sd
    return ALITConfig(
        image_size=grid * base.downsample_factor,
        width=width, depth=depth, heads=_heads(width, depth),
        tokens_per_iter=n0, max_iters=iters, token_dim=token_dim, quantized=quantized,
        codebook_size=sd["quantize.embedding.weight"].shape[0] if quantized else 4096,
        decoder_max_tokens=sd["decoder.latent_token_positional_embedding"].shape[0],
        halting="off" if vae else "threshold",  # the official VAE halting is a no-op
        base_kind="vae" if vae else "vqgan",
        base=base,
    )


def _vae_config(sd: dict, source: str):
    # ALIT feeds the VAE [0, 1] pixels (no normalisation) and scales its latents by 0.2325 (the defaults)
    grid = int(round((sd["encoder_positional_embedding"].shape[0] - 1) ** 0.5))
    return kl_vae_config_from_state_dict(sd, source, prefix=_VAE, latent_size=grid)


def _base_config(sd: dict) -> MaskGITVQGANConfig:
    c = sd[_VQGAN + "encoder.conv_in.weight"].shape[0]
    levels = sorted({int(k.split(".")[4]) for k in sd if k.startswith(_VQGAN + "encoder.down.")})
    mult = []
    for i in levels:
        width = sd[f"{_VQGAN}encoder.down.{i}.block.0.conv1.weight"].shape[0]
        mult.append(width // c)
    blocks = len({k.split(".")[6] for k in sd if k.startswith(_VQGAN + "encoder.down.0.block.")})
    codebook, z = sd[_VQGAN + "quantize.embedding.weight"].shape
    grid = int(round((sd["encoder_positional_embedding"].shape[0] - 1) ** 0.5))
    return MaskGITVQGANConfig(base_channels=c, channel_mult=tuple(mult), num_res_blocks=blocks, z_channels=z,
                              codebook_size=codebook, image_size=grid * 2 ** (len(mult) - 1))
