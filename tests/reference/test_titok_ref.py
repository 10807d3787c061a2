"""Self-checks of the independent TiTok reference oracle (tests/reference/titok_ref.py)."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

try:  # works whether or not tests/ itself is a package
    from . import titok_ref as R
except ImportError:  # pragma: no cover
    from tests.reference import titok_ref as R

TSV = Path(__file__).resolve().parent / "keys" / "tokenizer_titok_s128.tsv"  # copied from shared/specs/titok_keys

# Shrunk configuration: width 64, depth 2, heads 4, 8 tokens, token size 12, image 32 (grid 2), pixel channels 32.
SMALL = dict(enc_width=64, enc_depth=2, dec_width=64, dec_depth=2, num_tokens=8, token_size=12, codebook_size=256,
             image_size=32, patch_size=16, pixel_channels=32)
HEADS = 4


def _images(b: int = 2, size: int = 32, seed: int = 123) -> torch.Tensor:
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def legacy_sd():
    return R.random_official_state_dict(R.official_titok_shapes(**SMALL, legacy=True), seed=0)


@pytest.fixture(scope="module")
def nonlegacy_sd():
    return R.random_official_state_dict(R.official_titok_shapes(**SMALL, legacy=False), seed=1)


@pytest.fixture(scope="module")
def vae_sd():
    cfg = dict(SMALL, token_size=16)
    return R.random_official_state_dict(R.official_titok_shapes(**cfg, legacy=False, vae=True), seed=2)


# ---------------------------------------------------------------------------------------------------- shapes


def _read_tsv(path: Path) -> dict:
    lines = path.read_text().strip().splitlines()
    assert lines[0].split("\t") == ["key", "shape", "dtype"]
    out = {}
    for line in lines[1:]:
        key, shape, dtype = line.split("\t")
        assert dtype == "float32"
        out[key] = tuple(ast.literal_eval(shape))
    return out


def test_s128_shapes_match_official_tsv():
    ref = _read_tsv(TSV)
    got = R.official_titok_shapes(enc_width=512, enc_depth=8, dec_width=512, dec_depth=8, num_tokens=128,
                                  token_size=12, codebook_size=4096, legacy=True, pixel_channels=128)
    assert len(ref) == 308
    assert set(got) == set(ref), (sorted(set(got) - set(ref)), sorted(set(ref) - set(got)))
    for k in ref:
        assert tuple(got[k]) == ref[k], k


def _count(shapes: dict, prefix: str = "") -> int:
    return sum(math.prod(s) for k, s in shapes.items() if k.startswith(prefix))


@pytest.mark.parametrize("enc,dec,K,ts,cb,legacy,vae,expected", [
    ("small", "small", 128, 12, 4096, True, False, 83_674_639),  # titok_s128
    ("base", "base", 64, 12, 4096, True, False, 204_814_095),  # titok_b64
    ("large", "large", 32, 12, 4096, True, False, 641_054_735),  # titok_l32
    ("base", "large", 64, 64, 8192, False, False, 390_016_148),  # titok_bl64_vq8k
    ("base", "large", 128, 64, 8192, False, False, 390_179_988),  # titok_bl128_vq8k
    ("small", "large", 256, 64, 8192, False, False, 330_260_884),  # titok_sl256_vq8k
    ("large", "large", 32, 16, 0, False, True, 606_879_604),  # titok_ll32_vae_c16
    ("base", "large", 64, 16, 0, False, True, 389_418_100),  # titok_bl64_vae_c16
    ("base", "large", 128, 16, 0, False, True, 389_581_940),  # titok_bl128_vae_c16
])
def test_param_counts_of_official_configs(enc, dec, K, ts, cb, legacy, vae, expected):
    ew, ed, _ = R.TITOK_VIT_SIZES[enc]
    dw, dd, _ = R.TITOK_VIT_SIZES[dec]
    shapes = R.official_titok_shapes(enc_width=ew, enc_depth=ed, dec_width=dw, dec_depth=dd, num_tokens=K,
                                     token_size=ts, codebook_size=cb, legacy=legacy, vae=vae)
    assert _count(shapes) == expected


def test_s128_component_param_counts():
    s = R.official_titok_shapes(enc_width=512, enc_depth=8, dec_width=512, dec_depth=8, num_tokens=128,
                                token_size=12, codebook_size=4096)
    assert _count(s, "encoder.") == 25_818_636
    assert _count(s, "decoder.") == 27_000_832
    assert _count(s, "pixel_decoder.") == 30_478_339
    assert _count(s, "pixel_quantize.") == 262_144
    assert _count(s, "quantize.") == 49_152
    assert sum(1 for k in s if k.startswith("pixel_decoder.")) == 88


def test_shrunk_shapes_variants():
    leg = R.official_titok_shapes(**SMALL, legacy=True)
    non = R.official_titok_shapes(**SMALL, legacy=False)
    vae = R.official_titok_shapes(**SMALL, legacy=False, vae=True)
    assert leg["decoder.ffn.0.weight"] == (128, 64, 1, 1)
    assert leg["decoder.ffn.2.weight"] == (1024, 128, 1, 1)
    assert leg["encoder.positional_embedding"] == (5, 64)
    assert leg["pixel_decoder.conv_in.weight"] == (128, 256, 3, 3)
    assert leg["pixel_decoder.up.3.block.0.nin_shortcut.weight"] == (64, 64, 1, 1)
    assert leg["pixel_decoder.up.1.block.0.nin_shortcut.weight"] == (32, 32, 1, 1)
    assert non["decoder.ffn.0.weight"] == (768, 64, 1, 1)
    assert non["decoder.conv_out.weight"] == (3, 3, 3, 3)
    assert not any(k.startswith("pixel_") for k in non) and "decoder.ffn.2.weight" not in non
    assert "quantize.embedding.weight" not in vae
    assert vae["encoder.conv_out.weight"] == (24, 64, 1, 1)


def test_random_state_dict_matches_shapes_and_is_deterministic():
    shapes = R.official_titok_shapes(**SMALL, legacy=True)
    a = R.random_official_state_dict(shapes, seed=5)
    b = R.random_official_state_dict(dict(reversed(list(shapes.items()))), seed=5)
    c = R.random_official_state_dict(shapes, seed=6)
    assert set(a) == set(shapes)
    for k, s in shapes.items():
        assert tuple(a[k].shape) == tuple(s) and a[k].dtype == torch.float32
        assert torch.equal(a[k], b[k])
        assert not torch.equal(a[k], c[k])
        assert a[k].abs().max() > 0


# ---------------------------------------------------------------------------------------------------- building blocks


def test_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    w, heads = 32, 4
    mha = torch.nn.MultiheadAttention(w, heads, batch_first=True)
    with torch.no_grad():
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    x = torch.randn(3, 7, w)
    with torch.no_grad():
        expected = mha(x, x, x, need_weights=False)[0]
    got = R.ref_attention(x, mha.in_proj_weight.detach(), mha.in_proj_bias.detach(), mha.out_proj.weight.detach(),
                          mha.out_proj.bias.detach(), heads)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_depth_to_space_index_convention():
    P, G = 4, 3
    x = torch.randn(2, P * P * 3, G, G)
    out = R.ref_depth_to_space(x, P)
    assert out.shape == (2, 3, G * P, G * P)
    # b (p1 p2 c) h w -> b c (h p1) (w p2)
    alt = x.reshape(2, P, P, 3, G, G).permute(0, 3, 4, 1, 5, 2).reshape(2, 3, G * P, G * P)
    assert torch.equal(out, alt)
    p1, p2, c, row, col = 1, 3, 2, 2, 0
    assert out[1, c, row * P + p1, col * P + p2] == x[1, (p1 * P + p2) * 3 + c, row, col]


def test_tf_same_conv_padding():
    x = torch.randn(1, 4, 5, 5)
    w3 = torch.randn(6, 4, 3, 3)
    torch.testing.assert_close(R._conv2d_same(x, w3), F.conv2d(x, w3, padding=1))
    w1 = torch.randn(6, 4, 1, 1)
    torch.testing.assert_close(R._conv2d_same(x, w1), F.conv2d(x, w1))


# ---------------------------------------------------------------------------------------------------- forward shapes


def test_legacy_shapes(legacy_sd):
    x = _images()
    enc = R.ref_encode(legacy_sd, x, num_heads=HEADS, legacy=True)
    assert enc["latents"].shape == (2, 12, 1, 8)
    assert enc["ids"].shape == (2, 8) and enc["ids"].dtype == torch.int64
    assert enc["codes"].shape == (2, 12, 1, 8)
    torch.testing.assert_close(enc["codes"].norm(dim=1), torch.ones(2, 1, 8))
    dec = R.ref_decode(legacy_sd, enc["codes"], num_heads=HEADS, legacy=True, image_size=32)
    assert dec["logits"].shape == (2, 1024, 2, 2)
    assert dec["soft_codes"].shape == (2, 256, 2, 2)
    assert dec["images"].shape == (2, 3, 32, 32)
    for t in (enc["latents"], dec["logits"], dec["images"]):
        assert torch.isfinite(t).all() and t.dtype == torch.float32
    assert 0.05 < dec["images"].std() < 100  # O(1)-ish activations, nothing collapsed


def test_nonlegacy_shapes(nonlegacy_sd):
    x = _images()
    enc = R.ref_encode(nonlegacy_sd, x, num_heads=HEADS, legacy=False, use_l2_norm=False)
    assert enc["latents"].shape == (2, 12, 1, 8) and enc["ids"].shape == (2, 8)
    # without l2 the codes are raw codebook rows
    assert torch.equal(enc["codes"][:, :, 0, :].permute(0, 2, 1),
                       nonlegacy_sd["quantize.embedding.weight"][enc["ids"]])
    dec = R.ref_decode(nonlegacy_sd, enc["codes"], num_heads=HEADS, legacy=False, image_size=32)
    assert set(dec) == {"images"}
    assert dec["images"].shape == (2, 3, 32, 32) and torch.isfinite(dec["images"]).all()


def test_vae_shapes(vae_sd):
    x = _images()
    enc = R.ref_encode(vae_sd, x, num_heads=HEADS, legacy=False, vae=True)
    assert enc["latents"].shape == (2, 32, 1, 8)
    assert enc["mean"].shape == enc["logvar"].shape == (2, 16, 1, 8)
    assert "ids" not in enc
    torch.testing.assert_close(enc["mean"], enc["latents"][:, :16])
    torch.testing.assert_close(enc["logvar"], enc["latents"][:, 16:].clamp(-30, 20))
    dec = R.ref_decode(vae_sd, enc["mean"], num_heads=HEADS, legacy=False, image_size=32)
    assert dec["images"].shape == (2, 3, 32, 32)


def test_vae_logvar_is_clamped(vae_sd):
    sd = dict(vae_sd)
    bias = sd["encoder.conv_out.bias"].clone()
    bias[16:] = 100.0  # pushes logvar far above 20
    sd["encoder.conv_out.bias"] = bias
    enc = R.ref_encode(sd, _images(), num_heads=HEADS, legacy=False, vae=True)
    assert enc["latents"][:, 16:].max() > 20
    assert enc["logvar"].max() == 20.0


# ---------------------------------------------------------------------------------------------------- semantics


def test_legacy_reshape_quirk_changes_ids(legacy_sd):
    x = _images(b=4)
    quirk = R.ref_encode(legacy_sd, x, num_heads=HEADS, legacy=True)
    proper = R.ref_encode(legacy_sd, x, num_heads=HEADS, legacy=False)
    assert not torch.allclose(quirk["latents"], proper["latents"])
    frac_diff = (quirk["ids"] != proper["ids"]).float().mean().item()
    assert frac_diff > 0.5, frac_diff


def test_legacy_quirk_is_a_reshape_not_a_transpose(legacy_sd):
    """Hand check of §3.5: latent 'token' k = conv_out applied to column k of the (w, K) re-read of the flat (K, w) data."""
    sd = dict(legacy_sd)
    w, K = 64, 8
    # With an identity conv_out (C_out = w) the proper path exposes the ln_post output of every token.
    eye = torch.eye(w).reshape(w, w, 1, 1)
    sd["encoder.conv_out.weight"] = eye
    sd["encoder.conv_out.bias"] = torch.zeros(w)
    x = _images(b=1)
    proper = R.ref_encode(dict(sd, **{"quantize.embedding.weight": torch.randn(4, w)}), x, num_heads=HEADS,
                          legacy=False)["latents"][0, :, 0, :]  # (w, K): column k = token k's vector
    quirk = R.ref_encode(dict(sd, **{"quantize.embedding.weight": torch.randn(4, w)}), x, num_heads=HEADS,
                         legacy=True)["latents"][0, :, 0, :]
    tokens = proper.t().contiguous()  # (K, w) ln_post output
    torch.testing.assert_close(quirk, tokens.reshape(-1).reshape(w, K))
    assert not torch.allclose(quirk, proper)


def test_ids_equal_bruteforce_argmin(legacy_sd):
    x = _images(b=3)
    enc = R.ref_encode(legacy_sd, x, num_heads=HEADS, legacy=True)
    z = F.normalize(enc["latents"].double()[:, :, 0, :].permute(0, 2, 1), dim=-1)  # (B, K, C)
    cb = F.normalize(legacy_sd["quantize.embedding.weight"].double(), dim=-1)  # (N, C)
    d = ((z[:, :, None, :] - cb[None, None, :, :]) ** 2).sum(-1)  # (B, K, N), direct (not expanded)
    brute = d.argmin(-1)
    top2 = d.topk(2, dim=-1, largest=False).values
    assert (top2[..., 1] - top2[..., 0]).min() > 1e-5  # no float ties in this draw
    assert torch.equal(enc["ids"], brute)
    torch.testing.assert_close(enc["codes"][:, :, 0, :].permute(0, 2, 1), cb[brute].float())
    torch.testing.assert_close(enc["z"][:, :, 0, :].permute(0, 2, 1), z.float())


def test_decode_ids_matches_decode_of_codes(legacy_sd, nonlegacy_sd):
    x = _images()
    for sd, legacy, l2 in ((legacy_sd, True, True), (nonlegacy_sd, False, False)):
        enc = R.ref_encode(sd, x, num_heads=HEADS, legacy=legacy, use_l2_norm=l2)
        a = R.ref_decode(sd, enc["codes"], num_heads=HEADS, legacy=legacy, image_size=32)
        b = R.ref_decode_ids(sd, enc["ids"], num_heads=HEADS, legacy=legacy, use_l2_norm=l2, image_size=32)
        c = R.ref_decode_ids(sd, enc["ids"][:, None, :], num_heads=HEADS, legacy=legacy, use_l2_norm=l2,
                             image_size=32)
        assert torch.equal(a["images"], b["images"]) and torch.equal(b["images"], c["images"])


def test_legacy_images_come_from_soft_codes(legacy_sd):
    enc = R.ref_encode(legacy_sd, _images(), num_heads=HEADS, legacy=True)
    dec = R.ref_decode(legacy_sd, enc["codes"], num_heads=HEADS, legacy=True, image_size=32)
    soft = torch.softmax(dec["logits"], 1).permute(0, 2, 3, 1) @ legacy_sd["pixel_quantize.embedding.weight"]
    torch.testing.assert_close(dec["soft_codes"], soft.permute(0, 3, 1, 2))
    # float32 reassociation noise is amplified by the VQGAN decoder (spec §14: ~1e-4 floor)
    torch.testing.assert_close(R.ref_pixel_decoder(legacy_sd, soft.permute(0, 3, 1, 2)), dec["images"],
                               atol=1e-3, rtol=1e-4)


class _Recording(dict):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.used = set()

    def __getitem__(self, key):
        self.used.add(key)
        return super().__getitem__(key)


@pytest.mark.parametrize("legacy,vae", [(True, False), (False, False), (False, True)])
def test_every_official_key_is_used(legacy, vae):
    cfg = dict(SMALL, token_size=16) if vae else SMALL
    sd = _Recording(R.random_official_state_dict(R.official_titok_shapes(**cfg, legacy=legacy, vae=vae)))
    enc = R.ref_encode(sd, _images(b=1), num_heads=HEADS, legacy=legacy, vae=vae)
    R.ref_decode(sd, enc["mean"] if vae else enc["codes"], num_heads=HEADS, legacy=legacy, image_size=32)
    assert sd.used == set(sd), sorted(set(sd) - sd.used)


def test_every_tensor_matters_for_legacy_outputs(legacy_sd):
    """Perturbing a sample of tensors (one per kind) changes the oracle's outputs."""
    x = _images(b=1)
    base_enc = R.ref_encode(legacy_sd, x, num_heads=HEADS, legacy=True)
    base_dec = R.ref_decode(legacy_sd, base_enc["codes"], num_heads=HEADS, legacy=True, image_size=32)
    for key in ("latent_tokens", "encoder.positional_embedding", "encoder.transformer.1.attn.in_proj_bias",
                "encoder.ln_post.bias", "decoder.mask_token", "decoder.transformer.0.mlp.c_fc.weight",
                "decoder.ffn.2.bias", "pixel_quantize.embedding.weight", "pixel_decoder.up.3.block.0.nin_shortcut.weight",
                "pixel_decoder.norm_out.weight"):
        sd = dict(legacy_sd)
        sd[key] = sd[key] + 0.05 * torch.randn(sd[key].shape, generator=torch.Generator().manual_seed(9))
        enc = R.ref_encode(sd, x, num_heads=HEADS, legacy=True)
        dec = R.ref_decode(sd, base_enc["codes"], num_heads=HEADS, legacy=True, image_size=32)
        changed = (not torch.allclose(enc["latents"], base_enc["latents"], atol=1e-4)
                   or (dec["images"] - base_dec["images"]).abs().max() > 1e-3)
        assert changed, key
