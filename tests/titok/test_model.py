"""TiTok behaviour on the tiny presets: shapes, training forward/backward, input checks."""

import pytest
import torch

import adatok
from adatok.errors import ConfigError, InputError
from adatok.layers import Attention

TINY = ["titok_tiny", "titok_pixels_tiny", "titok_vae_tiny"]


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", TINY)
def test_encode_decode_shapes_and_ranges(name, images):
    torch.manual_seed(0)
    tok = adatok.create_model(name).eval()
    with torch.no_grad():
        t = tok.encode(images)
        recon = tok.decode(t)
    assert t.codes.shape == (2, 8, 8) and t.lengths.tolist() == [8, 8]
    assert recon.shape == images.shape and recon.min() >= 0 and recon.max() <= 1
    if name == "titok_vae_tiny":
        assert t.ids is None and t.latents.shape == (2, 8, 16)  # mean ‖ logvar
        with pytest.raises(InputError, match="continuous"):
            tok.decode_ids(torch.zeros(2, 8, dtype=torch.long))
    else:
        assert t.ids.dtype == torch.int64 and t.ids.shape == (2, 8)
        assert 0 <= t.ids.min() and t.ids.max() < 64
        with torch.no_grad():
            assert torch.equal(tok.decode_ids(t.ids), recon)
            # (B, 1, K) as the official code returns ids is accepted too
            assert torch.equal(tok.decode_ids(t.ids[:, None]), recon)


@pytest.mark.parametrize("name", TINY)
def test_training_forward_backward_reaches_every_trainable_part(name, images):
    torch.manual_seed(0)
    tok = adatok.create_model(name).train()
    out = tok(images)
    loss = (out.images - images).abs().mean() + out.quantizer_loss
    if out.logits is not None:
        assert out.logits.shape == (2, 64, 4, 4)  # B x pixel-codebook x grid x grid
        loss = loss + out.logits.logsumexp(1).mean()
    loss.backward()
    grads = {n: p.grad for n, p in tok.named_parameters()}
    for part in ("encoder.patch_embed.weight", "latent_tokens", "decoder.embed.weight"):
        assert grads[part] is not None and grads[part].abs().sum() > 0, part
    assert all(g is None or torch.isfinite(g).all() for g in grads.values())


def test_batch_equals_per_image_and_is_deterministic(images):
    torch.manual_seed(0)
    tok = adatok.create_model("titok_tiny").eval()
    with torch.no_grad():
        batch = tok.encode(images)
        single = [tok.encode(images[i : i + 1]) for i in range(2)]
        again = tok.encode(images)
    assert torch.equal(batch.ids, torch.cat([s.ids for s in single]))
    assert torch.equal(batch.ids, again.ids)


def test_sdpa_and_eager_attention_agree(images):
    torch.manual_seed(0)
    tok = adatok.create_model("titok_pixels_tiny").eval()
    with torch.no_grad():
        fast = tok.encode(images).latents
        Attention.use_sdpa = False
        try:
            eager = tok.encode(images).latents
        finally:
            Attention.use_sdpa = True
    torch.testing.assert_close(fast, eager, atol=1e-5, rtol=0)


def test_bf16_autocast_keeps_quantization_in_float32(images):
    torch.manual_seed(0)
    tok = adatok.create_model("titok_tiny").eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        t = tok.encode(images)
        recon = tok.decode(t)
    assert t.codes.dtype == torch.float32 and t.ids.dtype == torch.int64
    assert recon.shape == images.shape and torch.isfinite(recon).all()


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.rand(3, 64, 64), "unsqueeze"),
        (torch.rand(2, 1, 64, 64), "B x 3 x H x W"),
        (torch.rand(2, 3, 32, 32), "64x64"),
        ((torch.rand(2, 3, 64, 64) * 255).to(torch.uint8), "float"),
        (torch.rand(2, 3, 64, 64) * 255, "0..255"),
        (torch.rand(2, 3, 64, 64) * 2 - 1, r"\(images \+ 1\) / 2"),
        (torch.full((2, 3, 64, 64), float("nan")), "NaN"),
        ([[0.5]], "torch.Tensor"),
    ],
)
def test_bad_image_tensors_give_one_line_errors(bad, message):
    tok = adatok.create_model("titok_pixels_tiny").eval()
    with pytest.raises(InputError, match=message) as e:
        tok.encode(bad)
    assert "\n" not in str(e.value)


def test_bad_ids_give_one_line_errors():
    tok = adatok.create_model("titok_pixels_tiny").eval()
    with pytest.raises(InputError, match=r"\[0, 64\)"):
        tok.decode_ids(torch.full((1, 8), 64))
    with pytest.raises(InputError, match="8 tokens"):
        tok.decode_ids(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(InputError, match="integer"):
        tok.decode_ids(torch.zeros(1, 8))


def test_config_overrides_and_errors():
    cfg = adatok.get_config("titok_s128", **{"encoder.depth": 2, "num_tokens": 16, "pixel.base_channels": 32})
    assert cfg.encoder.depth == 2 and cfg.encoder.width == 512 and cfg.num_tokens == 16
    assert cfg.pixel.base_channels == 32
    with pytest.raises(ConfigError, match="unknown field"):
        adatok.get_config("titok_s128", num_tokenz=3)
    with pytest.raises(ConfigError, match="unknown model 'titok_xl'"):
        adatok.get_config("titok_xl")
    with pytest.raises(ConfigError, match="divisible"):
        adatok.get_config("titok_tiny", **{"encoder.heads": 5})
    with pytest.raises(ConfigError, match="quantizer"):
        adatok.get_config("titok_tiny", quantizer="fsq")


def test_official_presets_have_the_published_parameter_counts():
    # specs/titok.md §1.1, measured on the official classes
    expected = {"titok_l32": 641_054_735, "titok_b64": 204_814_095, "titok_s128": 83_674_639,
                "titok_bl64_vq8k": 390_016_148, "titok_bl128_vq8k": 390_179_988, "titok_sl256_vq8k": 330_260_884,
                "titok_ll32_vae_c16": 606_879_604, "titok_bl64_vae_c16": 389_418_100,
                "titok_bl128_vae_c16": 389_581_940}
    for name, count in expected.items():
        with torch.device("meta"):
            model = adatok.create_model(name)
        assert sum(p.numel() for p in model.parameters()) == count, name
