"""Independent reference forward of the official ALIT tokenizer (ShivamDuggal4/adaptive-length-tokenizer).

Test oracle written from ``/work/shared/specs/alit.md`` (sections 3.1, 4, 5, 6, 7, 8, 11, 12).  It works on plain
state dicts with the OFFICIAL key layout of the checkpoint's ``ema`` dict and uses nothing but ``torch`` and
``torch.nn.functional``.  It deliberately imports nothing from ``adatok`` and does things the plain way (explicit
per-head attention from the packed ``in_proj_weight``, expanded-form nearest-neighbour searches, an explicit
replacement of halted slots) so that it shares no code path with the library.  Everything runs in float32 under
``torch.no_grad``.

Public API
----------
* ``tiny_config(**overrides)``                     -> shrunk official configuration (plain dict).
* ``official_alit_shapes(cfg, with_gan_losses)``    -> ``{official key: shape}``.
* ``random_official_state_dict(cfg, seed, ...)``     -> random float32 weights under the official key names.
* ``official_rollout(sd, cfg, images, ...)``         -> every intermediate of the T recurrent iterations (§5, §6).
* ``official_decode_codes(sd, cfg, codes)``          -> codes -> latent decoder -> soft VQGAN code -> pixels.
* ``official_encode(sd, cfg, images, threshold)``    -> batch-level reconstruction-loss token selection (§8).
* ``select_iteration(l1_per_iteration, threshold)``  -> the §8 selection rule on a list of numbers.
* ``halting_friendly_state_dict(sd, cfg, boost)``    -> a copy of ``sd`` in which the decoder puts a sizeable,
  varying probability on the ground-truth VQGAN code, so that halting at 0.55 actually fires (for tests).
"""

from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

__all__ = [
    "ALIT_SIZES",
    "tiny_config",
    "official_config",
    "official_alit_shapes",
    "random_official_state_dict",
    "halting_friendly_state_dict",
    "official_rollout",
    "official_decode_codes",
    "official_encode",
    "select_iteration",
    "ref_attention",
    "vqgan_encode",
    "vqgan_quantize_ids",
    "vqgan_decode",
]

LN_EPS = 1e-5  # §4: nn.LayerNorm default
GN_GROUPS, GN_EPS = 32, 1e-6  # §3.1
NORM_EPS = 1e-12  # F.normalize default eps (§5 step 4, §7)
VQ = "base_tokenizer.vqgan."  # §11: prefix of the (fine-tuned) VQGAN inside the ALIT state dict

# §2: (width, layers, heads) of the official builders; encoder and decoder are identical.
ALIT_SIZES: Dict[str, Tuple[int, int, int]] = {
    "tiny": (512, 8, 8),
    "small": (1024, 8, 8),
    "base": (768, 12, 12),
    "semilarge": (1024, 16, 16),
}

_CONFIG_KEYS = ("width", "depth", "heads", "tokens_per_iter", "max_iters", "token_dim", "codebook_size",
                "quantized", "decoder_max_tokens", "image_size", "vq_base_channels", "vq_channel_mult",
                "vq_num_res_blocks", "vq_z_channels", "vq_codebook_size")


# ------------------------------------------------------------------------------------------------------------
# Configurations
# ------------------------------------------------------------------------------------------------------------


def _finish_config(cfg: dict, overrides: dict) -> dict:
    unknown = set(overrides) - set(_CONFIG_KEYS)
    if unknown:
        raise KeyError(f"unknown ALIT config keys: {sorted(unknown)}")
    cfg.update(overrides)
    if "decoder_max_tokens" not in overrides:
        # the official decoder table holds max_latent_tokens rows (256 = 32 * 8 in the released models)
        cfg["decoder_max_tokens"] = cfg["tokens_per_iter"] * cfg["max_iters"]
    cfg["vq_channel_mult"] = tuple(cfg["vq_channel_mult"])
    return cfg


def tiny_config(**overrides) -> dict:
    """A shrunk official configuration: width 64, 2+2 layers, 2 heads, 8 tokens x 4 iterations, 64x64 images.

    VQGAN: base channels 32, mult (1, 1, 2, 2, 4) -> patch 16, grid 4x4 = 16 2D tokens, 32-dim z, 64 codes.
    ``decoder_max_tokens`` follows ``tokens_per_iter * max_iters`` unless overridden itself.
    """
    cfg = dict(width=64, depth=2, heads=2, tokens_per_iter=8, max_iters=4, token_dim=8, codebook_size=32,
               quantized=True, decoder_max_tokens=None, image_size=64, vq_base_channels=32,
               vq_channel_mult=(1, 1, 2, 2, 4), vq_num_res_blocks=2, vq_z_channels=32, vq_codebook_size=64)
    return _finish_config(cfg, overrides)


def official_config(size: str = "small", quantized: bool = True) -> dict:
    """The released full-size configuration (§2, §4, §12) in the same dict layout as ``tiny_config``."""
    width, depth, heads = ALIT_SIZES[size]
    cfg = dict(width=width, depth=depth, heads=heads, tokens_per_iter=32, max_iters=8, token_dim=12,
               codebook_size=4096, quantized=quantized, decoder_max_tokens=256, image_size=256,
               vq_base_channels=128, vq_channel_mult=(1, 1, 2, 2, 4), vq_num_res_blocks=2, vq_z_channels=256,
               vq_codebook_size=1024)
    return _finish_config(cfg, {"decoder_max_tokens": 256})


def _patch_size(cfg: Mapping) -> int:
    return 2 ** (len(cfg["vq_channel_mult"]) - 1)


def _grid(cfg: Mapping) -> int:
    return cfg["image_size"] // _patch_size(cfg)


# ------------------------------------------------------------------------------------------------------------
# Key -> shape map (§4, §11, §12)
# ------------------------------------------------------------------------------------------------------------


def _block_shapes(prefix: str, w: int) -> Dict[str, tuple]:
    """The 12 tensors of one pre-norm residual attention block (§4, §12)."""
    return {
        f"{prefix}.ln_1.weight": (w,), f"{prefix}.ln_1.bias": (w,),
        f"{prefix}.attn.in_proj_weight": (3 * w, w), f"{prefix}.attn.in_proj_bias": (3 * w,),
        f"{prefix}.attn.out_proj.weight": (w, w), f"{prefix}.attn.out_proj.bias": (w,),
        f"{prefix}.ln_2.weight": (w,), f"{prefix}.ln_2.bias": (w,),
        f"{prefix}.mlp.c_fc.weight": (4 * w, w), f"{prefix}.mlp.c_fc.bias": (4 * w,),
        f"{prefix}.mlp.c_proj.weight": (w, 4 * w), f"{prefix}.mlp.c_proj.bias": (w,),
    }


def _rb_shapes(prefix: str, cin: int, cout: int) -> Dict[str, tuple]:
    """MAGE/MaskGIT VQGAN residual block: bias-free convs, nin_shortcut (cout, cout, 1, 1) iff cin != cout."""
    s = {f"{prefix}.norm1.weight": (cin,), f"{prefix}.norm1.bias": (cin,),
         f"{prefix}.conv1.weight": (cout, cin, 3, 3),
         f"{prefix}.norm2.weight": (cout,), f"{prefix}.norm2.bias": (cout,),
         f"{prefix}.conv2.weight": (cout, cout, 3, 3)}
    if cin != cout:
        s[f"{prefix}.nin_shortcut.weight"] = (cout, cout, 1, 1)
    return s


def _vqgan_shapes(cfg: Mapping) -> Dict[str, tuple]:
    ch, mult, nb = cfg["vq_base_channels"], tuple(cfg["vq_channel_mult"]), cfg["vq_num_res_blocks"]
    zc, K2 = cfg["vq_z_channels"], cfg["vq_codebook_size"]
    s: Dict[str, tuple] = {}
    e = VQ + "encoder."
    s[e + "conv_in.weight"] = (ch, 3, 3, 3)  # no bias
    cin = ch
    for lvl, m in enumerate(mult):
        cout = ch * m
        for b in range(nb):
            s.update(_rb_shapes(f"{e}down.{lvl}.block.{b}", cin, cout))
            cin = cout
    for name in ("block_1", "block_2"):
        s.update(_rb_shapes(f"{e}mid.{name}", cin, cin))
    s[e + "norm_out.weight"] = (cin,)
    s[e + "norm_out.bias"] = (cin,)
    s[e + "conv_out.weight"] = (zc, cin, 1, 1)
    s[e + "conv_out.bias"] = (zc,)

    d = VQ + "decoder."
    cin = ch * mult[-1]
    s[d + "conv_in.weight"] = (cin, zc, 3, 3)
    s[d + "conv_in.bias"] = (cin,)
    for name in ("block_1", "block_2"):
        s.update(_rb_shapes(f"{d}mid.{name}", cin, cin))
    for lvl in reversed(range(len(mult))):
        cout = ch * mult[lvl]
        for b in range(nb):
            s.update(_rb_shapes(f"{d}up.{lvl}.block.{b}", cin, cout))
            cin = cout
        if lvl != 0:
            s[f"{d}up.{lvl}.upsample.conv.weight"] = (cin, cin, 3, 3)
            s[f"{d}up.{lvl}.upsample.conv.bias"] = (cin,)
    s[d + "norm_out.weight"] = (cin,)
    s[d + "norm_out.bias"] = (cin,)
    s[d + "conv_out.weight"] = (3, cin, 3, 3)
    s[d + "conv_out.bias"] = (3,)
    s[VQ + "quantize.embedding.weight"] = (K2, zc)
    return s


def _gan_loss_shapes(num: int = 2) -> Dict[str, tuple]:
    """A few training-only ``gan_losses.{j}`` tensors (LPIPS + PatchGAN, §12) that a loader must drop."""
    s: Dict[str, tuple] = {}
    for j in range(num):
        p = f"gan_losses.{j}."
        s[p + "perceptual_loss.scaling_layer.shift"] = (1, 3, 1, 1)
        s[p + "perceptual_loss.scaling_layer.scale"] = (1, 3, 1, 1)
        s[p + "perceptual_loss.net.slice1.0.weight"] = (8, 3, 3, 3)
        s[p + "perceptual_loss.net.slice1.0.bias"] = (8,)
        s[p + "perceptual_loss.lin0.model.1.weight"] = (1, 8, 1, 1)
        s[p + "discriminator.main.0.weight"] = (8, 3, 4, 4)
        s[p + "discriminator.main.0.bias"] = (8,)
        s[p + "discriminator.main.2.weight"] = (16, 8, 4, 4)
        s[p + "discriminator.main.3.weight"] = (16,)
        s[p + "discriminator.main.3.bias"] = (16,)
        s[p + "discriminator.main.3.running_mean"] = (16,)
        s[p + "discriminator.main.3.running_var"] = (16,)
        s[p + "discriminator.main.3.num_batches_tracked"] = ()
    return s


def official_alit_shapes(cfg: Mapping, with_gan_losses: bool = False) -> Dict[str, tuple]:
    """Exact official ``ema`` state-dict key -> shape map for ``cfg`` (VQGAN base, factorized latents)."""
    W, L, n0, T, d = cfg["width"], cfg["depth"], cfg["tokens_per_iter"], cfg["max_iters"], cfg["token_dim"]
    P, G = _patch_size(cfg), _grid(cfg)
    zc, K2 = cfg["vq_z_channels"], cfg["vq_codebook_size"]
    assert cfg["image_size"] == G * P, "image_size must be a multiple of the VQGAN downsampling factor"
    assert W > zc, "width must exceed the VQGAN z channels (patch_embed outputs width - z channels)"
    n_pos = G * G + 1
    s: Dict[str, tuple] = {
        "encoder_positional_embedding": (n_pos, W),
        "encoder_class_embedding": (1, W),
        "encoder_mask_token": (1, 1, W),
        "decoder_positional_embedding": (n_pos, W),
        "decoder_class_embedding": (1, W),
        "decoder_mask_token": (1, 1, W),
        "latent_tokens": (n0, W),
        "latent_token_positional_embedding": (n0, W),
        "timestep_embedding": (T, n0, W),
    }
    for ln in ("encoder_ln_pre", "encoder_ln_post", "encoder_ln_recursive"):
        s[f"{ln}.weight"] = (W,)
        s[f"{ln}.bias"] = (W,)
    s["pre_quantizer_mlp.weight"] = (d, W)
    s["pre_quantizer_mlp.bias"] = (d,)
    s["patch_embed.weight"] = (W - zc, 3, P, P)
    s["patch_embed.bias"] = (W - zc,)
    for i in range(L):
        s.update(_block_shapes(f"encoder.transformer.{i}", W))
    s["decoder.latent_token_positional_embedding"] = (cfg["decoder_max_tokens"], W)
    s["decoder.decoder_embed.weight"] = (W, d)
    s["decoder.decoder_embed.bias"] = (W,)
    s["decoder.ln_pre.weight"] = (W,)
    s["decoder.ln_pre.bias"] = (W,)
    for i in range(L):
        s.update(_block_shapes(f"decoder.transformer.{i}", W))
    s["decoder.ln_post.weight"] = (W,)
    s["decoder.ln_post.bias"] = (W,)
    s["decoder.ffn.0.weight"] = (2 * W, W)
    s["decoder.ffn.0.bias"] = (2 * W,)
    s["decoder.ffn.2.weight"] = (K2, 2 * W)
    s["decoder.ffn.2.bias"] = (K2,)
    if cfg["quantized"]:
        s["quantize.embedding.weight"] = (cfg["codebook_size"], d)
    s.update(_vqgan_shapes(cfg))
    if with_gan_losses:
        s.update(_gan_loss_shapes())
    return s


# ------------------------------------------------------------------------------------------------------------
# Random weights
# ------------------------------------------------------------------------------------------------------------

_EMBEDDINGS = {"encoder_positional_embedding", "encoder_class_embedding", "encoder_mask_token",
               "decoder_positional_embedding", "decoder_class_embedding", "decoder_mask_token", "latent_tokens",
               "latent_token_positional_embedding", "timestep_embedding", "decoder.latent_token_positional_embedding"}


def random_official_state_dict(cfg: Mapping, seed: int = 0, with_gan_losses: bool = False) -> Dict[str, Tensor]:
    """Random float32 weights for every official key of ``cfg``; every tensor matters, activations stay O(1).

    embeddings W^-0.5 N(0,1); LayerNorm / GroupNorm weights 1 + 0.1 N(0,1); all biases 0.1 N(0,1); Linear / Conv
    weights N(0,1)/sqrt(fan_in) (decoder.ffn.2 three times that, for a peakier code distribution); 1D codebook
    N(0,1); VQGAN codebook 0.5 N(0,1).  Keys are drawn in sorted order from one seeded generator.
    """
    return random_weights(official_alit_shapes(cfg, with_gan_losses=with_gan_losses), cfg["width"], seed)


def random_weights(shapes: Mapping[str, tuple], W: int, seed: int = 0, head_gain: float = 3.0) -> Dict[str, Tensor]:
    """The draws of ``random_official_state_dict`` for any key table (``head_gain`` multiplies
    decoder.ffn.2.weight)."""
    g = torch.Generator().manual_seed(seed)
    out: Dict[str, Tensor] = {}
    for key in sorted(shapes):
        shape = shapes[key]
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(7, dtype=torch.int64)
            continue
        x = torch.randn(shape, generator=g, dtype=torch.float32)
        if key in _EMBEDDINGS:
            t = x * W ** -0.5
        elif key == "quantize.embedding.weight":
            t = x
        elif key == VQ + "quantize.embedding.weight":
            t = 0.5 * x
        elif key.endswith("bias") or key.endswith("running_mean") or key.endswith("shift"):
            t = 0.1 * x
        elif key.endswith("running_var") or key.endswith("scale"):
            t = 1.0 + 0.1 * x.abs()
        elif len(shape) == 1:  # LayerNorm / GroupNorm / BatchNorm affine weight
            t = 1.0 + 0.1 * x
        else:  # Linear / Conv / in_proj weights
            t = x * math.prod(shape[1:]) ** -0.5
            if key == "decoder.ffn.2.weight":
                t = head_gain * t
        out[key] = t.contiguous()
    return out


def halting_friendly_state_dict(sd: Mapping[str, Tensor], cfg: Mapping, boost: float = 5.0) -> Dict[str, Tensor]:
    """Copy of ``sd`` in which halting at 0.55 fires for part of the slots.

    VQGAN codebook row 0 is set to zero and every other row is moved far away (+5 in every channel), so every
    ground-truth id is 0; the logit of code 0 is raised by ``boost`` through ``decoder.ffn.2.bias``, so p_gt
    varies around 0.5 with the (image- and latent-dependent) rest of the logit (tiny_config, seed 0: roughly
    10-50 % of the slots have p_gt >= 0.55 per iteration).
    """
    out = {k: v.clone() for k, v in sd.items()}
    cb = out[VQ + "quantize.embedding.weight"]
    cb[1:] += 5.0
    cb[0] = 0.0
    out["decoder.ffn.2.bias"][0] += boost
    return out


# ------------------------------------------------------------------------------------------------------------
# Transformer pieces (§4)
# ------------------------------------------------------------------------------------------------------------


def _ln(sd: Mapping[str, Tensor], name: str, x: Tensor) -> Tensor:
    w = sd[name + ".weight"]
    return F.layer_norm(x, (w.shape[0],), w, sd[name + ".bias"], eps=LN_EPS)


def _linear(sd: Mapping[str, Tensor], name: str, x: Tensor) -> Tensor:
    return x @ sd[name + ".weight"].t() + sd[name + ".bias"]


def ref_attention(x: Tensor, in_w: Tensor, in_b: Tensor, out_w: Tensor, out_b: Tensor, heads: int) -> Tensor:
    """Full bidirectional multi-head self-attention as ``nn.MultiheadAttention`` computes it (x: B x L x W).

    ``in_w`` rows [0:W] project to queries, [W:2W] to keys, [2W:3W] to values; head h uses features
    [h*W/H, (h+1)*W/H) of each; scores are q.k / sqrt(W/H); heads are concatenated before ``out_w``.
    """
    B, L, W = x.shape
    hd = W // heads
    assert hd * heads == W
    q = x @ in_w[:W].t() + in_b[:W]
    k = x @ in_w[W:2 * W].t() + in_b[W:2 * W]
    v = x @ in_w[2 * W:].t() + in_b[2 * W:]
    q = q.reshape(B, L, heads, hd).permute(0, 2, 1, 3)  # B H L hd
    k = k.reshape(B, L, heads, hd).permute(0, 2, 1, 3)
    v = v.reshape(B, L, heads, hd).permute(0, 2, 1, 3)
    att = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(hd), dim=-1)  # B H L L
    o = (att @ v).permute(0, 2, 1, 3).reshape(B, L, W)
    return o @ out_w.t() + out_b


def _block(sd: Mapping[str, Tensor], p: str, x: Tensor, heads: int) -> Tensor:
    """x + MHA(ln_1(x)); then x + c_proj(GELU_exact(c_fc(ln_2(x))))."""
    h = _ln(sd, p + ".ln_1", x)
    x = x + ref_attention(h, sd[p + ".attn.in_proj_weight"], sd[p + ".attn.in_proj_bias"],
                          sd[p + ".attn.out_proj.weight"], sd[p + ".attn.out_proj.bias"], heads)
    h = F.gelu(_linear(sd, p + ".mlp.c_fc", _ln(sd, p + ".ln_2", x)), approximate="none")
    return x + _linear(sd, p + ".mlp.c_proj", h)


def _stack(sd: Mapping[str, Tensor], cfg: Mapping, prefix: str, x: Tensor) -> Tensor:
    """``prefix.transformer.{0..depth-1}`` in order; no LayerNorm at the end (§4)."""
    for i in range(cfg["depth"]):
        x = _block(sd, f"{prefix}.transformer.{i}", x, cfg["heads"])
    return x


# ------------------------------------------------------------------------------------------------------------
# VQGAN base tokenizer (§3.1), ALIT key names under ``base_tokenizer.vqgan.``
# ------------------------------------------------------------------------------------------------------------


def _conv(sd: Mapping[str, Tensor], name: str, x: Tensor) -> Tensor:
    """Stride-1 convolution with ordinary zero padding k//2 (3x3 -> 1, 1x1 -> 0); bias only where the key exists."""
    w = sd[name + ".weight"]
    return F.conv2d(x, w, sd.get(name + ".bias"), stride=1, padding=w.shape[-1] // 2)


def _gn_swish(sd: Mapping[str, Tensor], name: str, x: Tensor) -> Tensor:
    h = F.group_norm(x, GN_GROUPS, sd[name + ".weight"], sd[name + ".bias"], eps=GN_EPS)
    return h * torch.sigmoid(h)


def _rb(sd: Mapping[str, Tensor], p: str, x: Tensor) -> Tensor:
    """Residual block; with a channel change the MAGE port returns nin_shortcut(h) + h and drops x (§3.1)."""
    h = _conv(sd, p + ".conv1", _gn_swish(sd, p + ".norm1", x))
    h = _conv(sd, p + ".conv2", _gn_swish(sd, p + ".norm2", h))  # dropout(0) in between is the identity
    if (p + ".nin_shortcut.weight") in sd:
        return _conv(sd, p + ".nin_shortcut", h) + h
    return x + h


def vqgan_encode(sd: Mapping[str, Tensor], cfg: Mapping, images: Tensor) -> Tensor:
    """images B x 3 x H x W in [0, 1] -> pre-quantisation z, B x z_ch x H/P x W/P."""
    e = VQ + "encoder."
    levels, nb = len(cfg["vq_channel_mult"]), cfg["vq_num_res_blocks"]
    h = _conv(sd, e + "conv_in", images)
    for lvl in range(levels):
        for b in range(nb):
            h = _rb(sd, f"{e}down.{lvl}.block.{b}", h)
        if lvl != levels - 1:
            h = F.avg_pool2d(h, kernel_size=2, stride=2)
    h = _rb(sd, e + "mid.block_1", h)
    h = _rb(sd, e + "mid.block_2", h)
    return _conv(sd, e + "conv_out", _gn_swish(sd, e + "norm_out", h))


def vqgan_quantize_ids(sd: Mapping[str, Tensor], z: Tensor) -> Tensor:
    """z B x C x G x G -> ids B x G*G (row-major), argmin of ||z||^2 + ||e||^2 - 2 z.e on raw vectors."""
    E = sd[VQ + "quantize.embedding.weight"]
    B, C = z.shape[:2]
    flat = z.permute(0, 2, 3, 1).reshape(-1, C)
    dist = (flat ** 2).sum(1, keepdim=True) + (E ** 2).sum(1)[None, :] - 2.0 * flat @ E.t()
    return dist.argmin(dim=1).reshape(B, -1).to(torch.int64)


def vqgan_decode(sd: Mapping[str, Tensor], cfg: Mapping, code: Tensor) -> Tensor:
    """code B x C x G x G -> image B x 3 x H x W, NOT clamped (§3.1)."""
    d = VQ + "decoder."
    levels, nb = len(cfg["vq_channel_mult"]), cfg["vq_num_res_blocks"]
    h = _conv(sd, d + "conv_in", code)
    h = _rb(sd, d + "mid.block_1", h)
    h = _rb(sd, d + "mid.block_2", h)
    for lvl in reversed(range(levels)):
        for b in range(nb):
            h = _rb(sd, f"{d}up.{lvl}.block.{b}", h)
        if lvl != 0:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = _conv(sd, f"{d}up.{lvl}.upsample.conv", h)
    return _conv(sd, d + "conv_out", _gn_swish(sd, d + "norm_out", h))


# ------------------------------------------------------------------------------------------------------------
# 1D quantiser (§7) and latent decoder (§5 steps 5, 8.5, 8.6)
# ------------------------------------------------------------------------------------------------------------


def _l2n(x: Tensor) -> Tensor:
    """F.normalize semantics: x / max(||x||, 1e-12) along the last axis."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)


def _quantize_1d(sd: Mapping[str, Tensor], f: Tensor) -> Tuple[Tensor, Tensor]:
    """f B x n x d -> (ids B x n, normalised codebook rows B x n x d); cosine nearest neighbour."""
    u = _l2n(f)
    E = _l2n(sd["quantize.embedding.weight"])
    dist = (u ** 2).sum(-1, keepdim=True) + (E ** 2).sum(-1) - 2.0 * u @ E.t()  # B x n x V
    ids = dist.argmin(dim=-1).to(torch.int64)
    return ids, E[ids]


def _decoder_queries(sd: Mapping[str, Tensor], B: int) -> Tensor:
    """Q = [decoder_class_embedding, decoder_mask_token x N2] + decoder_positional_embedding  (B x (1+N2) x W)."""
    pos = sd["decoder_positional_embedding"]
    n2, W = pos.shape[0] - 1, pos.shape[1]
    cls = sd["decoder_class_embedding"].reshape(1, 1, W).expand(B, 1, W)
    masks = sd["decoder_mask_token"].reshape(1, 1, W).expand(B, n2, W)
    return torch.cat([cls, masks], dim=1) + pos[None]


def _latent_decoder_logits(sd: Mapping[str, Tensor], cfg: Mapping, codes: Tensor) -> Tensor:
    """codes B x n x d -> logits B x N2 x K over the VQGAN codebook."""
    B, n, _ = codes.shape
    Q = _decoder_queries(sd, B)
    n2 = Q.shape[1] - 1
    table = sd["decoder.latent_token_positional_embedding"]
    assert n <= table.shape[0], f"{n} latent tokens exceed the decoder's {table.shape[0]} positions"
    h = _linear(sd, "decoder.decoder_embed", codes) + table[:n][None]
    x = _ln(sd, "decoder.ln_pre", torch.cat([Q, h], dim=1))
    x = _stack(sd, cfg, "decoder", x)
    y = _ln(sd, "decoder.ln_post", x[:, 1:1 + n2])  # drop class slot and latent slots
    y = torch.tanh(_linear(sd, "decoder.ffn.0", y))
    return _linear(sd, "decoder.ffn.2", y)


def _soft_code(sd: Mapping[str, Tensor], probs: Tensor) -> Tensor:
    """probs B x N2 x K -> softmax-weighted VQGAN codebook mixture laid out as B x C x G x G (row-major)."""
    E2 = sd[VQ + "quantize.embedding.weight"]
    B, n2, _ = probs.shape
    G = int(round(math.sqrt(n2)))
    assert G * G == n2
    c = probs @ E2  # B x N2 x C
    return c.reshape(B, G, G, E2.shape[1]).permute(0, 3, 1, 2).contiguous()


def official_decode_codes(sd: Mapping[str, Tensor], cfg: Mapping, codes: Tensor) -> Tensor:
    """codes B x n x d (what the decoder reads) -> unclamped image B x 3 x H x W (the missing detokeniser, §5)."""
    with torch.no_grad():
        logits = _latent_decoder_logits(sd, cfg, codes.to(torch.float32))
        return vqgan_decode(sd, cfg, _soft_code(sd, torch.softmax(logits, dim=-1)))


# ------------------------------------------------------------------------------------------------------------
# Recurrent rollout (§5) with dynamic halting (§6)
# ------------------------------------------------------------------------------------------------------------


def _halt_decision(p_gt: Tensor, halting: str, threshold: float, generator: Optional[torch.Generator]) -> Tensor:
    if halting == "off":
        return torch.zeros_like(p_gt, dtype=torch.bool)
    if halting == "threshold":
        return p_gt >= threshold
    # official: a Bernoulli draw over the full B x N2 grid, then zeroed wherever p_gt < threshold
    s = torch.bernoulli(p_gt, generator=generator)
    s[p_gt < threshold] = 0.0
    return s > 0.5


def _apply_halting(sd: Mapping[str, Tensor], x: Tensor, halt: Tensor) -> Tensor:
    """Image slot i (sequence position 1+i) := encoder_positional_embedding[1+i] + encoder_mask_token where halted.

    The class token (position 0) and all latent tokens are left as they are; no LayerNorm here (§6 step 3).
    """
    n2 = halt.shape[1]
    W = x.shape[-1]
    mask_value = sd["encoder_positional_embedding"][1:1 + n2] + sd["encoder_mask_token"].reshape(1, W)  # N2 x W
    slots = x[:, 1:1 + n2]
    slots = torch.where(halt[..., None], mask_value[None].expand_as(slots), slots)
    return torch.cat([x[:, :1], slots, x[:, 1 + n2:]], dim=1)


def official_rollout(sd: Mapping[str, Tensor], cfg: Mapping, images: Tensor, halting: str = "off",
                     threshold: float = 0.55, generator: Optional[torch.Generator] = None,
                     reconstruct: bool = True) -> dict:
    """All T iterations of the official eval-mode forward (train_stage "full_finetuning").

    Returns ``{"z": B x C x G x G (pre-quant VQGAN z), "gt": B x N2 int64, "iters": [...]}`` with, for iteration
    k (n_k = tokens_per_iter * (k + 1)):
      latent_tokens B x n_k x W (encoder output, before LayerNorm), latents B x n_k x d (f_k), ids B x n_k int64
      (None when continuous), codes B x n_k x d (decoder input), logits B x N2 x K, p_gt B x N2,
      halt B x N2 bool (slots replaced by the mask this iteration), soft_codes B x C x G x G,
      recon B x 3 x H x W unclamped (only when ``reconstruct``).
    ``halting``: "off" | "threshold" (mask iff p_gt >= threshold) | "bernoulli" (official; a B x N2 draw with
    ``generator`` at every iteration, the last one included, zeroed where p_gt < threshold).
    """
    if halting not in ("off", "threshold", "bernoulli"):
        raise ValueError(f"halting must be 'off', 'threshold' or 'bernoulli', got {halting!r}")
    with torch.no_grad():
        imgs = images.to(torch.float32)
        B = imgs.shape[0]
        W, n0, T = cfg["width"], cfg["tokens_per_iter"], cfg["max_iters"]
        P = _patch_size(cfg)

        # §5 steps 2-4: VQGAN z and gt ids; patch features; [z, p] channels -> row-major tokens -> L2-normalise.
        z = vqgan_encode(sd, cfg, imgs)
        gt = vqgan_quantize_ids(sd, z)
        p = F.conv2d(imgs, sd["patch_embed.weight"], sd["patch_embed.bias"], stride=P)
        feat = torch.cat([z, p], dim=1)  # B x W x G x G
        assert feat.shape[1] == W
        G = feat.shape[-1]
        n2 = G * G
        tokens = _l2n(feat.reshape(B, W, n2).permute(0, 2, 1))  # B x N2 x W, index = row * G + col

        # §5 step 6: image sequence and the initial latent block.
        cls = sd["encoder_class_embedding"].reshape(1, 1, W).expand(B, 1, W)
        image_seq = torch.cat([cls, tokens], dim=1) + sd["encoder_positional_embedding"][None]
        L0 = sd["latent_tokens"] + sd["latent_token_positional_embedding"]  # n0 x W
        start = 1 + n2

        # §5 step 7
        x = _ln(sd, "encoder_ln_pre", torch.cat([image_seq, (L0 + sd["timestep_embedding"][0])[None].expand(B, n0, W)],
                                                 dim=1))
        iters: List[dict] = []
        for k in range(T):
            x = _stack(sd, cfg, "encoder", x)  # 8.1
            lat = x[:, start:]  # 8.2 (B x n0(k+1) x W, before any LayerNorm)
            f = _linear(sd, "pre_quantizer_mlp", _ln(sd, "encoder_ln_post", lat))  # 8.3
            if cfg["quantized"]:  # 8.4
                ids, q = _quantize_1d(sd, f)
            else:
                ids, q = None, f
            logits = _latent_decoder_logits(sd, cfg, q)  # 8.5
            probs = torch.softmax(logits, dim=-1)  # 8.6
            soft = _soft_code(sd, probs)
            p_gt = probs.gather(-1, gt[..., None])[..., 0]
            halt = _halt_decision(p_gt, halting, threshold, generator)  # 8.7 / §6
            x = _apply_halting(sd, x, halt)
            rec = {"latent_tokens": lat.clone(), "latents": f, "ids": ids, "codes": q, "logits": logits,
                   "p_gt": p_gt, "halt": halt, "soft_codes": soft}
            if reconstruct:  # 8.8
                rec["recon"] = vqgan_decode(sd, cfg, soft)
            iters.append(rec)
            if k < T - 1:  # 8.9
                new = (L0 + sd["timestep_embedding"][k + 1])[None].expand(B, n0, W)
                x = _ln(sd, "encoder_ln_recursive", torch.cat([x, new], dim=1))
        return {"z": z, "gt": gt, "iters": iters}


# ------------------------------------------------------------------------------------------------------------
# Token selection criterion (§8)
# ------------------------------------------------------------------------------------------------------------


def select_iteration(l1_per_iteration: Sequence[float], threshold: float) -> int:
    """Official loop: keep the running minimum (strict <); stop as soon as it is below ``threshold``.

    = the first k with L1_k < threshold, else the (first) arg-min iteration.
    """
    best, best_k = math.inf, -1
    for k, v in enumerate(l1_per_iteration):
        if v < best:
            best, best_k = v, k
        if best < threshold:
            return best_k
    return best_k


def official_encode(sd: Mapping[str, Tensor], cfg: Mapping, images: Tensor, threshold: float = 0.07,
                    halting: str = "off", generator: Optional[torch.Generator] = None,
                    halting_threshold: float = 0.55) -> Tuple[int, Tensor]:
    """Batch-level reconstruction-loss TSC: returns (k, latent_tokens_k) with L1_k = mean |recon_k - images|."""
    out = official_rollout(sd, cfg, images, halting=halting, threshold=halting_threshold, generator=generator,
                           reconstruct=True)
    imgs = images.to(torch.float32)
    l1 = [float((it["recon"] - imgs).abs().mean()) for it in out["iters"]]
    # the official comparison is between float32 tensors; round the threshold the same way
    k = select_iteration(l1, float(torch.tensor(threshold, dtype=torch.float32)))
    return k, out["iters"][k]["latent_tokens"]
