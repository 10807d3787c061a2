"""Independent reference forward of the official ALIT over the KL-16 VAE (``adaptive_vae.py``).

Test oracle written from ``/work/shared/specs/alit.md`` (§3.2 the KL-16 VAE = the LDM ``AutoencoderKL`` as
MAR's kl16; §4 modules; §5 the VAE bullet; §6 VAE halting; §7; §8; §11-§12 keys).  It works on plain state
dicts with the OFFICIAL key layout (``base_tokenizer.vae.*``) and imports nothing from ``adatok``: the VAE is
written out functionally here (explicit ``bmm`` single-head attention as LDM computes it, explicit asymmetric
padding, attention placed by the LDM rule "current resolution in ``attn_resolutions``"); the latent-distillation
transformer pieces come from the sibling oracle ``alit_ref`` (also adatok-free).  float32, ``torch.no_grad``.

Public API
----------
* ``tiny_config(**overrides)`` / ``official_config(size, quantized)`` -> plain dicts.
* ``official_alit_vae_shapes(cfg, with_gan_losses)`` -> ``{official key: shape}``.
* ``random_official_state_dict(cfg, seed, with_gan_losses)`` -> random float32 weights, official names.
* ``vae_moments`` / ``vae_tokens`` / ``vae_decode`` -> the KL-VAE pieces on ``base_tokenizer.vae.*``.
* ``official_rollout(sd, cfg, images, sample, generator)`` -> every iteration's intermediates.
* ``official_decode_codes(sd, cfg, codes)`` -> codes -> latent decoder -> VAE decoder (no un-scaling).
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional

import torch
import torch.nn.functional as F

from . import alit_ref

Tensor = torch.Tensor

GN_GROUPS, GN_EPS = 32, 1e-6
LATENT_SCALE = 0.2325  # §3.2: posterior.sample() * 0.2325
VAE = "base_tokenizer.vae."

_KEYS = ("width", "depth", "heads", "tokens_per_iter", "max_iters", "token_dim", "codebook_size", "quantized",
         "decoder_max_tokens", "image_size", "vae_ch", "vae_ch_mult", "vae_num_res_blocks", "vae_embed_dim",
         "vae_attn_resolutions")


def _finish(cfg: dict, overrides: dict) -> dict:
    unknown = set(overrides) - set(_KEYS)
    if unknown:
        raise KeyError(f"unknown config keys {sorted(unknown)}")
    cfg.update(overrides)
    if cfg.get("decoder_max_tokens") is None:
        cfg["decoder_max_tokens"] = cfg["tokens_per_iter"] * cfg["max_iters"]
    cfg["vae_ch_mult"] = tuple(cfg["vae_ch_mult"])
    return cfg


def tiny_config(**overrides) -> dict:
    """Width 64, 2+2 layers, 2 heads, 8 tokens x 4 iterations, 64 px; VAE ch 32, mult (1,1,2,2,4) -> 4x4 grid,
    8 latent channels, attention at the 4x4 resolution (the lowest, as kl16's 16 at 256 px)."""
    cfg = dict(width=64, depth=2, heads=2, tokens_per_iter=8, max_iters=4, token_dim=8, codebook_size=32,
               quantized=True, decoder_max_tokens=None, image_size=64, vae_ch=32, vae_ch_mult=(1, 1, 2, 2, 4),
               vae_num_res_blocks=2, vae_embed_dim=8, vae_attn_resolutions=(4,))
    return _finish(cfg, overrides)


def official_config(size: str = "small", quantized: bool = True) -> dict:
    width, depth, heads = alit_ref.ALIT_SIZES[size]
    cfg = dict(width=width, depth=depth, heads=heads, tokens_per_iter=32, max_iters=8, token_dim=12,
               codebook_size=4096, quantized=quantized, decoder_max_tokens=256, image_size=256, vae_ch=128,
               vae_ch_mult=(1, 1, 2, 2, 4), vae_num_res_blocks=2, vae_embed_dim=16, vae_attn_resolutions=(16,))
    return _finish(cfg, {})


def _grid(cfg: Mapping) -> int:
    return cfg["image_size"] // 2 ** (len(cfg["vae_ch_mult"]) - 1)


# ------------------------------------------------------------------------------------------------------------
# Keys and shapes
# ------------------------------------------------------------------------------------------------------------


def _conv_shapes(name: str, cout: int, cin: int, k: int) -> Dict[str, tuple]:
    return {f"{name}.weight": (cout, cin, k, k), f"{name}.bias": (cout,)}


def _gn_shapes(name: str, c: int) -> Dict[str, tuple]:
    return {f"{name}.weight": (c,), f"{name}.bias": (c,)}


def _rb_shapes(p: str, cin: int, cout: int) -> Dict[str, tuple]:
    """LDM ResnetBlock: convs with bias; nin_shortcut 1x1 cin -> cout (with bias) iff channels change."""
    s = {**_gn_shapes(p + ".norm1", cin), **_conv_shapes(p + ".conv1", cout, cin, 3),
         **_gn_shapes(p + ".norm2", cout), **_conv_shapes(p + ".conv2", cout, cout, 3)}
    if cin != cout:
        s.update(_conv_shapes(p + ".nin_shortcut", cout, cin, 1))
    return s


def _attn_shapes(p: str, c: int) -> Dict[str, tuple]:
    s = _gn_shapes(p + ".norm", c)
    for n in ("q", "k", "v", "proj_out"):
        s.update(_conv_shapes(f"{p}.{n}", c, c, 1))
    return s


def vae_shapes(cfg: Mapping, prefix: str = VAE) -> Dict[str, tuple]:
    """The LDM AutoencoderKL keys (MAR's kl16 layout) for ``cfg``."""
    ch, mult, nb, E = cfg["vae_ch"], cfg["vae_ch_mult"], cfg["vae_num_res_blocks"], cfg["vae_embed_dim"]
    res, attn_res = cfg["image_size"], cfg["vae_attn_resolutions"]
    s: Dict[str, tuple] = {}
    e = prefix + "encoder."
    s.update(_conv_shapes(e + "conv_in", ch, 3, 3))
    cin = ch
    for lvl, m in enumerate(mult):
        for b in range(nb):
            s.update(_rb_shapes(f"{e}down.{lvl}.block.{b}", cin, ch * m))
            cin = ch * m
            if res in attn_res:
                s.update(_attn_shapes(f"{e}down.{lvl}.attn.{b}", cin))
        if lvl != len(mult) - 1:
            s.update(_conv_shapes(f"{e}down.{lvl}.downsample.conv", cin, cin, 3))
            res //= 2
    s.update(_rb_shapes(e + "mid.block_1", cin, cin))
    s.update(_attn_shapes(e + "mid.attn_1", cin))
    s.update(_rb_shapes(e + "mid.block_2", cin, cin))
    s.update(_gn_shapes(e + "norm_out", cin))
    s.update(_conv_shapes(e + "conv_out", 2 * E, cin, 3))

    d = prefix + "decoder."
    cin = ch * mult[-1]
    s.update(_conv_shapes(d + "conv_in", cin, E, 3))
    s.update(_rb_shapes(d + "mid.block_1", cin, cin))
    s.update(_attn_shapes(d + "mid.attn_1", cin))
    s.update(_rb_shapes(d + "mid.block_2", cin, cin))
    for lvl in reversed(range(len(mult))):
        for b in range(nb + 1):
            s.update(_rb_shapes(f"{d}up.{lvl}.block.{b}", cin, ch * mult[lvl]))
            cin = ch * mult[lvl]
        if lvl != 0:
            s.update(_conv_shapes(f"{d}up.{lvl}.upsample.conv", cin, cin, 3))
    s.update(_gn_shapes(d + "norm_out", cin))
    s.update(_conv_shapes(d + "conv_out", 3, cin, 3))
    s.update(_conv_shapes(prefix + "quant_conv", 2 * E, 2 * E, 1))
    s.update(_conv_shapes(prefix + "post_quant_conv", E, E, 1))
    return s


def official_alit_vae_shapes(cfg: Mapping, with_gan_losses: bool = False) -> Dict[str, tuple]:
    """Official ``ema`` key -> shape for an ALIT over the VAE (§12: ``patch_embed`` W - E, ``decoder.ffn.2`` E)."""
    W, L, n0, T, d, E = (cfg[k] for k in ("width", "depth", "tokens_per_iter", "max_iters", "token_dim",
                                          "vae_embed_dim"))
    P, G = 2 ** (len(cfg["vae_ch_mult"]) - 1), _grid(cfg)
    s: Dict[str, tuple] = {
        "encoder_positional_embedding": (G * G + 1, W), "encoder_class_embedding": (1, W),
        "encoder_mask_token": (1, 1, W), "decoder_positional_embedding": (G * G + 1, W),
        "decoder_class_embedding": (1, W), "decoder_mask_token": (1, 1, W), "latent_tokens": (n0, W),
        "latent_token_positional_embedding": (n0, W), "timestep_embedding": (T, n0, W),
    }
    for ln in ("encoder_ln_pre", "encoder_ln_post", "encoder_ln_recursive", "decoder.ln_pre", "decoder.ln_post"):
        s.update({f"{ln}.weight": (W,), f"{ln}.bias": (W,)})
    s.update({"pre_quantizer_mlp.weight": (d, W), "pre_quantizer_mlp.bias": (d,),
              "patch_embed.weight": (W - E, 3, P, P), "patch_embed.bias": (W - E,),
              "decoder.latent_token_positional_embedding": (cfg["decoder_max_tokens"], W),
              "decoder.decoder_embed.weight": (W, d), "decoder.decoder_embed.bias": (W,),
              "decoder.ffn.0.weight": (2 * W, W), "decoder.ffn.0.bias": (2 * W,),
              "decoder.ffn.2.weight": (E, 2 * W), "decoder.ffn.2.bias": (E,)})
    for side in ("encoder", "decoder"):
        for i in range(L):
            s.update(alit_ref._block_shapes(f"{side}.transformer.{i}", W))
    if cfg["quantized"]:
        s["quantize.embedding.weight"] = (cfg["codebook_size"], d)
    s.update(vae_shapes(cfg))
    if with_gan_losses:
        s.update(alit_ref._gan_loss_shapes())
    return s


def random_official_state_dict(cfg: Mapping, seed: int = 0, with_gan_losses: bool = False) -> Dict[str, Tensor]:
    """Random float32 weights (sorted keys, one seeded generator): embeddings W^-0.5 N(0,1); norm weights
    1 + 0.1 N; biases 0.1 N; Linear / conv weights N(0,1)/sqrt(fan_in); 1D codebook N(0,1)."""
    return alit_ref.random_weights(official_alit_vae_shapes(cfg, with_gan_losses), cfg["width"], seed, head_gain=1.0)


# ------------------------------------------------------------------------------------------------------------
# The KL-VAE (§3.2), functionally
# ------------------------------------------------------------------------------------------------------------


def _conv(sd, name, x, stride=1, padding=None):
    w = sd[name + ".weight"]
    pad = w.shape[-1] // 2 if padding is None else padding
    return F.conv2d(x, w, sd[name + ".bias"], stride=stride, padding=pad)


def _gn(sd, name, x):
    return F.group_norm(x, GN_GROUPS, sd[name + ".weight"], sd[name + ".bias"], eps=GN_EPS)


def _swish(x):
    return x * torch.sigmoid(x)


def _rb(sd, p, x):
    h = _conv(sd, p + ".conv1", _swish(_gn(sd, p + ".norm1", x)))
    h = _conv(sd, p + ".conv2", _swish(_gn(sd, p + ".norm2", h)))  # dropout 0
    if p + ".nin_shortcut.weight" in sd:
        x = _conv(sd, p + ".nin_shortcut", x)
    return x + h


def _attn(sd, p, x):
    """LDM AttnBlock: w[b,i,j] = q_i . k_j / sqrt(c), softmax over j, out_i = sum_j w[b,i,j] v_j."""
    h = _gn(sd, p + ".norm", x)
    q, k, v = (_conv(sd, f"{p}.{n}", h) for n in ("q", "k", "v"))
    b, c, hh, ww = q.shape
    q = q.reshape(b, c, hh * ww).permute(0, 2, 1)  # b, hw, c
    w = torch.bmm(q, k.reshape(b, c, hh * ww)) * (int(c) ** (-0.5))
    w = torch.softmax(w, dim=2)
    out = torch.bmm(v.reshape(b, c, hh * ww), w.permute(0, 2, 1)).reshape(b, c, hh, ww)
    return x + _conv(sd, p + ".proj_out", out)


def vae_moments(sd: Mapping[str, Tensor], cfg: Mapping, x: Tensor, prefix: str = VAE) -> Tensor:
    """pixels (as the network sees them) -> quant_conv(encoder(x)): B x 2E x G x G (mean | logvar)."""
    e = prefix + "encoder."
    mult, nb = cfg["vae_ch_mult"], cfg["vae_num_res_blocks"]
    res = cfg["image_size"]
    h = _conv(sd, e + "conv_in", x)
    for lvl in range(len(mult)):
        for b in range(nb):
            h = _rb(sd, f"{e}down.{lvl}.block.{b}", h)
            if res in cfg["vae_attn_resolutions"]:
                h = _attn(sd, f"{e}down.{lvl}.attn.{b}", h)
        if lvl != len(mult) - 1:
            h = _conv(sd, f"{e}down.{lvl}.downsample.conv", F.pad(h, (0, 1, 0, 1)), stride=2, padding=0)
            res //= 2
    h = _rb(sd, e + "mid.block_2", _attn(sd, e + "mid.attn_1", _rb(sd, e + "mid.block_1", h)))
    h = _conv(sd, e + "conv_out", _swish(_gn(sd, e + "norm_out", h)))
    return _conv(sd, prefix + "quant_conv", h)


def vae_tokens(sd, cfg, images, sample: bool = True, generator: Optional[torch.Generator] = None,
               prefix: str = VAE) -> Tensor:
    """ALIT's 2D tokens: ``posterior.sample() * 0.2325`` (or the mean * 0.2325); images in [0, 1] as they are."""
    mean, logvar = torch.chunk(vae_moments(sd, cfg, images, prefix), 2, dim=1)
    logvar = torch.clamp(logvar, -30.0, 20.0)
    std = torch.exp(0.5 * logvar)
    z = mean + std * torch.randn(mean.shape, generator=generator) if sample else mean
    return z * LATENT_SCALE


def vae_decode(sd: Mapping[str, Tensor], cfg: Mapping, z: Tensor, prefix: str = VAE) -> Tensor:
    """``vae.decode(z)`` = decoder(post_quant_conv(z)); unclamped."""
    d = prefix + "decoder."
    mult, nb = cfg["vae_ch_mult"], cfg["vae_num_res_blocks"]
    h = _conv(sd, d + "conv_in", _conv(sd, prefix + "post_quant_conv", z))
    h = _rb(sd, d + "mid.block_2", _attn(sd, d + "mid.attn_1", _rb(sd, d + "mid.block_1", h)))
    for lvl in reversed(range(len(mult))):
        for b in range(nb + 1):
            h = _rb(sd, f"{d}up.{lvl}.block.{b}", h)  # no decoder attention in kl16 (attn_resolutions=())
        if lvl != 0:
            h = _conv(sd, f"{d}up.{lvl}.upsample.conv", F.interpolate(h, scale_factor=2.0, mode="nearest"))
    return _conv(sd, d + "conv_out", _swish(_gn(sd, d + "norm_out", h)))


# ------------------------------------------------------------------------------------------------------------
# ALIT over the VAE (§5 VAE bullet, §6)
# ------------------------------------------------------------------------------------------------------------


def _latent_decoder(sd, cfg, codes: Tensor) -> Tensor:
    """codes B x n x d -> regressed 2D tokens B x N2 x E (decoder.ffn: Linear, Tanh, Linear)."""
    B, n, _ = codes.shape
    Q = alit_ref._decoder_queries(sd, B)
    n2 = Q.shape[1] - 1
    h = alit_ref._linear(sd, "decoder.decoder_embed", codes) + sd["decoder.latent_token_positional_embedding"][:n][None]
    x = alit_ref._ln(sd, "decoder.ln_pre", torch.cat([Q, h], dim=1))
    x = alit_ref._stack(sd, cfg, "decoder", x)
    y = alit_ref._ln(sd, "decoder.ln_post", x[:, 1:1 + n2])
    return alit_ref._linear(sd, "decoder.ffn.2", torch.tanh(alit_ref._linear(sd, "decoder.ffn.0", y)))


def _reconstruct(sd, cfg, decoded: Tensor) -> Tensor:
    """Official ``reconstruct_images``: B x N2 x E -> B x E x G x G -> vae.decode, NO division by 0.2325."""
    G = _grid(cfg)
    return vae_decode(sd, cfg, decoded.reshape(decoded.shape[0], G, G, decoded.shape[-1]).permute(0, 3, 1, 2))


def _official_vae_halting(sd, x: Tensor, decoded: Tensor, gt_code: Tensor, threshold: float = 0.025) -> Tensor:
    """``perform_dynamic_halting`` of adaptive_vae.py as written: the mask is assigned through a boolean-indexed
    copy, so it stays zero and the blend returns the image slots unchanged (§6)."""
    n_img = 1 + gt_code.shape[1]
    drop = torch.zeros_like(decoded[:, :, 0])
    drop[torch.abs(decoded - gt_code).mean(dim=-1) < threshold][:] = 1.0  # writes into a copy
    slots = x[:, 1:n_img]
    masked = sd["encoder_positional_embedding"][None, 1:].repeat(x.shape[0], 1, 1) + sd["encoder_mask_token"].repeat(
        x.shape[0], slots.shape[1], 1)
    slots = masked * drop[..., None] + (1 - drop[..., None]) * slots
    return torch.cat((x[:, :1], slots, x[:, n_img:]), dim=1)


def official_rollout(sd: Mapping[str, Tensor], cfg: Mapping, images: Tensor, sample: bool = True,
                     generator: Optional[torch.Generator] = None, reconstruct: bool = True) -> dict:
    """Eval-mode forward, all T iterations. Returns ``{"z": B x E x G x G scaled tokens, "iters": [...]}``;
    iteration k: latent_tokens, latents (f_k), ids (None if continuous), codes, decoded B x N2 x E, recon."""
    with torch.no_grad():
        imgs = images.to(torch.float32)
        B = imgs.shape[0]
        W, n0, T = cfg["width"], cfg["tokens_per_iter"], cfg["max_iters"]
        P = 2 ** (len(cfg["vae_ch_mult"]) - 1)
        z = vae_tokens(sd, cfg, imgs, sample, generator)
        p = F.conv2d(imgs, sd["patch_embed.weight"], sd["patch_embed.bias"], stride=P)
        feat = torch.cat([z, p], dim=1)
        n2 = feat.shape[-1] * feat.shape[-2]
        tokens = alit_ref._l2n(feat.reshape(B, W, n2).permute(0, 2, 1))
        gt_code = z.reshape(B, z.shape[1], n2).permute(0, 2, 1)
        cls = sd["encoder_class_embedding"].reshape(1, 1, W).expand(B, 1, W)
        image_seq = torch.cat([cls, tokens], dim=1) + sd["encoder_positional_embedding"][None]
        L0 = sd["latent_tokens"] + sd["latent_token_positional_embedding"]
        x = alit_ref._ln(sd, "encoder_ln_pre",
                         torch.cat([image_seq, (L0 + sd["timestep_embedding"][0])[None].expand(B, n0, W)], dim=1))
        iters: List[dict] = []
        for k in range(T):
            x = alit_ref._stack(sd, cfg, "encoder", x)
            lat = x[:, 1 + n2:]
            f = alit_ref._linear(sd, "pre_quantizer_mlp", alit_ref._ln(sd, "encoder_ln_post", lat))
            ids, q = alit_ref._quantize_1d(sd, f) if cfg["quantized"] else (None, f)
            decoded = _latent_decoder(sd, cfg, q)
            x = _official_vae_halting(sd, x, decoded, gt_code)
            rec = {"latent_tokens": lat.clone(), "latents": f, "ids": ids, "codes": q, "decoded": decoded}
            if reconstruct:
                rec["recon"] = _reconstruct(sd, cfg, decoded)
            iters.append(rec)
            if k < T - 1:
                new = (L0 + sd["timestep_embedding"][k + 1])[None].expand(B, n0, W)
                x = alit_ref._ln(sd, "encoder_ln_recursive", torch.cat([x, new], dim=1))
        return {"z": z, "iters": iters}


def official_decode_codes(sd: Mapping[str, Tensor], cfg: Mapping, codes: Tensor) -> Tensor:
    """codes B x n x d -> unclamped pixels (latent decoder, then the VAE decoder on the raw prediction)."""
    with torch.no_grad():
        return _reconstruct(sd, cfg, _latent_decoder(sd, cfg, codes.to(torch.float32)))
