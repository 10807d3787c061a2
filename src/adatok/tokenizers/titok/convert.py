"""Official TiTok checkpoints (bytedance/1d-tokenizer) -> adatok.

Two pure functions: ``convert_official_state_dict`` renames keys by an explicit table (and turns
the official 1x1 convs into linears), and ``config_from_official`` builds a ``TiTokConfig`` from an
official ``config.json`` (hub folder layout) or, when there is none, from the tensor shapes.
The official key lists the table covers are in ``tests/reference/keys/``.
"""

from __future__ import annotations

from ...convert_utils import KeyRule, rename_keys, squeeze_1x1
from ...errors import CheckpointError
from ...layers.vit import open_clip_block_rules
from ...pixel.maskgit_vqgan import MaskGITVQGANConfig
from .config import VIT_SIZES, TiTokConfig, ViTConfig


def official_key_rules() -> list[KeyRule]:
    """The official -> adatok key table (one line per official key family)."""
    rules = [KeyRule("latent_tokens", "latent_tokens")]
    for side in ("encoder", "decoder"):
        rules += [
            KeyRule(rf"{side}\.class_embedding", f"{side}.cls_token"),
            KeyRule(rf"{side}\.positional_embedding", f"{side}.pos_embed"),
            KeyRule(rf"{side}\.latent_token_positional_embedding", f"{side}.latent_pos_embed"),
            KeyRule(rf"{side}\.ln_pre\.(weight|bias)", rf"{side}.norm_pre.\1"),
            KeyRule(rf"{side}\.ln_post\.(weight|bias)", rf"{side}.norm_post.\1"),
            *open_clip_block_rules(side),
        ]
    rules += [
        KeyRule(r"encoder\.patch_embed\.(weight|bias)", r"encoder.patch_embed.\1"),
        KeyRule(r"encoder\.conv_out\.(weight|bias)", r"encoder.to_tokens.\1", squeeze_1x1),
        KeyRule(r"decoder\.mask_token", "decoder.mask_token"),
        KeyRule(r"decoder\.decoder_embed\.(weight|bias)", r"decoder.embed.\1"),
        KeyRule(r"decoder\.conv_out\.(weight|bias)", r"decoder.head.conv_out.\1"),
        KeyRule(r"quantize\.embedding\.weight", "quantizer.embedding.weight"),
        KeyRule(r"pixel_quantize\.embedding\.weight", "pixel_codebook.weight"),
        KeyRule(r"pixel_decoder\.(.+)", r"pixel_decoder.\1"),
    ]
    return rules


def convert_official_state_dict(state_dict: dict, source: str = "checkpoint") -> dict:
    """Official TiTok state dict -> adatok TiTok state dict (pure; tensors are not copied)."""
    legacy = "pixel_decoder.conv_in.weight" in state_dict or "decoder.ffn.2.weight" in state_dict
    head = (
        [KeyRule(r"decoder\.ffn\.0\.(weight|bias)", r"decoder.head.fc1.\1", squeeze_1x1),
         KeyRule(r"decoder\.ffn\.2\.(weight|bias)", r"decoder.head.fc2.\1", squeeze_1x1)]
        if legacy
        else [KeyRule(r"decoder\.ffn\.0\.(weight|bias)", r"decoder.head.to_patches.\1", squeeze_1x1)]
    )
    return rename_keys(state_dict, official_key_rules() + head, source)


def is_official_state_dict(state_dict: dict) -> bool:
    return "encoder.class_embedding" in state_dict and "latent_tokens" in state_dict


def config_from_official(official: dict | None, state_dict: dict, source: str = "checkpoint") -> TiTokConfig:
    """Build the config of an official checkpoint.

    ``official`` is the hub ``config.json`` (``{"model": {"vq_model": {...}}, "dataset": ...}``)
    or ``None``; fields it lacks are read off the tensor shapes. Heads are ``width / 64`` (every
    official size uses head dim 64) unless the size is named.
    """
    vq = ((official or {}).get("model") or {}).get("vq_model") or {}
    try:
        return _config_from_shapes(vq, official or {}, state_dict)
    except KeyError as e:
        raise CheckpointError(f"{source}: not an official TiTok checkpoint (no tensor {e})") from None


def _vit(size_name, width: int, depth: int) -> ViTConfig:
    if size_name in VIT_SIZES and VIT_SIZES[size_name].width == width:
        return VIT_SIZES[size_name]
    return ViTConfig(width, depth, max(1, width // 64))


def _count_blocks(state_dict: dict, side: str) -> int:
    prefix = f"{side}.transformer."
    return len({k[len(prefix):].split(".")[0] for k in state_dict if k.startswith(prefix)})


def _config_from_shapes(vq: dict, official: dict, sd: dict) -> TiTokConfig:
    enc_w = sd["encoder.class_embedding"].shape[-1]
    dec_w = sd["decoder.class_embedding"].shape[-1]
    patch = sd["encoder.patch_embed.weight"].shape[-1]
    grid = int(round((sd["encoder.positional_embedding"].shape[0] - 1) ** 0.5))
    image_size = official.get("dataset", {}).get("preprocessing", {}).get("crop_size", grid * patch)
    kl = "quantize.embedding.weight" not in sd
    out_ch = sd["encoder.conv_out.weight"].shape[0]
    legacy = "pixel_decoder.conv_in.weight" in sd or "decoder.ffn.2.weight" in sd
    dec_cells = sd["decoder.positional_embedding"].shape[0] - 1
    dec_patch = image_size // int(round(dec_cells**0.5))
    fields = dict(
        image_size=image_size,
        patch_size=patch,
        decoder_patch_size=dec_patch,
        num_tokens=sd["latent_tokens"].shape[0],
        encoder=_vit(vq.get("vit_enc_model_size"), enc_w, _count_blocks(sd, "encoder")),
        decoder=_vit(vq.get("vit_dec_model_size"), dec_w, _count_blocks(sd, "decoder")),
        quantizer="kl" if kl else "vq",
        token_dim=out_ch // 2 if kl else out_ch,
        codebook_size=2 if kl else sd["quantize.embedding.weight"].shape[0],
        l2_norm=bool(vq.get("use_l2_norm", legacy)),  # the legacy 4096 x 12 models use l2 codes
        commitment_cost=float(vq.get("commitment_cost", 0.25)),
        decoder_head="proxy" if legacy else "pixels",
        legacy_reshape=bool(vq.get("is_legacy", legacy)),
    )
    if legacy:
        fields["pixel"] = MaskGITVQGANConfig(
            base_channels=sd["pixel_decoder.conv_out.weight"].shape[1],
            z_channels=sd["pixel_decoder.conv_in.weight"].shape[1],
            codebook_size=sd["decoder.ffn.2.weight"].shape[0],
            image_size=image_size,
        )
    return TiTokConfig(**fields)
