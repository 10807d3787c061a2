"""Official TiTok generator checkpoints (bytedance/1d-tokenizer ``ImageBert`` / ``UViTBert``) ->
adatok ``MaskGIT``. Key tables: the official ``ImageBert`` / ``UViTBert`` state dicts (bytedance/1d-tokenizer).

Two pure functions, as for the tokenizers: ``convert_official_state_dict`` renames keys by an
explicit table and fuses BERT's separate query/key/value projections into one ``qkv`` (rows
[Q; K; V], the layout ``layers.Attention`` reads); ``config_from_official`` builds the config from
an official ``config.json`` (hub folder) or, when there is none, from the tensor shapes.

The legacy ``position_ids`` buffer that older ``transformers`` versions saved with BERT models
(``0..K``, not a parameter) is dropped.
"""

from __future__ import annotations

import re
from dataclasses import replace

import torch

from ..convert_utils import KeyRule, rename_keys
from ..errors import CheckpointError
from .config import MaskGITConfig

_BERT_LAYER = {
    r"attention\.self\.(query|key|value)\.(weight|bias)": r"attn.\2.\3",  # fused below
    r"attention\.output\.dense\.(weight|bias)": r"attn.proj.\2",
    r"attention\.output\.LayerNorm\.(weight|bias)": r"norm1.\2",
    r"intermediate\.dense\.(weight|bias)": r"mlp.fc1.\2",
    r"output\.dense\.(weight|bias)": r"mlp.fc2.\2",
    r"output\.LayerNorm\.(weight|bias)": r"norm2.\2",
}


def bert_key_rules() -> list[KeyRule]:
    """Official ``ImageBert`` -> adatok (one line per official key family)."""
    rules = [
        KeyRule(r"model\.embeddings\.word_embeddings\.weight", "backbone.embed.weight"),
        KeyRule(r"model\.embeddings\.position_embeddings\.weight", "backbone.pos_embed"),
        KeyRule(r"model\.embeddings\.token_type_embeddings\.weight", "backbone.type_embed"),
        KeyRule(r"model\.embeddings\.LayerNorm\.(weight|bias)", r"backbone.norm_embed.\1"),
        KeyRule(r"model\.lm_head\.(weight|bias)", r"head.\1"),
    ]
    rules += [KeyRule(rf"model\.encoder\.layer\.(\d+)\.{src}", rf"backbone.layers.\1.{dst}")
              for src, dst in _BERT_LAYER.items()]
    return rules


def uvit_key_rules() -> list[KeyRule]:
    """Official ``UViTBert`` -> adatok (the block internals already have our names)."""
    block = r"(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)"
    return [
        KeyRule(r"embeddings\.weight", "backbone.embed.weight"),
        KeyRule(r"pos_embed", "backbone.pos_embed", lambda t: t.reshape(t.shape[-2], t.shape[-1])),
        KeyRule(rf"(in_blocks|out_blocks)\.(\d+)\.{block}", r"backbone.\1.\2.\3.\4"),
        KeyRule(rf"mid_block\.{block}", r"backbone.mid_block.\1.\2"),
        KeyRule(r"out_blocks\.(\d+)\.skip_linear\.(weight|bias)", r"backbone.out_blocks.\1.skip.\2"),
        KeyRule(r"norm\.(weight|bias)", r"backbone.norm.\1"),
        KeyRule(r"lm_head\.(weight|bias)", r"head.\1"),
    ]


def _is_bert(sd: dict) -> bool:
    return "model.embeddings.word_embeddings.weight" in sd


def is_official_state_dict(sd: dict) -> bool:
    return _is_bert(sd) or ("embeddings.weight" in sd and "pos_embed" in sd and "lm_head.weight" in sd)


def convert_official_state_dict(state_dict: dict, source: str = "checkpoint") -> dict:
    """Official generator state dict -> adatok ``MaskGIT`` state dict (pure)."""
    if not _is_bert(state_dict):
        return rename_keys(state_dict, uvit_key_rules(), source)
    sd = {k: v for k, v in state_dict.items() if k != "model.embeddings.position_ids"}
    out = rename_keys(sd, bert_key_rules(), source)
    return _fuse_qkv(out, source)


def _fuse_qkv(sd: dict, source: str) -> dict:
    """``...attn.{query,key,value}.{weight,bias}`` -> ``...attn.qkv.{weight,bias}`` ([Q; K; V])."""
    out, parts = {}, {}
    for key, value in sd.items():
        m = re.fullmatch(r"(.+\.attn)\.(query|key|value)\.(weight|bias)", key)
        if m:
            parts.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
        else:
            out[key] = value
    for (prefix, kind), qkv in parts.items():
        missing = [n for n in ("query", "key", "value") if n not in qkv]
        if missing:
            raise CheckpointError(f"{source}: {prefix} lacks the attention {kind} of {missing}")
        out[f"{prefix}.qkv.{kind}"] = torch.cat([qkv["query"], qkv["key"], qkv["value"]], dim=0)
    return out


# ------------------------------------------------------------------------------------ config
def config_from_official(official: dict | None, state_dict: dict, source: str = "checkpoint") -> MaskGITConfig:
    """The config of an official generator checkpoint.

    ``official`` is the hub ``config.json`` (``{"model": {"vq_model": ..., "generator": ...}}``)
    or ``None``; sizes are read off the tensors. Heads come from the config, else the official
    counts (16 for both official generators). Sampling defaults come from the config, else from
    the matching paper preset (L-32 / B-64 / S-128).
    """
    gen = ((official or {}).get("model") or {}).get("generator") or {}
    try:
        fields = _bert_fields(state_dict) if _is_bert(state_dict) else _uvit_fields(state_dict)
    except KeyError as e:
        raise CheckpointError(f"{source}: not an official TiTok generator checkpoint (no tensor {e})") from None
    width = fields["width"]
    heads = int(gen.get("num_attention_heads") or (16 if width % 16 == 0 else max(1, width // 64)))
    fields["heads"] = heads
    if fields["arch"] == "bert":
        fields["dropout"] = float(gen.get("dropout", 0.1))
        fields["attn_dropout"] = float(gen.get("attn_drop", 0.1))
    else:
        fields["dropout"] = fields["attn_dropout"] = 0.0
    config = MaskGITConfig(**fields)
    return replace(config, **_sampling_and_tokenizer(config, gen))


def _bert_fields(sd: dict) -> dict:
    vocab, width = sd["model.embeddings.word_embeddings.weight"].shape
    codebook = sd["model.lm_head.weight"].shape[0]
    prefix = "model.encoder.layer."
    depth = len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})
    hidden = sd["model.encoder.layer.0.intermediate.dense.weight"].shape[0]
    return dict(arch="bert", num_tokens=sd["model.embeddings.position_embeddings.weight"].shape[0] - 1,
                codebook_size=codebook, num_classes=vocab - codebook - 2, width=width, depth=depth,
                mlp_ratio=hidden / width)


def _uvit_fields(sd: dict) -> dict:
    vocab, width = sd["embeddings.weight"].shape
    codebook = sd["lm_head.weight"].shape[0]
    half = len({k.split(".")[1] for k in sd if k.startswith("in_blocks.")})
    hidden = sd["in_blocks.0.mlp.fc1.weight"].shape[0]
    return dict(arch="uvit", num_tokens=sd["pos_embed"].shape[-2] - 1, codebook_size=codebook,
                num_classes=vocab - codebook - 2, width=width, depth=2 * half, mlp_ratio=hidden / width)


def _sampling_and_tokenizer(config: MaskGITConfig, gen: dict) -> dict:
    from .presets import paper_preset_for

    preset = paper_preset_for(config.arch, config.num_tokens)
    sampling = preset.sampling if preset is not None else config.sampling
    keys = {"num_steps": "steps", "randomize_temperature": "temperature", "guidance_scale": "guidance",
            "guidance_decay": "schedule", "guidance_scale_pow": "guidance_pow",
            "softmax_temperature_annealing": "softmax_annealing"}
    given = {ours: gen[theirs] for theirs, ours in keys.items() if theirs in gen}
    if isinstance(given.get("schedule"), bool):  # the first official release: a bool "decay"
        given["schedule"] = "linear" if given["schedule"] else "constant"
    for name in ("temperature", "guidance", "guidance_pow"):
        if name in given:
            given[name] = float(given[name])
    out = {"sampling": replace(sampling, **given)}
    if preset is not None:
        out["tokenizer"] = preset.tokenizer
    return out
