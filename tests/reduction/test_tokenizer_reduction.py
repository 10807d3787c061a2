"""ToMe and ImagePiece inside a TiTok encoder (apply(tok.encoder, "tome" | "imagepiece", ...)): off =
unchanged bit for bit, remove restores, patch tokens reduced (sizes add up), latent tokens never
reduced, batch = each image alone."""

import pytest
import torch

import adatok
import adatok.reduction as R
from adatok.errors import ConfigError


def tiny():
    torch.manual_seed(0)
    return adatok.create_model("titok_tiny").eval()  # 4 x 4 = 16 patches, 8 latents


def images(n=3, size=64):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, size, size, generator=g)
    x[0] = 0.3  # a flat image next to noise
    return x


def test_off_is_unchanged_and_remove_restores():
    tok = tiny()
    x = images()
    with torch.no_grad():
        ref = tok.encode(x)
        R.apply(tok.encoder, "tome", r=0)
        off = tok.encode(x)
        R.remove(tok.encoder)
        back = tok.encode(x)
    assert torch.equal(off.ids, ref.ids) and torch.equal(off.latents, ref.latents)
    assert torch.equal(back.latents, ref.latents) and "forward" not in tok.encoder.transformer.__dict__
    assert not R.is_patched(tok.encoder)


def test_patch_tokens_merge_latents_stay():
    tok = tiny()
    x = images()
    R.apply(tok.encoder, "tome", r=4)
    with torch.no_grad():
        out = tok.encode(x)
        pixels = tok.decode(out)
    info = R.info(tok.encoder)
    n0 = tok.encoder.pos_embed.shape[0]  # cls + patches
    assert info.tokens == [n0 - 4, n0 - 4]  # cls + patches after each block; the last merges nothing (feeds nothing)
    torch.testing.assert_close(info.size.sum(1), torch.full((3,), float(n0)))
    assert (info.size[:, 0] == 1).all()  # [CLS] never merged
    assert out.latents.shape == (3, tok.config.num_tokens, out.latents.shape[-1])  # all K latents come out
    assert pixels.shape == x.shape
    R.remove(tok.encoder)
    with torch.no_grad():
        ref = tok.encode(x)
    assert not torch.equal(out.latents, ref.latents)  # the reduction did something


def test_batch_equals_each_image_alone():
    tok = tiny()
    x = images()
    R.apply(tok.encoder, "tome", r=4)
    with torch.no_grad():
        batch = tok.encode(x).latents
        for i in range(x.shape[0]):
            torch.testing.assert_close(tok.encode(x[i:i + 1]).latents, batch[i:i + 1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("settings", [dict(keep_rate=1.0, merge_ratio=0.0),
                                      dict(threshold=1.0, merge_threshold=1.0)])
def test_imagepiece_off_is_unchanged_bit_for_bit(settings):
    tok = tiny()
    x = images()
    with torch.no_grad():
        ref = tok.encode(x)
        R.apply(tok.encoder, "imagepiece", **settings)
        off = tok.encode(x)
    assert torch.equal(off.ids, ref.ids) and torch.equal(off.latents, ref.latents)
    n0 = tok.encoder.pos_embed.shape[0]
    assert R.info(tok.encoder).tokens == [n0, n0]


def test_imagepiece_encodes_with_fewer_patch_tokens():
    tok = tiny()
    x = images()
    R.apply(tok.encoder, "imagepiece", blocks=(0,))  # 16 patches: 4 candidates, 1 merge, keep 0.8 -> 12
    with torch.no_grad():
        out = tok.encode(x)
        pixels = tok.decode(out)
    info = R.info(tok.encoder)
    n0 = tok.encoder.pos_embed.shape[0]  # cls + patches = 17
    assert info.tokens == R.token_counts(tok.encoder) == [13, 13]  # the last block runs on what block 0 left
    torch.testing.assert_close(info.size.sum(1) + info.dropped, torch.full((3,), float(n0)))
    assert (info.size == 2).sum(1).tolist() == [1, 1, 1] and (info.size[:, 0] == 1).all()  # one merge, [CLS] alone
    assert out.latents.shape == (3, tok.config.num_tokens, out.latents.shape[-1]) and pixels.shape == x.shape
    with torch.no_grad():
        for i in range(x.shape[0]):  # batch = each image alone
            torch.testing.assert_close(tok.encode(x[i:i + 1]).latents, out.latents[i:i + 1], rtol=0, atol=1e-5)
    R.remove(tok.encoder)
    with torch.no_grad():
        assert not torch.equal(tok.encode(x).latents, out.latents)  # the reduction did something


def test_threshold_tome_in_the_encoder_batch_equals_each_image_alone():
    """Per-image counts inside the encoder: an image that merged is written back even when the padded
    width (the longest image) did not change."""
    tok = tiny()
    x = images()
    R.apply(tok.encoder, "tome", r=6, threshold=0.9, min_tokens=3)
    with torch.no_grad():
        batch = tok.encode(x).latents
        lengths = R.info(tok.encoder).lengths.tolist()
        assert len(set(lengths)) > 1 and max(lengths) == tok.encoder.pos_embed.shape[0]  # one image merged nothing
        for i in range(x.shape[0]):
            torch.testing.assert_close(tok.encode(x[i:i + 1]).latents, batch[i:i + 1], rtol=0, atol=1e-5)
            assert R.info(tok.encoder).lengths.tolist() == [lengths[i]]


def test_imagepiece_scores_patches_by_the_latents_attention():
    """The importance inside the encoder is the latents' attention: the patch they read least goes first."""
    from adatok.reduction import tokenizer_patch
    from adatok.reduction.base import BlockNeeds

    tok = tiny()
    attn, k = tok.encoder.transformer.blocks[0].attn, tok.config.num_tokens
    x = torch.randn(2, 17 + k, attn.qkv.in_features)
    with torch.no_grad():
        _, _, importance = tokenizer_patch._attention(attn, x, None, BlockNeeds(cls_attn=True), k)
        q, kk, _ = tokenizer_patch._qkv(attn, x)
        probs = ((q[:, :, -k:] @ kk.transpose(-1, -2)) * q.shape[-1] ** -0.5).softmax(-1)
    torch.testing.assert_close(importance, probs.mean(dim=(1, 2))[:, 1:17])
    assert importance.shape == (2, 16)


def test_refusals():
    tok = tiny()
    with pytest.raises(ConfigError):
        R.apply(tok.encoder, "evit", keep_rate=0.7)
    with pytest.raises(ConfigError):
        R.apply(tok.encoder, "imagepiece", lcb=True)
    R.apply(tok.encoder, "tome", r=2)
    with pytest.raises(ConfigError):
        R.apply(tok.encoder, "tome", r=2)
    with pytest.raises(ConfigError):
        R.apply(tiny().encoder, "tome", r=40)  # more merges than 65 tokens allow over 2 blocks
