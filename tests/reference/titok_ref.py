"""Independent reference forward of the official TiTok tokenizer (bytedance/1d-tokenizer).

Written directly from ``/work/shared/specs/titok.md`` (sections 2-8, 13, 14) as a test oracle.  It works on
plain state dicts that use the OFFICIAL key layout (see ``titok_keys/tokenizer_titok_s128.tsv``) and uses
nothing but ``torch`` and ``torch.nn.functional`` -- it deliberately does not import ``adatok`` so that a bug in
the library cannot leak into the oracle.  Everything runs in float32.

The code is meant to be read next to the spec: every step names the spec paragraph it implements, the token
sequences are built in the official order ([cls, patches, latents] / [cls, masks, latents]) and the outputs are
read at the positions the spec names.

Public API
----------
* ``official_titok_shapes(...)``   -> ``{official key: shape}`` for a configuration.
* ``random_official_state_dict(shapes, seed)`` -> random float32 weights where every tensor matters.
* ``ref_encode(sd, images, ...)``  -> latents (+ VQ ids/codes, or VAE mean/logvar).
* ``ref_decode(sd, codes, ...)``   -> legacy: proxy logits + pixel-decoded images; non-legacy: RGB images.
* ``ref_decode_ids(sd, ids, ...)`` -> codebook lookup then ``ref_decode``.
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, Sequence, Tuple

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

__all__ = [
    "TITOK_VIT_SIZES",
    "official_titok_shapes",
    "random_official_state_dict",
    "ref_encode",
    "ref_decode",
    "ref_decode_ids",
    "ref_vq",
    "ref_attention",
    "ref_depth_to_space",
    "ref_pixel_decoder",
]

# §2: ViT sizes (width, depth, heads), shared by the encoder and the decoder.
TITOK_VIT_SIZES: Dict[str, Tuple[int, int, int]] = {
    "small": (512, 8, 8),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
}

LN_EPS = 1e-5  # §2: LayerNorm eps
GN_GROUPS = 32  # §7: GroupNorm groups
GN_EPS = 1e-6  # §7: GroupNorm eps
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0  # §4.2
LEGACY_PROXY_VOCAB = 1024  # §5.4: hard-coded size of the legacy head output (= MaskGIT-VQGAN codebook)


# ------------------------------------------------------------------------------------------------------------
# Key -> shape map (§8)
# ------------------------------------------------------------------------------------------------------------


def _vit_block_shapes(prefix: str, width: int) -> Dict[str, tuple]:
    """The 12 tensors of one ``ResidualAttentionBlock`` (§2, §8)."""
    hidden = 4 * width  # MLP ratio 4.0
    return {
        f"{prefix}.ln_1.weight": (width,),
        f"{prefix}.ln_1.bias": (width,),
        f"{prefix}.attn.in_proj_weight": (3 * width, width),
        f"{prefix}.attn.in_proj_bias": (3 * width,),
        f"{prefix}.attn.out_proj.weight": (width, width),
        f"{prefix}.attn.out_proj.bias": (width,),
        f"{prefix}.ln_2.weight": (width,),
        f"{prefix}.ln_2.bias": (width,),
        f"{prefix}.mlp.c_fc.weight": (hidden, width),
        f"{prefix}.mlp.c_fc.bias": (hidden,),
        f"{prefix}.mlp.c_proj.weight": (width, hidden),
        f"{prefix}.mlp.c_proj.bias": (width,),
    }


def _resnet_block_shapes(prefix: str, cin: int, cout: int) -> Dict[str, tuple]:
    """MaskGIT-VQGAN ``ResnetBlock(cin, cout)`` (§7): convs without bias, nin_shortcut (cout, cout) iff cin != cout."""
    shapes = {
        f"{prefix}.norm1.weight": (cin,),
        f"{prefix}.norm1.bias": (cin,),
        f"{prefix}.conv1.weight": (cout, cin, 3, 3),
        f"{prefix}.norm2.weight": (cout,),
        f"{prefix}.norm2.bias": (cout,),
        f"{prefix}.conv2.weight": (cout, cout, 3, 3),
    }
    if cin != cout:
        shapes[f"{prefix}.nin_shortcut.weight"] = (cout, cout, 1, 1)
    return shapes


def _pixel_decoder_shapes(prefix: str, ch: int, ch_mult: Sequence[int], z_channels: int,
                          num_res_blocks: int = 2, out_channels: int = 3) -> Dict[str, tuple]:
    """MaskGIT-VQGAN decoder keys (§7 "Decoder", §8 pixel path)."""
    ch_mult = tuple(ch_mult)
    num_levels = len(ch_mult)
    block_in = ch * ch_mult[-1]
    shapes: Dict[str, tuple] = {
        f"{prefix}.conv_in.weight": (block_in, z_channels, 3, 3),
        f"{prefix}.conv_in.bias": (block_in,),
    }
    for m in range(2):
        shapes.update(_resnet_block_shapes(f"{prefix}.mid.{m}", block_in, block_in))
    for level in reversed(range(num_levels)):
        block_out = ch * ch_mult[level]
        for b in range(num_res_blocks):
            shapes.update(_resnet_block_shapes(f"{prefix}.up.{level}.block.{b}", block_in, block_out))
            block_in = block_out
        if level != 0:
            shapes[f"{prefix}.up.{level}.upsample_conv.weight"] = (block_in, block_in, 3, 3)
            shapes[f"{prefix}.up.{level}.upsample_conv.bias"] = (block_in,)
    shapes[f"{prefix}.norm_out.weight"] = (block_in,)
    shapes[f"{prefix}.norm_out.bias"] = (block_in,)
    shapes[f"{prefix}.conv_out.weight"] = (out_channels, block_in, 3, 3)
    shapes[f"{prefix}.conv_out.bias"] = (out_channels,)
    return shapes


def official_titok_shapes(*, enc_width: int, enc_depth: int, dec_width: int, dec_depth: int, num_tokens: int,
                          token_size: int, codebook_size: int, image_size: int = 256, patch_size: int = 16,
                          legacy: bool = True, vae: bool = False, pixel_channels: int = 128,
                          pixel_channel_mult: Sequence[int] = (1, 1, 2, 2, 4), pixel_z: int = 256,
                          pixel_codebook: int = 1024) -> Dict[str, tuple]:
    """Exact official state-dict key -> shape map of a ``TiTok`` tokenizer configuration (§8).

    ``legacy`` (= ``is_legacy`` together with ``finetune_decoder``, as in titok_s128/b64/l32) selects the proxy-logit
    head plus the MaskGIT-VQGAN pixel path; otherwise the direct RGB head (§5.4).  ``vae`` drops ``quantize.*`` and
    doubles the encoder output channels (§4.2).
    """
    grid = image_size // patch_size
    n_pos = 1 + grid * grid
    K, ew, dw = num_tokens, enc_width, dec_width
    s: Dict[str, tuple] = {}

    # §3.3: latent tokens live at the top level.
    s["latent_tokens"] = (K, ew)

    # §3 encoder
    s["encoder.class_embedding"] = (1, ew)
    s["encoder.positional_embedding"] = (n_pos, ew)
    s["encoder.latent_token_positional_embedding"] = (K, ew)
    s["encoder.patch_embed.weight"] = (ew, 3, patch_size, patch_size)
    s["encoder.patch_embed.bias"] = (ew,)
    s["encoder.ln_pre.weight"] = (ew,)
    s["encoder.ln_pre.bias"] = (ew,)
    for i in range(enc_depth):
        s.update(_vit_block_shapes(f"encoder.transformer.{i}", ew))
    s["encoder.ln_post.weight"] = (ew,)
    s["encoder.ln_post.bias"] = (ew,)
    enc_out = 2 * token_size if vae else token_size
    s["encoder.conv_out.weight"] = (enc_out, ew, 1, 1)
    s["encoder.conv_out.bias"] = (enc_out,)

    # §5 decoder
    s["decoder.class_embedding"] = (1, dw)
    s["decoder.positional_embedding"] = (n_pos, dw)
    s["decoder.mask_token"] = (1, 1, dw)
    s["decoder.latent_token_positional_embedding"] = (K, dw)
    s["decoder.decoder_embed.weight"] = (dw, token_size)
    s["decoder.decoder_embed.bias"] = (dw,)
    s["decoder.ln_pre.weight"] = (dw,)
    s["decoder.ln_pre.bias"] = (dw,)
    for i in range(dec_depth):
        s.update(_vit_block_shapes(f"decoder.transformer.{i}", dw))
    s["decoder.ln_post.weight"] = (dw,)
    s["decoder.ln_post.bias"] = (dw,)
    if legacy:
        # ffn = Conv1x1(w -> 2w) -> Tanh -> Conv1x1(2w -> 1024); conv_out = Identity (no keys).
        s["decoder.ffn.0.weight"] = (2 * dw, dw, 1, 1)
        s["decoder.ffn.0.bias"] = (2 * dw,)
        s["decoder.ffn.2.weight"] = (pixel_codebook, 2 * dw, 1, 1)
        s["decoder.ffn.2.bias"] = (pixel_codebook,)
    else:
        s["decoder.ffn.0.weight"] = (patch_size * patch_size * 3, dw, 1, 1)
        s["decoder.ffn.0.bias"] = (patch_size * patch_size * 3,)
        s["decoder.conv_out.weight"] = (3, 3, 3, 3)
        s["decoder.conv_out.bias"] = (3,)

    # §4 quantizer
    if not vae:
        s["quantize.embedding.weight"] = (codebook_size, token_size)

    # §6/§7 pixel path (legacy / finetune_decoder models only)
    if legacy:
        s["pixel_quantize.embedding.weight"] = (pixel_codebook, pixel_z)
        s.update(_pixel_decoder_shapes("pixel_decoder", pixel_channels, pixel_channel_mult, pixel_z))
    return s


# ------------------------------------------------------------------------------------------------------------
# Random weights
# ------------------------------------------------------------------------------------------------------------

_TOKEN_NAMES = ("class_embedding", "positional_embedding", "latent_token_positional_embedding",
                "latent_tokens", "mask_token")


def random_official_state_dict(shapes: Mapping[str, Sequence[int]], seed: int = 0) -> Dict[str, Tensor]:
    """Random float32 tensors for ``shapes`` such that every tensor matters and activations stay O(1).

    norm weights 1 + 0.1 N(0,1); biases 0.1 N(0,1); linear/conv weights N(0,1)/sqrt(fan_in);
    embeddings/tokens 0.5 N(0,1); codebooks N(0,1).  Keys are drawn in sorted order, so the result depends only on
    the key->shape map and the seed, not on the dict's insertion order.
    """
    g = torch.Generator().manual_seed(seed)
    out: Dict[str, Tensor] = {}
    for key in sorted(shapes):
        shape = tuple(int(d) for d in shapes[key])
        leaf = key.rsplit(".", 1)[-1]
        x = torch.randn(shape, generator=g, dtype=torch.float32)
        if key.endswith("embedding.weight") and ("quantize" in key):
            t = x  # codebooks
        elif leaf in _TOKEN_NAMES:
            t = 0.5 * x
        elif leaf.endswith("bias"):  # bias, in_proj_bias
            t = 0.1 * x
        elif len(shape) == 1:  # LayerNorm / GroupNorm affine weight
            t = 1.0 + 0.1 * x
        else:  # Linear / Conv / in_proj weights
            fan_in = math.prod(shape[1:])
            t = x * fan_in ** -0.5
        out[key] = t.contiguous()
    return out


# ------------------------------------------------------------------------------------------------------------
# ViT pieces (§2)
# ------------------------------------------------------------------------------------------------------------


def _layer_norm(x: Tensor, sd: Mapping[str, Tensor], prefix: str) -> Tensor:
    w = sd[f"{prefix}.weight"]
    return F.layer_norm(x, (w.shape[0],), w, sd[f"{prefix}.bias"], eps=LN_EPS)


def ref_attention(x: Tensor, in_proj_weight: Tensor, in_proj_bias: Tensor, out_proj_weight: Tensor,
                  out_proj_bias: Tensor, num_heads: int) -> Tensor:
    """Full bidirectional multi-head self-attention exactly as ``torch.nn.MultiheadAttention`` (§2).

    x: (B, L, w).  in_proj rows are [Q; K; V]; each of Q/K/V is split into ``num_heads`` contiguous chunks of
    ``w / num_heads`` features; scores q.k / sqrt(head_dim); softmax over keys; heads concatenated; out_proj.
    """
    B, L, w = x.shape
    hd = w // num_heads
    assert hd * num_heads == w
    qkv = x @ in_proj_weight.t() + in_proj_bias  # (B, L, 3w)
    q, k, v = qkv[..., :w], qkv[..., w:2 * w], qkv[..., 2 * w:]
    heads = []
    for h in range(num_heads):
        qh = q[..., h * hd:(h + 1) * hd]
        kh = k[..., h * hd:(h + 1) * hd]
        vh = v[..., h * hd:(h + 1) * hd]
        scores = (qh @ kh.transpose(-1, -2)) / math.sqrt(hd)  # (B, L, L)
        heads.append(torch.softmax(scores, dim=-1) @ vh)  # (B, L, hd)
    o = torch.cat(heads, dim=-1)  # (B, L, w)
    return o @ out_proj_weight.t() + out_proj_bias


def _residual_attention_block(x: Tensor, sd: Mapping[str, Tensor], p: str, num_heads: int) -> Tensor:
    """Pre-norm block: x + MHA(LN1(x)); x + MLP(LN2(x)), MLP = Linear -> exact GELU -> Linear (§2)."""
    h = _layer_norm(x, sd, f"{p}.ln_1")
    x = x + ref_attention(h, sd[f"{p}.attn.in_proj_weight"], sd[f"{p}.attn.in_proj_bias"],
                          sd[f"{p}.attn.out_proj.weight"], sd[f"{p}.attn.out_proj.bias"], num_heads)
    h = _layer_norm(x, sd, f"{p}.ln_2")
    h = F.linear(h, sd[f"{p}.mlp.c_fc.weight"], sd[f"{p}.mlp.c_fc.bias"])
    h = F.gelu(h, approximate="none")
    h = F.linear(h, sd[f"{p}.mlp.c_proj.weight"], sd[f"{p}.mlp.c_proj.bias"])
    return x + h


def _transformer(x: Tensor, sd: Mapping[str, Tensor], prefix: str, num_heads: int) -> Tensor:
    depth = 0
    while f"{prefix}.transformer.{depth}.ln_1.weight" in sd:
        depth += 1
    assert depth > 0, f"no transformer blocks under {prefix}"
    for i in range(depth):
        x = _residual_attention_block(x, sd, f"{prefix}.transformer.{i}", num_heads)
    return x


# ------------------------------------------------------------------------------------------------------------
# Encoder (§3) and quantizer (§4)
# ------------------------------------------------------------------------------------------------------------


def _encoder_latents(sd: Mapping[str, Tensor], images: Tensor, *, num_heads: int, legacy: bool,
                     patch_size: int) -> Tensor:
    """§3: images (B, 3, H, W) in [0, 1] -> encoder output (B, C_out, 1, K)."""
    x = images.to(torch.float32)
    B = x.shape[0]
    P = patch_size

    # §3.1 patch_embed: conv k=P stride=P, flatten row-major (index = row * G + col).
    feat = F.conv2d(x, sd["encoder.patch_embed.weight"], sd["encoder.patch_embed.bias"], stride=P)  # (B, w, G, G)
    w = feat.shape[1]
    G = feat.shape[2]
    assert feat.shape[3] == G
    patches = torch.stack([feat[:, :, r, c] for r in range(G) for c in range(G)], dim=1)  # (B, G*G, w)

    # §3.2 [cls, patches] + positional_embedding (index 0 = cls).
    cls = sd["encoder.class_embedding"].reshape(1, 1, w).expand(B, 1, w)
    image_part = torch.cat([cls, patches], dim=1) + sd["encoder.positional_embedding"].unsqueeze(0)

    # §3.3 latent tokens (top-level parameter) + their own positional embedding, appended after the patches.
    latent_tokens = sd["latent_tokens"]
    K = latent_tokens.shape[0]
    latents = (latent_tokens + sd["encoder.latent_token_positional_embedding"]).unsqueeze(0).expand(B, K, w)
    seq = torch.cat([image_part, latents], dim=1)  # (B, 1 + G*G + K, w) = [cls, patch_0..G²-1, latent_0..K-1]
    assert seq.shape[1] == 1 + G * G + K

    # §3.4 ln_pre -> blocks -> last K positions -> ln_post.
    seq = _layer_norm(seq, sd, "encoder.ln_pre")
    seq = _transformer(seq, sd, "encoder", num_heads)
    out = seq[:, 1 + G * G:, :]  # the K latent outputs
    out = _layer_norm(out, sd, "encoder.ln_post").contiguous()  # (B, K, w)

    # §3.5 token layout.
    if legacy:
        # Quirk: flatten each sample to K*w numbers in (token, channel) order, re-read them as a (w, K) array and
        # treat column k as the channel vector of "token" k  (== reshape (B, K, w) -> (B, w, K, 1), NOT a transpose).
        flat = out.reshape(B, K * w)
        chan_by_token = flat.reshape(B, w, K)
    else:
        chan_by_token = out.permute(0, 2, 1)  # token k's own w-vector in column k
    # §3.6 conv_out 1x1 == per-token Linear(w -> C_out) using the (C_out, w, 1, 1) weight.
    W = sd["encoder.conv_out.weight"]
    C_out = W.shape[0]
    z = torch.einsum("ow,bwk->bok", W.reshape(C_out, w), chan_by_token) + sd["encoder.conv_out.bias"].reshape(1, C_out, 1)
    return z.reshape(B, C_out, 1, K)


def ref_vq(z: Tensor, codebook: Tensor, *, use_l2_norm: bool = True) -> Dict[str, Tensor]:
    """§4.1: nearest codebook row by squared distance (expanded form), first index on ties.

    z: (B, C, 1, K). Returns ids (B, K) int64, codes (B, C, 1, K) (normalised rows when l2) and z (normalised when l2).
    """
    B, C, H, K = z.shape
    assert H == 1
    rows = z.permute(0, 2, 3, 1).reshape(B * K, C)  # order (b, k)
    e = codebook.to(torch.float32)
    if use_l2_norm:
        rows = F.normalize(rows, p=2, dim=1, eps=1e-12)
        e = F.normalize(e, p=2, dim=1, eps=1e-12)
    d = (rows ** 2).sum(1, keepdim=True) + (e ** 2).sum(1).unsqueeze(0) - 2.0 * rows @ e.t()  # (B*K, N)
    ids = torch.argmin(d, dim=1)
    codes = e[ids]  # (B*K, C)
    return {
        "ids": ids.reshape(B, K).to(torch.int64),
        "codes": codes.reshape(B, K, C).permute(0, 2, 1).reshape(B, C, 1, K).contiguous(),
        "z": rows.reshape(B, K, C).permute(0, 2, 1).reshape(B, C, 1, K).contiguous(),
        "distances": d.reshape(B, K, -1),
    }


def ref_encode(sd: Mapping[str, Tensor], images: Tensor, *, num_heads: int, legacy: bool, vae: bool = False,
               use_l2_norm: bool = True, patch_size: int = 16) -> Dict[str, Tensor]:
    """Reference ``TiTok.encode``.

    Returns ``latents`` (B, C_out, 1, K) = the encoder output; VQ: ``ids`` (B, K) int64, ``codes`` (B, C, 1, K)
    (the quantised vectors fed to the decoder), ``z`` (normalised latents when l2); VAE: ``mean``, ``logvar``
    (clamped to [-30, 20]) and ``std``, each (B, C, 1, K).
    """
    with torch.no_grad():
        latents = _encoder_latents(sd, images, num_heads=num_heads, legacy=legacy, patch_size=patch_size)
        out: Dict[str, Tensor] = {"latents": latents}
        if vae:
            C = latents.shape[1] // 2
            mean = latents[:, :C]
            logvar = torch.clamp(latents[:, C:], LOGVAR_MIN, LOGVAR_MAX)
            out.update(mean=mean.contiguous(), logvar=logvar.contiguous(), std=torch.exp(0.5 * logvar))
        else:
            q = ref_vq(latents, sd["quantize.embedding.weight"], use_l2_norm=use_l2_norm)
            out.update(ids=q["ids"], codes=q["codes"], z=q["z"])
        return out


# ------------------------------------------------------------------------------------------------------------
# MaskGIT-VQGAN pixel decoder (§7)
# ------------------------------------------------------------------------------------------------------------


def _conv2d_same(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int = 1, dilation: int = 1) -> Tensor:
    """TensorFlow 'SAME' padding: total = max((ceil(i/s) - 1)*s + (k-1)*d + 1 - i, 0); floor half before."""
    ih, iw = x.shape[-2:]
    kh, kw = weight.shape[-2:]

    def total(i: int, k: int) -> int:
        return max((math.ceil(i / stride) - 1) * stride + (k - 1) * dilation + 1 - i, 0)

    ph, pw = total(ih, kh), total(iw, kw)
    x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
    return F.conv2d(x, weight, bias, stride=stride, dilation=dilation)


def _group_norm(x: Tensor, sd: Mapping[str, Tensor], prefix: str) -> Tensor:
    return F.group_norm(x, GN_GROUPS, sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], eps=GN_EPS)


def _vqgan_resnet_block(x: Tensor, sd: Mapping[str, Tensor], p: str) -> Tensor:
    """§7 ResnetBlock: if cin == cout: x + h, else h + nin_shortcut(h) (the input x is discarded)."""
    cout, cin = sd[f"{p}.conv1.weight"].shape[:2]
    h = _conv2d_same(F.silu(_group_norm(x, sd, f"{p}.norm1")), sd[f"{p}.conv1.weight"])
    h = _conv2d_same(F.silu(_group_norm(h, sd, f"{p}.norm2")), sd[f"{p}.conv2.weight"])
    if cin == cout:
        assert f"{p}.nin_shortcut.weight" not in sd
        return x + h
    return h + _conv2d_same(h, sd[f"{p}.nin_shortcut.weight"])


def ref_pixel_decoder(sd: Mapping[str, Tensor], z: Tensor, prefix: str = "pixel_decoder") -> Tensor:
    """§7 MaskGIT-VQGAN decoder: z (B, z_ch, g, g) -> RGB (B, 3, 16g, 16g) (for 5 levels); not clamped."""
    num_levels = 0
    while f"{prefix}.up.{num_levels}.block.0.conv1.weight" in sd:
        num_levels += 1
    num_blocks = 0
    while f"{prefix}.up.0.block.{num_blocks}.conv1.weight" in sd:
        num_blocks += 1
    h = _conv2d_same(z, sd[f"{prefix}.conv_in.weight"], sd[f"{prefix}.conv_in.bias"])
    h = _vqgan_resnet_block(h, sd, f"{prefix}.mid.0")
    h = _vqgan_resnet_block(h, sd, f"{prefix}.mid.1")
    for level in reversed(range(num_levels)):  # levels 4, 3, 2, 1, 0
        for b in range(num_blocks):
            h = _vqgan_resnet_block(h, sd, f"{prefix}.up.{level}.block.{b}")
        if level != 0:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = _conv2d_same(h, sd[f"{prefix}.up.{level}.upsample_conv.weight"],
                             sd[f"{prefix}.up.{level}.upsample_conv.bias"])
    h = F.silu(_group_norm(h, sd, f"{prefix}.norm_out"))
    return _conv2d_same(h, sd[f"{prefix}.conv_out.weight"], sd[f"{prefix}.conv_out.bias"])


# ------------------------------------------------------------------------------------------------------------
# Decoder (§5) and full decode paths (§6)
# ------------------------------------------------------------------------------------------------------------


def ref_depth_to_space(x: Tensor, patch_size: int) -> Tensor:
    """§5.4 non-legacy: channel (p1*P + p2)*3 + c goes to pixel (row*P + p1, col*P + p2), colour c.

    x: (B, P*P*3, G, G) -> (B, 3, G*P, G*P).  Written as explicit per-channel scatter on purpose.
    """
    B, CH, G, G2 = x.shape
    P = patch_size
    assert CH == P * P * 3 and G == G2
    out = x.new_zeros(B, 3, G * P, G * P)
    for p1 in range(P):
        for p2 in range(P):
            for c in range(3):
                # rows row*P + p1 for row = 0..G-1, cols col*P + p2 for col = 0..G-1
                out[:, c, p1::P, p2::P] = x[:, (p1 * P + p2) * 3 + c, :, :]
    return out


def _decoder_feature_map(sd: Mapping[str, Tensor], codes: Tensor, *, num_heads: int, grid: int) -> Tensor:
    """§5.1-5.3: codes (B, C, 1, K) -> (B, w, G, G) (row-major)."""
    B, C, H, K = codes.shape
    assert H == 1
    z = codes.to(torch.float32).reshape(B, C, K).permute(0, 2, 1)  # (B, K, C) proper permute (no quirk here)

    # §5.1 decoder_embed + latent_token_positional_embedding[:K]
    lat = F.linear(z, sd["decoder.decoder_embed.weight"], sd["decoder.decoder_embed.bias"])
    w = lat.shape[-1]
    lat = lat + sd["decoder.latent_token_positional_embedding"][:K].unsqueeze(0)

    # §5.2 mask_token repeated G² times, prepend class_embedding, add positional_embedding.
    G = grid
    masks = sd["decoder.mask_token"].reshape(1, 1, w).expand(B, G * G, w)
    cls = sd["decoder.class_embedding"].reshape(1, 1, w).expand(B, 1, w)
    image_part = torch.cat([cls, masks], dim=1) + sd["decoder.positional_embedding"].unsqueeze(0)

    # §5.3 [cls, mask_0..G²-1, latent_0..K-1] -> ln_pre -> blocks -> positions 1..G² -> ln_post.
    seq = torch.cat([image_part, lat], dim=1)
    assert seq.shape[1] == 1 + G * G + K
    seq = _layer_norm(seq, sd, "decoder.ln_pre")
    seq = _transformer(seq, sd, "decoder", num_heads)
    out = _layer_norm(seq[:, 1:1 + G * G, :], sd, "decoder.ln_post")  # (B, G*G, w)
    fmap = out.new_zeros(B, w, G, G)
    for r in range(G):
        for c in range(G):
            fmap[:, :, r, c] = out[:, r * G + c, :]
    return fmap


def ref_decode(sd: Mapping[str, Tensor], codes: Tensor, *, num_heads: int, legacy: bool, image_size: int = 256,
               patch_size: int = 16) -> Dict[str, Tensor]:
    """Reference ``TiTok.decode`` on (B, C, 1, K) code vectors.

    legacy: ``logits`` (B, 1024, G, G) proxy-code logits, ``soft_codes`` (B, z_ch, G, G) and ``images``
    (B, 3, H, W) from the MaskGIT-VQGAN pixel decoder.  non-legacy: ``images`` (B, 3, H, W) from the RGB head.
    Nothing is clamped.
    """
    with torch.no_grad():
        G = image_size // patch_size
        fmap = _decoder_feature_map(sd, codes, num_heads=num_heads, grid=G)
        if legacy:
            # §5.4 legacy head: Conv1x1 -> Tanh -> Conv1x1 (-> 1024 logits); conv_out = Identity.
            h = torch.tanh(F.conv2d(fmap, sd["decoder.ffn.0.weight"], sd["decoder.ffn.0.bias"]))
            logits = F.conv2d(h, sd["decoder.ffn.2.weight"], sd["decoder.ffn.2.bias"])  # (B, 1024, G, G)
            # §6 decode: softmax over the 1024 channels -> weighted sum of pixel codebook rows -> pixel decoder.
            probs = torch.softmax(logits, dim=1)
            pix_cb = sd["pixel_quantize.embedding.weight"]  # (1024, z_ch)
            soft = torch.einsum("bngh,nd->bdgh", probs, pix_cb)  # (B, z_ch, G, G)
            images = ref_pixel_decoder(sd, soft, "pixel_decoder")
            return {"logits": logits, "soft_codes": soft, "images": images}
        # §5.4 non-legacy: Conv1x1 (w -> P*P*3) -> depth-to-space -> Conv 3x3 padding 1.
        h = F.conv2d(fmap, sd["decoder.ffn.0.weight"], sd["decoder.ffn.0.bias"])
        rgb = ref_depth_to_space(h, patch_size)
        images = F.conv2d(rgb, sd["decoder.conv_out.weight"], sd["decoder.conv_out.bias"], padding=1)
        return {"images": images}


def ref_decode_ids(sd: Mapping[str, Tensor], ids: Tensor, *, num_heads: int, legacy: bool, use_l2_norm: bool = True,
                   image_size: int = 256, patch_size: int = 16) -> Dict[str, Tensor]:
    """Reference ``TiTok.decode_tokens``: ids (B, K) or (B, 1, K) -> codebook rows (normalised when l2) -> decode."""
    if ids.dim() == 3:
        assert ids.shape[1] == 1
        ids = ids[:, 0]
    B, K = ids.shape
    cb = sd["quantize.embedding.weight"].to(torch.float32)
    rows = cb[ids.reshape(-1).long()]  # (B*K, C)
    if use_l2_norm:
        rows = F.normalize(rows, p=2, dim=1, eps=1e-12)
    C = rows.shape[1]
    codes = rows.reshape(B, K, C).permute(0, 2, 1).reshape(B, C, 1, K)
    out = ref_decode(sd, codes, num_heads=num_heads, legacy=legacy, image_size=image_size, patch_size=patch_size)
    out["codes"] = codes
    return out
