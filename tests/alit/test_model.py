"""ALIT on tiny presets: rollout shapes, halting rules, per-image selection with early exit,
decoding of the returned ids, bad input."""

import pytest
import torch

import adatok
from adatok.errors import ConfigError, InputError
from adatok.tokenizers.alit import PAD_ID
from adatok.tokenizers.selection import ReconstructionThreshold


def make(seed=0, **overrides):
    torch.manual_seed(seed)
    return adatok.create_model("alit_test_tiny", **overrides).eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    smooth = torch.rand(3, 3, 1, 1, generator=g).expand(3, 3, 64, 64)  # flat colours
    busy = torch.rand(3, 3, 64, 64, generator=g)
    return torch.cat([smooth, busy]).contiguous()


# p_gt of a random tiny model is ~1/64: a threshold there makes about half the slots halt
HALT = {"halting": "threshold", "halting_threshold": 0.0157}


def test_rollout_shapes_and_lengths(images):
    m = make()
    cfg = m.config
    with torch.no_grad():
        r = m.rollout(images)
    assert r.gt.shape == (6, cfg.num_image_tokens) and r.base_latents.shape == (6, cfg.base.z_channels, 4, 4)
    assert [it.num_tokens for it in r.iterations] == [8, 16, 24, 32] == cfg.token_counts
    for it in r.iterations:
        n = it.num_tokens
        assert it.ids.shape == (6, n) and it.codes.shape == (6, n, cfg.token_dim)
        assert it.latent_tokens.shape == (6, n, cfg.width)
        assert it.logits.shape == (6, 16, cfg.base.codebook_size)
        assert it.images.shape == (6, 3, 64, 64)
        # quantized codes are exactly the normalised codebook rows of the ids
        assert torch.equal(it.codes, m.quantizer.lookup(it.ids))
    # the representations are not nested: re-encoding changes the first tokens' latents
    first, second = r.iterations[0], r.iterations[1]
    assert not torch.allclose(first.latent_tokens, second.latent_tokens[:, :8])


def test_continuous_latents_have_no_ids(images):
    torch.manual_seed(0)
    m = adatok.create_model("alit_continuous_test_tiny").eval()
    with torch.no_grad():
        sel = m.select(images, "budget", 16)
        r = m.rollout(images, pixels=())
    assert sel.tokens.ids is None and sel.tokens.lengths.tolist() == [16] * 6
    assert r.iterations[0].ids is None and torch.equal(r.iterations[0].codes, r.iterations[0].latents)
    with pytest.raises(InputError, match="continuous"):
        m.decode_ids(torch.zeros(1, 8, dtype=torch.long))
    with torch.no_grad():  # decode of the padded codes = the selection's reconstruction
        torch.testing.assert_close(m.decode(sel.tokens), sel.images, atol=1e-4, rtol=0)


def test_halting_rules(images):
    with torch.no_grad():
        off = make(halting="off").rollout(images, pixels=())
        thr = make(**HALT).rollout(images, pixels=())
        g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        bern = make(halting="bernoulli", halting_threshold=0.0157)
        b1 = bern.rollout(images, pixels=(), generator=g1)
        b2 = bern.rollout(images, pixels=(), generator=g2)
    assert all(it.halted is None for it in off.iterations)  # no halting step at all
    it = thr.iterations[0]
    assert torch.equal(it.halted, it.p_gt >= 0.0157) and 0 < it.halted.float().mean() < 1
    # first iteration is identical (halting acts on later ones); halting then changes the result
    torch.testing.assert_close(thr.iterations[0].latents, off.iterations[0].latents)
    assert not torch.allclose(thr.iterations[1].latents, off.iterations[1].latents)
    # Bernoulli: only confident slots can halt, fewer than the deterministic rule; seeded = reproducible
    for a, b, t in zip(b1.iterations, b2.iterations, thr.iterations):
        assert torch.equal(a.halted, b.halted) and torch.equal(a.ids, b.ids)
        assert not (a.halted & (a.p_gt < 0.0157)).any()
    assert b1.iterations[0].halted.sum() < thr.iterations[0].halted.sum()


def _choose_from_full_rollout(rollout, images, threshold):
    """The paper's rule, per image, from a full rollout: first iteration with L1 < threshold,
    else the arg-min-L1 iteration."""
    l1 = torch.stack([(it.images - images).abs().mean(dim=(1, 2, 3)) for it in rollout.iterations], 1)
    met = l1 < threshold
    first = torch.where(met.any(1), met.float().argmax(1), l1.argmin(1))
    return first, l1


def test_per_image_selection_equals_choice_from_full_rollout(images):
    m = make(**HALT)
    with torch.no_grad():
        full = m.rollout(images)
        l1_first = torch.stack([(it.images - images).abs().mean(dim=(1, 2, 3)) for it in full.iterations], 1)[:, 0]
        threshold = float(l1_first.median())  # some images stop at once, the others go on
        chosen, l1 = _choose_from_full_rollout(full, images, threshold)
        sel = m.select(images, "l1", threshold)
    assert 0 < int((chosen == 0).sum()) < 6
    counts = torch.tensor(m.config.token_counts)
    assert torch.equal(sel.tokens.lengths, counts[chosen])
    for b in range(6):
        it = full.iterations[int(chosen[b])]
        n = it.num_tokens
        assert torch.equal(sel.tokens.ids[b, :n], it.ids[b])  # early exit changes no code
        assert (sel.tokens.ids[b, n:] == PAD_ID).all()
        torch.testing.assert_close(sel.images[b], it.images[b].clamp(0, 1), atol=1e-4, rtol=0)
        ran = int(chosen[b]) + 1 if bool((l1[b] < threshold).any()) else 4
        torch.testing.assert_close(sel.errors[b, :ran], l1[b, :ran], atol=1e-4, rtol=0)
        assert sel.errors[b, ran:].isnan().all()  # the image left the batch after its choice


def test_selection_is_batch_independent(images):
    m = make(**HALT)
    with torch.no_grad():
        batch = m.select(images, "confidence", 0.0157)
        singles = [m.select(images[i : i + 1], "confidence", 0.0157) for i in range(6)]
    for i, s in enumerate(singles):
        assert torch.equal(batch.tokens.lengths[i : i + 1], s.tokens.lengths)
        assert torch.equal(batch.tokens.ids[i : i + 1], s.tokens.ids)
        torch.testing.assert_close(batch.images[i : i + 1], s.images, atol=1e-4, rtol=0)


def test_token_criteria_pixel_decode_once_for_the_whole_batch(images):
    m = make(**HALT)
    decoded_batches = []
    pixels = m.base_pixels
    m.base_pixels = lambda soft: decoded_batches.append(soft.shape[0]) or pixels(soft)
    with torch.no_grad():
        sel = m.select(images, "confidence", 0.0157)
    assert len(sel.tokens.lengths.unique()) > 1  # images left the loop at different iterations...
    assert decoded_batches == [6]  # ...and were still pixel-decoded together, once


def test_early_exit_stops_the_loop(images):
    m = make()
    with torch.no_grad():
        everyone_at_once = m.select(images, "l1", 10.0)  # met at the first iteration
        capped = m.select(images, "l1", 1e-6, max_tokens=16)  # never met: capped at 16
        budget = m.select(images, "budget", 20)
    assert everyone_at_once.iterations_run == 1 and everyone_at_once.tokens.lengths.tolist() == [8] * 6
    assert capped.iterations_run == 2 and capped.tokens.lengths.max() <= 16
    assert budget.iterations_run == 3 and budget.tokens.lengths.tolist() == [24] * 6


def test_decode_ids_equals_the_reconstruction_of_select(images):
    m = make(**HALT)
    with torch.no_grad():
        l1_first = (m.rollout(images, pixels=[0]).iterations[0].images - images).abs().mean(dim=(1, 2, 3))
        sel = m.select(images, "l1", float(l1_first.median()))
        assert len(sel.tokens.lengths.unique()) > 1
        decoded = m.decode_ids(sel.tokens.ids, sel.tokens.lengths)
        torch.testing.assert_close(decoded, sel.images, atol=1e-4, rtol=0)
        # the token-space criterion decodes once at the end: same identity
        conf = m.select(images, "confidence", 0.0157)
        torch.testing.assert_close(m.decode_ids(conf.tokens.ids, conf.tokens.lengths), conf.images, atol=1e-4, rtol=0)
        # encode() = the ids of select() without the images
        tokens = m.encode(images, "l1", float(l1_first.median()))
        assert torch.equal(tokens.ids, sel.tokens.ids) and torch.equal(tokens.lengths, sel.tokens.lengths)
        # short rows can be passed unpadded when all lengths are equal
        eight = m.encode(images, "budget", 8)
        torch.testing.assert_close(m.decode_ids(eight.ids[:, :8]), m.decode(eight), atol=1e-4, rtol=0)


def test_criterion_object_and_psnr(images):
    m = make()
    with torch.no_grad():
        a = m.select(images, ReconstructionThreshold(metric="psnr", threshold=60.0))
    # PSNR 60 dB is never reached: every image keeps its best (highest-PSNR) iteration
    best = (-a.errors).argmax(1)
    assert torch.equal(a.tokens.lengths, torch.tensor(m.config.token_counts)[best])


def test_bad_input():
    m = make()
    with pytest.raises(ConfigError, match="unknown token-selection criterion"):
        m.select(torch.rand(1, 3, 64, 64), "lpips", 0.1)
    with pytest.raises(ConfigError, match="positive"):
        m.select(torch.rand(1, 3, 64, 64), "l1", -1.0)
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        m.select(torch.rand(1, 3, 64, 64), "confidence", 2.0)
    with pytest.raises(InputError, match="64x64"):
        m.select(torch.rand(1, 3, 32, 32), "l1", 0.1)
    ids = torch.zeros(2, 32, dtype=torch.long)
    with pytest.raises(InputError, match="one of"):
        m.decode_ids(ids, torch.tensor([8, 12]))
    with pytest.raises(InputError, match="at most"):
        m.decode_ids(torch.zeros(1, 40, dtype=torch.long))
    ids[0, 3] = 64
    with pytest.raises(InputError, match="out of range"):
        m.decode_ids(ids, torch.tensor([8, 8]))
    ids[0, 3], ids[0, 20] = 0, 99  # beyond the length: padding, ignored
    assert m.decode_ids(ids, torch.tensor([8, 8])).shape == (2, 3, 64, 64)
    with pytest.raises(ConfigError, match="halting"):
        make(halting="sometimes")
    with pytest.raises(ConfigError, match="z_channels"):
        make(width=32)


def test_save_load_round_trip(tmp_path, images):
    m = make(**HALT)
    path = adatok.save(m, tmp_path / "alit")
    back = adatok.load(path)
    assert back.config == m.config
    with torch.no_grad():
        a, b = m.encode(images, "confidence", 0.0157), back.encode(images, "confidence", 0.0157)
    assert torch.equal(a.ids, b.ids) and torch.equal(a.lengths, b.lengths)


def test_calibrated_confidence_reproduces_pixel_choices(images):
    m = make(**HALT)
    with torch.no_grad():
        r = m.rollout(images)
        l1 = torch.stack([(it.images - images).abs().mean(dim=(1, 2, 3)) for it in r.iterations], 1)
        target = float(l1.median())
        threshold, agreement = m.calibrate_confidence(images, target)
        conf = torch.stack([it.p_gt.mean(1) for it in r.iterations], 1)
    assert 0.5 <= agreement <= 1.0
    assert agreement == pytest.approx(((conf >= threshold) == (l1 < target)).float().mean().item())
