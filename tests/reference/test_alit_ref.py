"""Self-checks of the independent ALIT reference oracle (tests/reference/alit_ref.py)."""

from __future__ import annotations

import math
import re

import pytest
import torch

try:  # works whether or not tests/ itself is a package
    from . import alit_ref as R
    from . import maskgit_vqgan_ref as M
except ImportError:  # pragma: no cover
    from tests.reference import alit_ref as R
    from tests.reference import maskgit_vqgan_ref as M

B = 2


def _images(b: int = B, size: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def cfg():
    return R.tiny_config()


@pytest.fixture(scope="module")
def sd(cfg):
    return R.random_official_state_dict(cfg, seed=0)


@pytest.fixture(scope="module")
def off_run(sd, cfg):
    return R.official_rollout(sd, cfg, _images(), halting="off")


@pytest.fixture(scope="module")
def small():
    """A cheaper variant (32x32 images, 2x2 grid, 3 iterations) for the tests that decode pixels many times."""
    c = R.tiny_config(image_size=32, max_iters=3)
    return c, R.random_official_state_dict(c, seed=4)


@pytest.fixture(scope="module")
def halt_sd(sd, cfg):
    return R.halting_friendly_state_dict(sd, cfg)


# ---------------------------------------------------------------------------------------------------- configs / keys


def test_tiny_config_defaults_and_overrides():
    c = R.tiny_config()
    assert (c["width"], c["depth"], c["heads"], c["tokens_per_iter"], c["max_iters"]) == (64, 2, 2, 8, 4)
    assert (c["token_dim"], c["codebook_size"], c["quantized"], c["decoder_max_tokens"]) == (8, 32, True, 32)
    assert c["vq_channel_mult"] == (1, 1, 2, 2, 4) and c["image_size"] == 64
    assert R.tiny_config(max_iters=3)["decoder_max_tokens"] == 24
    assert R.tiny_config(max_iters=3, decoder_max_tokens=40)["decoder_max_tokens"] == 40
    with pytest.raises(KeyError):
        R.tiny_config(widht=32)


def _count(shapes, prefix=""):
    return sum(math.prod(s) for k, s in shapes.items() if k.startswith(prefix))


@pytest.mark.parametrize("size,quantized,alit_part,total,tensors", [
    ("small", True, 207_532_812, 262_048_399, 831 - 8 * 55),
    ("small", False, 207_483_660, 261_999_247, 830 - 8 * 55),
    ("base", True, 174_173_964, 228_689_551, 927 - 8 * 55),
    ("semilarge", True, 409_072_396, 463_587_983, 1023 - 8 * 55),
    ("tiny", True, 52_837_132, 107_352_719, 831 - 8 * 55),
])
def test_full_size_shapes_match_spec_counts(size, quantized, alit_part, total, tensors):
    s = R.official_alit_shapes(R.official_config(size, quantized))
    assert _count(s) - _count(s, "base_tokenizer.") == alit_part
    assert _count(s) == total
    assert len(s) == tensors


def test_full_size_component_counts_and_keys():
    s = R.official_alit_shapes(R.official_config("small"))
    assert _count(s, "encoder.transformer.") == 100_769_792
    assert _count(s, "decoder.") == 105_246_720
    assert _count(s, "patch_embed.") == 590_592
    assert _count(s, "base_tokenizer.vqgan.encoder.") == 23_775_104
    assert _count(s, "base_tokenizer.vqgan.decoder.") == 30_478_339
    assert sum(k.startswith("base_tokenizer.vqgan.encoder.") for k in s) == 79
    assert sum(k.startswith("base_tokenizer.vqgan.decoder.") for k in s) == 88
    assert s["timestep_embedding"] == (8, 32, 1024)
    assert s["decoder.latent_token_positional_embedding"] == (256, 1024)
    assert s["decoder.ffn.2.weight"] == (1024, 2048)
    assert s["quantize.embedding.weight"] == (4096, 12)
    assert s["patch_embed.weight"] == (768, 3, 16, 16)
    assert s["base_tokenizer.vqgan.encoder.conv_out.weight"] == (256, 512, 1, 1)
    assert "base_tokenizer.vqgan.encoder.conv_in.bias" not in s
    assert s["base_tokenizer.vqgan.decoder.up.3.block.0.nin_shortcut.weight"] == (256, 256, 1, 1)
    b = R.official_alit_shapes(R.official_config("base"))
    assert b["patch_embed.weight"] == (512, 3, 16, 16) and b["decoder.ffn.0.weight"] == (1536, 768)


def test_random_state_dict_tiny(cfg, sd):
    shapes = R.official_alit_shapes(cfg)
    assert set(sd) == set(shapes)
    for k, s in shapes.items():
        assert tuple(sd[k].shape) == tuple(s) and sd[k].dtype == torch.float32, k
    assert sd["patch_embed.weight"].shape == (32, 3, 16, 16)
    assert sd["encoder_positional_embedding"].shape == (17, 64)
    assert sd["timestep_embedding"].shape == (4, 8, 64)
    assert sd["decoder.latent_token_positional_embedding"].shape == (32, 64)
    assert sd["decoder.ffn.2.weight"].shape == (64, 128)
    assert sd["quantize.embedding.weight"].shape == (32, 8)
    assert sd["base_tokenizer.vqgan.quantize.embedding.weight"].shape == (64, 32)
    assert "base_tokenizer.vqgan.encoder.mid.block_1.conv1.weight" in sd
    assert "base_tokenizer.vqgan.decoder.mid.block_2.conv2.weight" in sd
    assert "base_tokenizer.vqgan.decoder.up.1.upsample.conv.bias" in sd
    assert not any(re.match(r"base_tokenizer\.vqgan\.decoder\.up\.0\.upsample", k) for k in sd)
    assert not any(k.startswith("gan_losses.") for k in sd)
    # non-trivial LayerNorm affine parameters
    assert not torch.allclose(sd["encoder_ln_recursive.weight"], torch.ones(64))
    # deterministic per seed
    again = R.random_official_state_dict(cfg, seed=0)
    other = R.random_official_state_dict(cfg, seed=1)
    assert all(torch.equal(sd[k], again[k]) for k in sd)
    assert not torch.equal(sd["latent_tokens"], other["latent_tokens"])


def test_continuous_and_gan_variants():
    c = R.tiny_config(quantized=False)
    sd_c = R.random_official_state_dict(c, seed=0)
    assert "quantize.embedding.weight" not in sd_c and "decoder.decoder_embed.weight" in sd_c
    sd_g = R.random_official_state_dict(R.tiny_config(), seed=0, with_gan_losses=True)
    gan = [k for k in sd_g if k.startswith("gan_losses.")]
    assert any(".perceptual_loss." in k for k in gan) and any(".discriminator.main." in k for k in gan)
    plain = R.random_official_state_dict(R.tiny_config(), seed=0)
    assert set(sd_g) - set(gan) == set(plain)


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


def _as_maskgit_keys(sd):
    """ALIT VQGAN keys -> the MaskGIT/TiTok layout used by maskgit_vqgan_ref."""
    out = {}
    for k, v in sd.items():
        if not k.startswith(R.VQ):
            continue
        k = k[len(R.VQ):].replace("mid.block_1", "mid.0").replace("mid.block_2", "mid.1")
        out[k.replace("upsample.conv", "upsample_conv")] = v
    return out


def test_vqgan_equals_maskgit_reference_after_renaming(small):
    cfg, sd = small
    x = _images(size=32)
    m = _as_maskgit_keys(sd)
    z = R.vqgan_encode(sd, cfg, x)
    assert z.shape == (B, 32, 2, 2)
    torch.testing.assert_close(z, M.encode_latents(m, x), atol=1e-5, rtol=1e-5)
    assert torch.equal(R.vqgan_quantize_ids(sd, z), M.quantize_ids(m, z))
    torch.testing.assert_close(R.vqgan_decode(sd, cfg, z), M.decode_codes(m, z), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------- rollout


def test_rollout_shapes_and_basic_invariants(cfg, sd, off_run):
    x = _images()
    assert off_run["z"].shape == (B, 32, 4, 4)
    assert off_run["gt"].shape == (B, 16) and off_run["gt"].dtype == torch.int64
    assert torch.equal(off_run["gt"], R.vqgan_quantize_ids(sd, off_run["z"]))
    assert len(off_run["iters"]) == 4
    e = torch.nn.functional.normalize(sd["quantize.embedding.weight"], dim=-1)
    for k, it in enumerate(off_run["iters"]):
        n = 8 * (k + 1)
        assert it["latent_tokens"].shape == (B, n, 64)
        assert it["latents"].shape == (B, n, 8)
        assert it["ids"].shape == (B, n) and it["ids"].dtype == torch.int64
        assert it["codes"].shape == (B, n, 8)
        torch.testing.assert_close(it["codes"], e[it["ids"]])
        assert it["logits"].shape == (B, 16, 64)
        assert it["p_gt"].shape == (B, 16)
        probs = torch.softmax(it["logits"], -1)
        torch.testing.assert_close(it["p_gt"], probs.gather(-1, off_run["gt"][..., None])[..., 0])
        assert it["halt"].shape == (B, 16) and it["halt"].dtype == torch.bool and not it["halt"].any()
        assert it["soft_codes"].shape == (B, 32, 4, 4)
        assert it["recon"].shape == x.shape
        for t in (it["latent_tokens"], it["logits"], it["recon"]):
            assert torch.isfinite(t).all()
        assert 0.05 < it["recon"].std() < 100
    # recurrence: earlier latent groups are re-processed, not frozen (no nesting property)
    assert not torch.allclose(off_run["iters"][1]["latent_tokens"][:, :8], off_run["iters"][0]["latent_tokens"])
    # different images give different codes
    assert not torch.equal(off_run["iters"][-1]["ids"][0], off_run["iters"][-1]["ids"][1])


def test_batch_elements_are_independent(cfg, sd, off_run):
    single = R.official_rollout(sd, cfg, _images()[1:], halting="off", reconstruct=False)
    for a, b in zip(off_run["iters"], single["iters"]):
        torch.testing.assert_close(b["latent_tokens"][0], a["latent_tokens"][1], atol=1e-5, rtol=1e-5)
        assert torch.equal(b["ids"][0], a["ids"][1])


def test_decode_codes_reproduces_rollout_recon(cfg, sd, off_run):
    for k in (0, 3):
        it = off_run["iters"][k]
        torch.testing.assert_close(R.official_decode_codes(sd, cfg, it["codes"]), it["recon"], atol=1e-5, rtol=1e-5)


def test_continuous_rollout_feeds_raw_latents():
    c = R.tiny_config(quantized=False, max_iters=2)
    s = R.random_official_state_dict(c, seed=3)
    out = R.official_rollout(s, c, _images(), reconstruct=False)
    for it in out["iters"]:
        assert it["ids"] is None
        assert torch.equal(it["codes"], it["latents"])
        assert not torch.allclose(it["codes"].norm(dim=-1), torch.ones(()))


# ---------------------------------------------------------------------------------------------------- halting


def test_apply_halting_replaces_only_the_chosen_image_slots(sd):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, 1 + 16 + 24, 64, generator=g)
    halt = torch.rand(B, 16, generator=g) > 0.5
    y = R._apply_halting(sd, x, halt)
    mask_value = sd["encoder_positional_embedding"][1:] + sd["encoder_mask_token"][0, 0]
    assert torch.equal(y[:, 0], x[:, 0]) and torch.equal(y[:, 17:], x[:, 17:])
    for b in range(B):
        for i in range(16):
            expected = mask_value[i] if halt[b, i] else x[b, 1 + i]
            assert torch.equal(y[b, 1 + i], expected)


def test_halting_friendly_weights_make_halting_fire(cfg, halt_sd):
    out = R.official_rollout(halt_sd, cfg, _images(), halting="threshold", threshold=0.55, reconstruct=False)
    assert (out["gt"] == 0).all()
    frac = torch.stack([it["halt"].float().mean() for it in out["iters"][:3]])
    assert (frac > 0.05).all() and (frac < 0.95).all()


def test_threshold_halting(cfg, halt_sd):
    x = _images()
    off = R.official_rollout(halt_sd, cfg, x, halting="off", reconstruct=False)
    thr = R.official_rollout(halt_sd, cfg, x, halting="threshold", threshold=0.55, reconstruct=False)
    for it in thr["iters"]:  # every iteration, the last one included
        assert torch.equal(it["halt"], it["p_gt"] >= 0.55)
    # halting acts after the decoder, so iteration 0 is untouched; later iterations see the masked slots
    for key in ("latent_tokens", "ids", "logits", "p_gt"):
        assert torch.equal(thr["iters"][0][key], off["iters"][0][key])
    assert thr["iters"][0]["halt"].any()
    assert not torch.allclose(thr["iters"][1]["latent_tokens"], off["iters"][1]["latent_tokens"])
    # a threshold above 1 never masks: identical to halting off
    never = R.official_rollout(halt_sd, cfg, x, halting="threshold", threshold=1.5, reconstruct=False)
    for a, b in zip(never["iters"], off["iters"]):
        assert not a["halt"].any()
        assert torch.equal(a["latent_tokens"], b["latent_tokens"]) and torch.equal(a["logits"], b["logits"])


def test_bernoulli_halting_follows_the_official_draws(cfg, halt_sd):
    x = _images()
    g = torch.Generator().manual_seed(1234)
    out = R.official_rollout(halt_sd, cfg, x, halting="bernoulli", threshold=0.55, generator=g, reconstruct=False)
    # replay: one B x N2 draw per iteration, in order, the LAST iteration included (spec §6 quirk)
    replay = torch.Generator().manual_seed(1234)
    for it in out["iters"]:
        s = torch.bernoulli(it["p_gt"], generator=replay)
        s[it["p_gt"] < 0.55] = 0
        assert torch.equal(it["halt"], s.bool())
        assert (it["p_gt"][it["halt"]] >= 0.55).all()
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=replay))  # same number of draws
    # stochastic: some slots above the threshold survive the coin, and halting really fires
    above = torch.stack([it["p_gt"] >= 0.55 for it in out["iters"]])
    halted = torch.stack([it["halt"] for it in out["iters"]])
    assert halted.any() and (above & ~halted).any()
    # same seed -> same result; iteration 0 equals the halting-off run
    again = R.official_rollout(halt_sd, cfg, x, halting="bernoulli", threshold=0.55,
                               generator=torch.Generator().manual_seed(1234), reconstruct=False)
    for a, b in zip(out["iters"], again["iters"]):
        assert torch.equal(a["halt"], b["halt"]) and torch.equal(a["latent_tokens"], b["latent_tokens"])
    off = R.official_rollout(halt_sd, cfg, x, halting="off", reconstruct=False)
    assert torch.equal(out["iters"][0]["logits"], off["iters"][0]["logits"])


def test_bad_halting_mode_rejected(cfg, sd):
    with pytest.raises(ValueError):
        R.official_rollout(sd, cfg, _images(1), halting="sometimes")


# ---------------------------------------------------------------------------------------------------- TSC (§8)


@pytest.mark.parametrize("l1,thr,expected", [
    ([0.5, 0.3, 0.2, 0.1], 0.25, 2),  # first under the threshold
    ([0.5, 0.1, 0.3, 0.05], 0.2, 1),  # first under, even though a later one is smaller
    ([0.5, 0.1, 0.3, 0.05], 0.01, 3),  # never under -> arg-min
    ([0.3, 0.1, 0.2, 0.4], 0.0, 1),  # arg-min is not the last iteration
    ([0.2, 0.1, 0.1, 0.3], 0.0, 1),  # ties: the first minimum (strict <)
    ([0.07, 0.05], 0.07, 1),  # strict < threshold
    ([0.01, 0.5], 1.0, 0),
])
def test_select_iteration(l1, thr, expected):
    assert R.select_iteration(l1, thr) == expected


def test_official_encode_batch_level_tsc(small):
    cfg, sd = small
    x = _images(size=32)
    run = R.official_rollout(sd, cfg, x, halting="off")
    l1 = [float((it["recon"] - x).abs().mean()) for it in run["iters"]]
    argmin = min(range(len(l1)), key=lambda k: (l1[k], k))
    k, emb = R.official_encode(sd, cfg, x, threshold=-1.0)  # never satisfied -> arg-min of the batch-mean L1
    assert k == argmin
    torch.testing.assert_close(emb, run["iters"][k]["latent_tokens"])
    assert emb.shape == (B, 8 * (k + 1), 64)
    k, emb = R.official_encode(sd, cfg, x, threshold=10.0)  # always satisfied -> first iteration
    assert k == 0 and emb.shape == (B, 8, 64)
    # a threshold between the values picks the first iteration below it (batch mean, not per image)
    thr = sorted(l1)[1] + 1e-6
    k, _ = R.official_encode(sd, cfg, x, threshold=thr)
    assert k == next(i for i, v in enumerate(l1) if v < thr)
