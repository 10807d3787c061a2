"""Every registered tokenizer implements the one interface (adatok.interface), and callers can
rely on it: facts, encode -> Tokens with lengths, decode, decode_ids, padding, errors."""

import pytest
import torch

import adatok
from adatok.errors import InputError
from adatok.interface import PAD_ID, AdaptiveTokenizer, Tokenizer
from adatok.registry import FAMILIES, get_preset

TOKENIZER_FAMILIES = {"titok", "alit", "maskgit_vqgan", "kl_vae", "prefix"}
# test presets only: "alit_tiny" is the paper's ALIT-Tiny (107M parameters, 256 px; 60-90 s here), which
# alit_test_tiny covers at the same structure
TINY = [n for n in adatok.list_models("tiny") if get_preset(n).family in TOKENIZER_FAMILIES and n != "alit_tiny"]


def test_every_tokenizer_family_implements_the_interface():
    families = {get_preset(n).family for n in adatok.list_models()}
    assert TOKENIZER_FAMILIES <= families
    for name in TOKENIZER_FAMILIES:
        assert issubclass(FAMILIES[name].model_cls, Tokenizer), name
    assert issubclass(FAMILIES["alit"].model_cls, AdaptiveTokenizer)
    assert not issubclass(FAMILIES["titok"].model_cls, AdaptiveTokenizer)


@pytest.mark.parametrize("name", TINY)
def test_tiny_preset_through_the_interface(name):
    torch.manual_seed(0)
    tok = adatok.create_model(name).eval()
    assert isinstance(tok, Tokenizer)
    assert tok.pad_id == PAD_ID == -1
    assert tok.discrete == (tok.codebook_size is not None)
    assert tok.num_tokens == tok.max_tokens
    images = torch.rand(2, 3, tok.image_size, tok.image_size)
    with torch.no_grad():
        tokens = tok.encode(images)
        assert tokens.lengths.shape == (2,) and tokens.lengths.dtype == torch.long
        assert int(tokens.lengths.max()) <= tok.max_tokens
        recon = tok.decode(tokens)
        assert recon.shape == images.shape and 0 <= float(recon.min()) and float(recon.max()) <= 1
        if tok.discrete:
            assert tokens.ids is not None and int(tokens.ids.max()) < tok.codebook_size
            again = tok.decode_ids(tokens.ids, tokens.lengths)
            assert torch.allclose(again, recon, atol=1e-5)
        else:
            assert tokens.ids is None
            with pytest.raises(InputError, match="continuous"):
                tok.decode_ids(torch.zeros(2, tok.max_tokens, dtype=torch.long))
        if tok.adaptive:
            lengths = tok.allowed_lengths
            assert list(lengths) == sorted(lengths) and lengths[-1] == tok.max_tokens
            sweep = tok.sweep(images)
            assert sweep.lengths == lengths and sweep.images.shape == (len(lengths), *images.shape)
            sel = tok.select(images, "budget", threshold=lengths[0])
            assert sel.tokens.lengths.tolist() == [lengths[0]] * 2
            if tok.discrete:
                assert bool((sel.tokens.ids[:, lengths[0]:] == tok.pad_id).all())
            # the sweep's first length is the same reconstruction as selecting that length
            assert torch.allclose(sweep.images[0], sel.images, atol=1e-5)


@pytest.mark.parametrize("name", ["titok_tiny", "titok_pixels_tiny", "maskgit_vqgan_tiny"])
def test_fixed_length_tokenizer_refuses_short_lengths(name):
    tok = adatok.create_model(name).eval()
    assert tok.discrete
    ids = torch.zeros(2, tok.max_tokens, dtype=torch.long)
    with pytest.raises(InputError, match="fixed-length"):
        tok.decode_ids(ids, torch.tensor([tok.max_tokens, 1]))


def test_continuous_titok_decode_ids_is_a_one_line_error():
    tok = adatok.create_model("titok_vae_tiny").eval()
    with pytest.raises(InputError, match="continuous"):
        tok.decode_ids(torch.zeros(1, tok.max_tokens, dtype=torch.long))


def test_length_aware_generator_is_refused_for_a_continuous_alit():
    from adatok.errors import ConfigError
    from adatok.generators import generate_images

    gen = adatok.create_model("maskgit_length_tiny", num_tokens=32, lengths=(8, 16, 24, 32)).eval()
    alit = adatok.create_model("alit_continuous_test_tiny").eval()
    assert not alit.discrete
    with pytest.raises(ConfigError, match="continuous tokens"):
        generate_images(gen, alit, n=1)
