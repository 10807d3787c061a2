"""Independent reference of the official TiTok generators (bytedance/1d-tokenizer ``ImageBert`` and
``UViTBert``) and of their ``generate`` sampling loop.

Written directly from ``/work/shared/specs/titok.md`` §9 as a test oracle. It works on plain state dicts in
the OFFICIAL key layout (``titok_keys/generator_titok_b64_vit.tsv``, ``generator_titok_s128_uvit.tsv``) and
uses nothing but ``torch`` / ``torch.nn.functional`` and ``math`` -- it deliberately does not import ``adatok``.
Everything runs in float32, sequence-first nowhere: plain ``B x N x W`` tensors.

Public API
----------
* ``bert_shapes(...)`` / ``uvit_shapes(...)`` -> ``{official key: shape}``.
* ``random_state_dict(shapes, seed)``          -> random float32 weights where every tensor matters.
* ``bert_logits(sd, ids, condition, num_heads, drop_label)`` / ``uvit_logits(...)`` -> ``B x K x codebook``
  (the official ``forward`` with ``cond_drop_prob`` 0 or 1).
* ``reference_generate(logits_fn, condition, ...)`` -> ``B x K`` ids: the official ``generate`` loop,
  with the conditional and the unconditional pass as two separate calls, as the official code does.
"""

from __future__ import annotations

import math
from typing import Callable, Dict

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

BERT_LN_EPS = 1e-12  # §9.2
UVIT_LN_EPS = 1e-5  # §9.3


# ---------------------------------------------------------------------------------------------- key tables
def bert_shapes(width: int = 768, depth: int = 24, intermediate: int = 3072, num_tokens: int = 64,
                codebook_size: int = 4096, num_classes: int = 1000) -> Dict[str, tuple]:
    """§9.2: HF ``BertModel`` (no pooler) under ``model.`` + ``model.lm_head``."""
    vocab = codebook_size + num_classes + 2
    shapes = {
        "model.embeddings.word_embeddings.weight": (vocab, width),
        "model.embeddings.position_embeddings.weight": (num_tokens + 1, width),
        "model.embeddings.token_type_embeddings.weight": (2, width),
        "model.embeddings.LayerNorm.weight": (width,),
        "model.embeddings.LayerNorm.bias": (width,),
    }
    for i in range(depth):
        p = f"model.encoder.layer.{i}"
        for name in ("query", "key", "value"):
            shapes[f"{p}.attention.self.{name}.weight"] = (width, width)
            shapes[f"{p}.attention.self.{name}.bias"] = (width,)
        shapes[f"{p}.attention.output.dense.weight"] = (width, width)
        shapes[f"{p}.attention.output.dense.bias"] = (width,)
        shapes[f"{p}.attention.output.LayerNorm.weight"] = (width,)
        shapes[f"{p}.attention.output.LayerNorm.bias"] = (width,)
        shapes[f"{p}.intermediate.dense.weight"] = (intermediate, width)
        shapes[f"{p}.intermediate.dense.bias"] = (intermediate,)
        shapes[f"{p}.output.dense.weight"] = (width, intermediate)
        shapes[f"{p}.output.dense.bias"] = (width,)
        shapes[f"{p}.output.LayerNorm.weight"] = (width,)
        shapes[f"{p}.output.LayerNorm.bias"] = (width,)
    shapes["model.lm_head.weight"] = (codebook_size, width)
    shapes["model.lm_head.bias"] = (codebook_size,)
    return shapes


def _uvit_block(prefix: str, width: int, hidden: int, skip: bool) -> Dict[str, tuple]:
    shapes = {
        f"{prefix}.norm1.weight": (width,), f"{prefix}.norm1.bias": (width,),
        f"{prefix}.attn.qkv.weight": (3 * width, width),  # no bias
        f"{prefix}.attn.proj.weight": (width, width), f"{prefix}.attn.proj.bias": (width,),
        f"{prefix}.norm2.weight": (width,), f"{prefix}.norm2.bias": (width,),
        f"{prefix}.mlp.fc1.weight": (hidden, width), f"{prefix}.mlp.fc1.bias": (hidden,),
        f"{prefix}.mlp.fc2.weight": (width, hidden), f"{prefix}.mlp.fc2.bias": (width,),
    }
    if skip:
        shapes[f"{prefix}.skip_linear.weight"] = (width, 2 * width)
        shapes[f"{prefix}.skip_linear.bias"] = (width,)
    return shapes


def uvit_shapes(width: int = 1024, num_hidden_layers: int = 20, intermediate: int = 4096, num_tokens: int = 128,
                codebook_size: int = 4096, num_classes: int = 1000) -> Dict[str, tuple]:
    """§9.3: ``num_hidden_layers // 2`` in-blocks, a mid-block, as many out-blocks (with skip_linear)."""
    vocab = codebook_size + num_classes + 2
    shapes = {"pos_embed": (1, num_tokens + 1, width), "embeddings.weight": (vocab, width)}
    half = num_hidden_layers // 2
    for i in range(half):
        shapes.update(_uvit_block(f"in_blocks.{i}", width, intermediate, skip=False))
    shapes.update(_uvit_block("mid_block", width, intermediate, skip=False))
    for i in range(half):
        shapes.update(_uvit_block(f"out_blocks.{i}", width, intermediate, skip=True))
    shapes.update({"norm.weight": (width,), "norm.bias": (width,),
                   "lm_head.weight": (codebook_size, width), "lm_head.bias": (codebook_size,)})
    return shapes


def random_state_dict(shapes: Dict[str, tuple], seed: int = 0) -> Dict[str, Tensor]:
    """Random weights scaled like a trained net, with every tensor perturbed (norm gains ~1 +- 0.2,
    biases ~0.1, embeddings ~1): a wrong key, a missing term or a swapped skip changes the logits."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in shapes.items():
        noise = torch.randn(shape, generator=g)
        if "LayerNorm.weight" in key or key.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
            t = 1.0 + 0.2 * noise
        elif key.endswith("bias"):
            t = 0.1 * noise
        elif "embeddings" in key or key == "pos_embed":
            t = noise * (0.5 if "token_type" in key or "position" in key or key == "pos_embed" else 1.0)
        else:
            t = noise / math.sqrt(shape[-1])  # weights: fan-in scaling
        out[key] = t.float().contiguous()
    return out


# ---------------------------------------------------------------------------------------------- forwards
def _token_ids(ids: Tensor, condition: Tensor, codebook_size: int, num_classes: int, drop_label: bool) -> Tensor:
    """§9.1: class c -> codebook + 1 + c (or the no-class id codebook + 1 + num_classes), prepended."""
    cond = condition + codebook_size + 1
    if drop_label:
        cond = torch.full_like(condition, codebook_size + 1 + num_classes)
    return torch.cat([cond.view(-1, 1), ids.view(ids.shape[0], -1)], dim=1)


def _heads(x: Tensor, num_heads: int) -> Tensor:
    b, n, w = x.shape
    return x.view(b, n, num_heads, w // num_heads).transpose(1, 2)


def _attention(q: Tensor, k: Tensor, v: Tensor, num_heads: int) -> Tensor:
    """Explicit softmax attention, scale 1/sqrt(head dim); heads are contiguous chunks of the width."""
    q, k, v = (_heads(t, num_heads) for t in (q, k, v))
    scale = 1.0 / math.sqrt(q.shape[-1])
    probs = torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1)
    out = probs @ v
    b, h, n, d = out.shape
    return out.transpose(1, 2).reshape(b, n, h * d)


def bert_logits(sd: Dict[str, Tensor], ids: Tensor, condition: Tensor, num_heads: int,
                drop_label: bool = False) -> Tensor:
    """§9.2: word + position + token_type[0] -> LN(eps 1e-12) -> post-norm layers -> lm_head on the
    K image positions (the class position dropped). Dropout is off (eval)."""
    codebook = sd["model.lm_head.weight"].shape[0]
    classes = sd["model.embeddings.word_embeddings.weight"].shape[0] - codebook - 2
    seq = _token_ids(ids, condition, codebook, classes, drop_label)
    n = seq.shape[1]
    e = "model.embeddings."
    x = (F.embedding(seq, sd[e + "word_embeddings.weight"]) + sd[e + "position_embeddings.weight"][:n]
         + sd[e + "token_type_embeddings.weight"][0])
    width = x.shape[-1]
    x = F.layer_norm(x, (width,), sd[e + "LayerNorm.weight"], sd[e + "LayerNorm.bias"], BERT_LN_EPS)
    i = 0
    while f"model.encoder.layer.{i}.attention.self.query.weight" in sd:
        p = f"model.encoder.layer.{i}."

        def lin(name, t):
            return F.linear(t, sd[p + name + ".weight"], sd[p + name + ".bias"])

        ctx = _attention(lin("attention.self.query", x), lin("attention.self.key", x),
                         lin("attention.self.value", x), num_heads)
        x = F.layer_norm(x + lin("attention.output.dense", ctx), (width,),
                         sd[p + "attention.output.LayerNorm.weight"], sd[p + "attention.output.LayerNorm.bias"],
                         BERT_LN_EPS)
        h = F.gelu(lin("intermediate.dense", x))  # exact erf GELU
        x = F.layer_norm(x + lin("output.dense", h), (width,), sd[p + "output.LayerNorm.weight"],
                         sd[p + "output.LayerNorm.bias"], BERT_LN_EPS)
        i += 1
    return F.linear(x[:, 1:], sd["model.lm_head.weight"], sd["model.lm_head.bias"])


def _uvit_block_fwd(sd: Dict[str, Tensor], p: str, x: Tensor, num_heads: int, skip: Tensor | None) -> Tensor:
    width = x.shape[-1]
    if skip is not None:
        x = F.linear(torch.cat([x, skip], dim=-1), sd[p + "skip_linear.weight"], sd[p + "skip_linear.bias"])
    h = F.layer_norm(x, (width,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], UVIT_LN_EPS)
    qkv = F.linear(h, sd[p + "attn.qkv.weight"])  # rows [Q; K; V], no bias
    q, k, v = qkv.split(width, dim=-1)
    x = x + F.linear(_attention(q, k, v, num_heads), sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
    h = F.layer_norm(x, (width,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], UVIT_LN_EPS)
    h = F.linear(F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
                 sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
    return x + h


def uvit_logits(sd: Dict[str, Tensor], ids: Tensor, condition: Tensor, num_heads: int,
                drop_label: bool = False) -> Tensor:
    """§9.3: embeddings + pos_embed -> in-blocks (stacked) -> mid -> out-blocks (pop: LIFO) -> LN -> lm_head."""
    codebook = sd["lm_head.weight"].shape[0]
    classes = sd["embeddings.weight"].shape[0] - codebook - 2
    seq = _token_ids(ids, condition, codebook, classes, drop_label)
    x = F.embedding(seq, sd["embeddings.weight"]) + sd["pos_embed"][:, : seq.shape[1]]
    stack = []
    i = 0
    while f"in_blocks.{i}.norm1.weight" in sd:
        x = _uvit_block_fwd(sd, f"in_blocks.{i}.", x, num_heads, None)
        stack.append(x)
        i += 1
    x = _uvit_block_fwd(sd, "mid_block.", x, num_heads, None)
    for j in range(i):
        x = _uvit_block_fwd(sd, f"out_blocks.{j}.", x, num_heads, stack.pop())
    x = F.layer_norm(x, (x.shape[-1],), sd["norm.weight"], sd["norm.bias"], UVIT_LN_EPS)
    return F.linear(x[:, 1:], sd["lm_head.weight"], sd["lm_head.bias"])


# ---------------------------------------------------------------------------------------------- sampling
def _gumbel(t: Tensor) -> Tensor:
    u = torch.zeros_like(t).uniform_(0, 1)
    return -torch.log((-torch.log(u.clamp(min=1e-20))).clamp(min=1e-20))


def reference_generate(logits_fn: Callable[[Tensor, Tensor, bool], Tensor], condition: Tensor, image_seq_len: int,
                       mask_token_id: int, guidance_scale: float, guidance_decay: str, guidance_scale_pow: float,
                       randomize_temperature: float, softmax_temperature_annealing: bool,
                       num_sample_steps: int) -> Tensor:
    """§9.5, step by step. ``logits_fn(ids, condition, drop_label)`` is the model's forward."""
    ids = torch.full((condition.shape[0], image_seq_len), mask_token_id, dtype=torch.long)
    cfg_scale = guidance_scale if guidance_decay == "constant" else 0.0
    for step in range(num_sample_steps):
        ratio = 1.0 * (step + 1) / num_sample_steps
        annealed_temp = randomize_temperature * (1.0 - ratio)
        is_mask = ids == mask_token_id
        if guidance_decay == "power-cosine":  # computed on float32 tensors, as in the official code
            pow_t = torch.ones(1) * guidance_scale_pow
            scale_step = (1 - torch.cos(((step / num_sample_steps) ** pow_t) * torch.pi)) * 1 / 2
            cfg_scale = (guidance_scale - 1) * scale_step + 1
        if bool(cfg_scale != 0):
            cond_logits = logits_fn(ids, condition, False)  # two separate passes
            uncond_logits = logits_fn(ids, condition, True)
            if guidance_decay == "power-cosine":
                logits = uncond_logits + (cond_logits - uncond_logits) * cfg_scale
            else:
                logits = cond_logits + (cond_logits - uncond_logits) * cfg_scale
        else:
            logits = logits_fn(ids, condition, False)
        if softmax_temperature_annealing:
            logits = logits / (0.5 + 0.8 * (1 - ratio))
        sampled_ids = (logits + annealed_temp * _gumbel(logits)).argmax(dim=-1)
        sampled_logits = torch.gather(logits, -1, sampled_ids.unsqueeze(-1)).squeeze(-1)
        sampled_ids = torch.where(is_mask, sampled_ids, ids)
        sampled_logits = torch.where(is_mask, sampled_logits, torch.tensor(math.inf)).float()
        mask_ratio = math.acos(ratio) / (math.pi * 0.5)
        mask_len = math.floor(image_seq_len * mask_ratio)
        # the official code takes the masked count of the FIRST sample for the whole batch
        mask_len = max(1, min(int(is_mask[0].sum()) - 1, mask_len))
        confidence = sampled_logits + annealed_temp * _gumbel(sampled_logits)
        cut_off = torch.sort(confidence, dim=-1).values[:, mask_len - 1: mask_len]
        masking = confidence <= cut_off
        if step == num_sample_steps - 1:
            ids = sampled_ids
        else:
            ids = torch.where(masking, torch.full_like(sampled_ids, mask_token_id), sampled_ids)
        if guidance_decay == "linear":
            cfg_scale = ratio * guidance_scale
    return ids
