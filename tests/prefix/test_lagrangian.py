import pytest
import torch

import adatok
from adatok.errors import InputError
from adatok.tokenizers.prefix.lagrangian import per_image_psnr, select_lagrangian


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return adatok.create_model("prefix_tiny").eval()


def _images(model, n=6):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, model.image_size, model.image_size, generator=g)


def test_each_image_takes_the_argmax_of_psnr_minus_lam_tokens(model):
    x = _images(model)
    lengths = model.allowed_lengths
    curves = torch.stack([per_image_psnr(model.decode_codes(model.encode(x).codes, torch.full((len(x),), n)).clamp(0, 1), x)
                          for n in lengths])  # T x B, decoded one length at a time
    for lam in (0.0, 0.05, 0.5):
        sel = select_lagrangian(model, x, lam)
        want = torch.tensor(lengths)[(curves - lam * torch.tensor(lengths, dtype=torch.float)[:, None]).argmax(0)]
        assert torch.equal(sel.tokens.lengths, want)
        assert torch.allclose(-sel.errors.T, curves - lam * torch.tensor(lengths, dtype=torch.float)[:, None], atol=1e-4)
        # the images are the decodes of the chosen prefixes, and the ids decode to them
        assert torch.allclose(sel.images, model.decode_ids(sel.tokens.ids, sel.tokens.lengths), atol=1e-5)
        assert bool((sel.tokens.ids[torch.arange(model.max_tokens)[None] >= want[:, None]] == adatok.interface.PAD_ID).all())


def test_a_steep_price_gives_the_shortest_length_and_zero_the_best_psnr(model):
    x = _images(model)
    assert bool((select_lagrangian(model, x, 1e6).tokens.lengths == model.allowed_lengths[0]).all())
    sel = select_lagrangian(model, x, 0.0, return_images=False)
    assert sel.images is None and sel.iterations_run == 1
    # lam = 0: each image's length is the one with its highest PSNR
    assert torch.allclose((-sel.errors).max(dim=1).values, (-sel.errors).gather(1, torch.tensor(
        [model.allowed_lengths.index(int(n)) for n in sel.tokens.lengths])[:, None])[:, 0])


def test_bad_arguments_are_clear(model):
    x = _images(model, 2)
    with pytest.raises(InputError, match="lam"):
        select_lagrangian(model, x, -1.0)
    with pytest.raises(InputError, match="needs a prefix tokenizer"):
        select_lagrangian(adatok.create_model("titok_tiny"), x, 0.1)
