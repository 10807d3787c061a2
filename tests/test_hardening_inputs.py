"""encode / select on an empty batch and on float64 (or float16) images: an empty result and a
converted batch, not an ``amin()`` or conv dtype error (issue 17)."""

import pytest
import torch

import adatok

PRESETS = ["titok_tiny", "titok_vae_tiny", "alit_test_tiny", "alit_vae_test_tiny", "maskgit_vqgan_tiny", "kl_vae_tiny"]


@pytest.fixture(scope="module", params=PRESETS)
def model(request):
    torch.manual_seed(0)
    return adatok.create_model(request.param).eval()


def test_empty_batch_gives_empty_tokens(model):
    s = model.image_size
    with torch.no_grad():
        tokens = model.encode(torch.rand(0, 3, s, s))
        assert tokens.lengths.shape == (0,) and tokens.codes.shape[0] == 0
        if tokens.ids is not None:
            assert tokens.ids.shape[0] == 0 and tokens.ids.dtype == torch.int64
        assert model.decode(tokens).shape == (0, 3, s, s)
        if hasattr(model, "select"):
            sel = model.select(torch.rand(0, 3, s, s), "l1", 0.1)
            assert sel.tokens.lengths.shape == (0,) and sel.images.shape == (0, 3, s, s)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_other_float_types_are_converted_to_the_weights(model, dtype):
    s = model.image_size
    x = torch.rand(2, 3, s, s)
    with torch.no_grad():
        want = model.encode(x)
        got = model.encode(x.to(dtype))
        assert got.codes.dtype == want.codes.dtype
        if dtype == torch.float64:  # float64 -> float32 is exact for values that came from float32
            assert torch.equal(got.codes, want.codes)
        if hasattr(model, "select"):
            assert model.select(x.to(dtype), "l1", 0.1).tokens.lengths.shape == (2,)


def test_a_float64_model_keeps_float64():
    model = adatok.create_model("maskgit_vqgan_tiny").double().eval()
    with torch.no_grad():
        tokens = model.encode(torch.rand(1, 3, model.image_size, model.image_size, dtype=torch.float64))
    assert tokens.latents.dtype == torch.float64
