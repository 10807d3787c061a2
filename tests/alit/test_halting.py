"""ALIT's halting rules and base-tokenizer adapters, as pure parts (no rollout)."""

import pytest
import torch

import adatok
from adatok.errors import ConfigError
from adatok.tokenizers.alit.base_tokenizer import VAEBase, VQGANBase, to_grid
from adatok.tokenizers.alit.halting import HALTING_RULES, check_halting, halting_mask, halts, mask_slots


def test_threshold_rule_masks_exactly_the_confident_slots():
    p = torch.tensor([[0.1, 0.55, 0.9, 0.549]])
    assert halting_mask(p, "threshold", 0.55).tolist() == [[False, True, True, False]]
    assert not halting_mask(p, "off", 0.55).any()
    assert halts("threshold") and halts("bernoulli") and not halts("off")


def test_bernoulli_rule_is_seeded_and_never_masks_below_the_threshold():
    p = torch.rand(4, 64, generator=torch.Generator().manual_seed(0))
    a = halting_mask(p, "bernoulli", 0.5, torch.Generator().manual_seed(1))
    b = halting_mask(p, "bernoulli", 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not a[p < 0.5].any()
    assert halting_mask(torch.ones(2, 8), "bernoulli", 0.5).all()  # p = 1 always masks


def test_mask_slots_replaces_only_masked_rows():
    x, masked = torch.randn(2, 3, 4), torch.randn(3, 4)
    mask = torch.tensor([[True, False, False], [False, False, True]])
    out = mask_slots(x, mask, masked)
    assert torch.equal(out[0, 0], masked[0]) and torch.equal(out[1, 2], masked[2])
    assert torch.equal(out[~mask], x[~mask])


@pytest.mark.parametrize("rule, threshold, can_halt", [("sometimes", 0.5, True), ("threshold", 1.5, True),
                                                      ("threshold", 0.5, False), ("bernoulli", 0.5, False)])
def test_check_halting_rejects(rule, threshold, can_halt):
    with pytest.raises(ConfigError):
        check_halting(rule, threshold, can_halt)
    for ok in HALTING_RULES:
        check_halting(ok, 0.5)
    check_halting("off", 0.5, can_halt=False)


def test_adapters_are_chosen_by_the_base_type():
    vq = adatok.create_model("alit_test_tiny")
    vae = adatok.create_model("alit_vae_test_tiny")
    assert isinstance(vq.base_adapter, VQGANBase) and vq.base_adapter.has_codes
    assert isinstance(vae.base_adapter, VAEBase) and not vae.base_adapter.has_codes
    assert not any(k.startswith("base_adapter") for k in vq.state_dict())  # no parameters of its own


def test_vqgan_adapter_reads_logits_as_soft_codes_and_target_probabilities():
    m = adatok.create_model("alit_test_tiny").eval()
    base, g = m.base_adapter, m.config.grid_size
    n2, k = g * g, m.base.config.codebook_size
    targets = torch.randint(0, k, (2, n2))
    onehot = torch.nn.functional.one_hot(targets, k).float() * 50.0  # ~ certain of the targets
    grid, p_gt = base.read(onehot, targets)
    assert grid.shape == (2, m.base.config.z_channels, g, g)
    torch.testing.assert_close(grid, m.base.codes_from_ids(targets), atol=1e-5, rtol=0)
    assert bool((p_gt > 0.99).all())
    assert base.read(onehot)[1] is None


def test_vae_adapter_reads_predicted_latents_as_a_grid():
    m = adatok.create_model("alit_vae_test_tiny").eval()
    g, c = m.config.grid_size, m.config.token_channels
    pred = torch.randn(2, g * g, c)
    grid, p_gt = m.base_adapter.read(pred)
    assert p_gt is None and torch.equal(grid, to_grid(pred, g))
    assert torch.equal(grid[:, :, 0, 1], pred[:, 1])  # row-major
    with torch.no_grad():
        z, targets = m.base_adapter.encode(torch.rand(1, 3, 64, 64))
    assert targets is None and z.shape == (1, c, g, g)


def test_vae_iterations_name_predicted_latents_not_soft_codes():
    m = adatok.create_model("alit_vae_test_tiny").eval()
    with torch.no_grad():
        it = m.rollout(torch.rand(1, 3, 64, 64), iters=1, pixels=()).iterations[0]
    assert it.soft_codes is None and it.logits is None and it.p_gt is None
    assert torch.equal(it.base_input, to_grid(it.pred_latents, m.config.grid_size))
