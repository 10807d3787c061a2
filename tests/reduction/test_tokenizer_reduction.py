"""ToMe inside a TiTok encoder (apply(tok.encoder, "tome", ...)): off = unchanged, remove restores,
patch tokens merged (sizes add up), latent tokens never merged, batch = each image alone."""

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
    assert torch.equal(off.ids, ref.ids)
    torch.testing.assert_close(off.latents, ref.latents, rtol=0, atol=1e-6)
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


def test_refusals():
    tok = tiny()
    with pytest.raises(ConfigError):
        R.apply(tok.encoder, "evit", keep_rate=0.7)
    R.apply(tok.encoder, "tome", r=2)
    with pytest.raises(ConfigError):
        R.apply(tok.encoder, "tome", r=2)
    with pytest.raises(ConfigError):
        R.apply(tiny().encoder, "tome", r=40)  # more merges than 65 tokens allow over 2 blocks
