"""VQ and KL quantizers as pure modules."""

import torch

from adatok.quantizers import DiagonalGaussian, VectorQuantizer, nearest_code


def test_nearest_code_is_the_brute_force_argmin_first_on_ties():
    g = torch.Generator().manual_seed(0)
    z, book = torch.randn(50, 6, generator=g), torch.randn(40, 6, generator=g)
    brute = torch.cdist(z.double(), book.double()).argmin(1)
    assert torch.equal(nearest_code(z, book), brute)
    tied = torch.cat([book[:1], book[:1]])
    assert nearest_code(book[:1], tied).item() == 0


def test_straight_through_gradients_and_losses():
    vq = VectorQuantizer(16, 4, beta=0.25, l2_norm=False)
    z = torch.randn(2, 3, 4, requires_grad=True)
    out = vq(z)
    out.codes.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))  # identity gradient to the encoder
    zq = vq.embedding.weight[out.ids]
    expected = 1.25 * (zq - z).pow(2).mean()
    assert torch.allclose(out.loss, expected)


def test_dead_codes_are_restarted_from_batch_vectors_only_in_training():
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 3, l2_norm=False, restart_dead_codes=True)
    with torch.no_grad():
        vq.embedding.weight.copy_(torch.arange(8.0)[:, None].expand(8, 3) * 10)  # code 0 at the origin
    z = 0.1 * torch.randn(4, 16, 3)  # every vector is nearest to code 0
    vq.eval()
    before = vq.embedding.weight.clone()
    vq(z)
    assert torch.equal(vq.embedding.weight, before)
    vq.train()
    for _ in range(500):  # usage of codes 1..7 decays below 1% of a uniform share
        vq(z)
    ids = vq(z).ids
    assert ids.unique().numel() > 1  # re-seeded codes now sit among the encoder outputs
    restarted = vq.embedding.weight[1:]
    assert restarted.abs().max() < 1.0  # taken from z (|z| ~ 0.1), not the old far-away codes


def test_kl_posterior_mean_sample_and_loss():
    kl = DiagonalGaussian(2, kl_weight=1.0)
    z = torch.tensor([[[0.0, 0.0, 0.0, 0.0]]])  # mean 0, logvar 0 -> KL 0
    out = kl(z)
    assert out.ids is None and torch.equal(out.codes, torch.zeros(1, 1, 2)) and out.loss.item() == 0
    z = torch.tensor([[[1.0, 2.0, 100.0, -100.0]]])  # logvar clamped to [-30, 20]
    mean, logvar = kl.split(z)
    assert logvar.tolist() == [[[20.0, -30.0]]]
    g = torch.Generator().manual_seed(0)
    s1 = kl(torch.zeros(1, 4, 4), sample=True, generator=g).codes
    assert s1.std() > 0.5
