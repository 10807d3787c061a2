"""Prefix TiTok (tail-token drop): any prefix decodes, a sweep is one batched decode, per-image
selection by bisection equals the exhaustive rule on a full sweep, the learned length predictor."""

from dataclasses import dataclass

import pytest
import torch

import adatok
from adatok.errors import ConfigError, InputError
from adatok.interface import PAD_ID, AdaptiveTokenizer
from adatok.tokenizers.prefix import PrefixTiTok
from adatok.tokenizers.prefix.model import criterion_errors, exhaustive_choice, fit_length_predictor, met_matrix
from adatok.tokenizers.selection import Criterion, get_criterion


def tiny(name="prefix_tiny", **overrides):
    # random init decodes to about 0; an output bias of 0.5 keeps reconstructions inside (0, 1), so
    # that comparisons of clamped images mean something
    torch.manual_seed(0)
    model = adatok.create_model(name, **{"titok.init": "fan_in", **overrides}).eval()  # fan_in: tokens matter
    params = dict(model.titok.named_parameters())
    params["decoder.head.conv_out.bias"].data.fill_(0.5)
    return model


@pytest.fixture(scope="module")
def tok():
    return tiny()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.rand(6, 3, 64, 64, generator=g)


def count_decodes(model):
    calls = []
    handle = model.titok.decoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    return calls, handle


def test_it_is_an_adaptive_tokenizer(tok):
    assert isinstance(tok, AdaptiveTokenizer) and tok.adaptive
    assert tok.allowed_lengths == tuple(range(1, 9)) and tok.max_tokens == 8 and tok.codebook_size == 64
    assert adatok.create_model("prefix_tiny_step2").allowed_lengths == (2, 4, 6, 8)
    assert adatok.get_config("titok_prefix_default").allowed_lengths == (8, 16, 24, 32, 40, 48, 56, 64)


def test_prefix_decode_equals_masking_the_tail_by_hand(tok, images):
    lengths = torch.tensor([1, 3, 8, 5, 2, 8])
    with torch.no_grad():
        full = tok.encode(images)
        tokens = tok.encode(images, lengths=lengths)
        got = tok.decode(tokens)
        by_ids = tok.decode_ids(tokens.ids, lengths)
        for i, n in enumerate(lengths.tolist()):
            codes = full.codes[i : i + 1].clone()
            codes[:, n:] = tok.mask_token  # the learned mask token in every dropped slot
            want = tok.titok.decode(codes)
            assert torch.allclose(got[i : i + 1], want, atol=1e-5)
            assert torch.allclose(by_ids[i : i + 1], want, atol=1e-5)
        # the whole length is plain TiTok decoding; the padding is PAD_ID beyond each length
        assert torch.allclose(got[2], tok.titok.decode(full.codes[2:3])[0], atol=1e-5)
        assert tokens.ids[0, 1:].eq(PAD_ID).all() and tokens.ids[3, :5].ge(0).all()
        # what lies beyond a row's length is never read
        noisy = tokens.ids.clone()
        noisy[noisy == PAD_ID] = 7
        assert torch.allclose(tok.decode_ids(noisy, lengths), by_ids, atol=1e-6)
        # ... and different prefixes do decode differently
        assert (got[0] - tok.decode_ids(full.ids[:1], torch.tensor([8]))[0]).abs().max() > 1e-3
        # a shorter id matrix with its lengths decodes the same
        assert torch.allclose(tok.decode_ids(full.ids[:, :3], torch.full((6,), 3)),
                              tok.decode_ids(full.ids, torch.full((6,), 3)), atol=1e-6)


def test_bad_lengths_and_ids_are_one_line_errors(tok):
    ids = torch.zeros(2, 8, dtype=torch.long)
    with pytest.raises(InputError, match="lengths"):
        tok.decode_ids(ids, torch.tensor([0, 8]))
    with pytest.raises(InputError, match="at most"):
        tok.decode_ids(ids[:, :4], torch.tensor([5, 4]))
    with pytest.raises(InputError, match="out of range"):
        tok.decode_ids(torch.full((1, 8), 64), torch.tensor([8]))
    with pytest.raises(InputError, match="allowed length"):
        adatok.create_model("prefix_tiny_step2").decode_ids(ids[:, :3])
    with pytest.raises(InputError, match="confidence"):
        tok.select(torch.rand(1, 3, 64, 64), "confidence", 0.5)


def test_sweep_is_one_batched_decode_of_every_length(tok, images):
    calls, handle = count_decodes(tok)
    try:
        sweep = tok.sweep(images)
    finally:
        handle.remove()
    assert calls == [8 * 6]  # one decoder call on the codes repeated for the 8 lengths
    assert sweep.lengths == tok.allowed_lengths and sweep.images.shape == (8, 6, 3, 64, 64)
    with torch.no_grad():
        for t, n in enumerate(sweep.lengths):
            want = tok.decode(tok.encode(images, lengths=torch.full((6,), n)))
            assert torch.allclose(sweep.images[t], want, atol=1e-5)
    part = tok.sweep(images[:2], lengths=(2, 5))
    assert torch.allclose(part.images[1], sweep.images[4, :2], atol=1e-5)


@dataclass(frozen=True)
class PerImageNeed(Criterion):
    """Monotone by construction and different per image: met once the length reaches the image's
    mean brightness x 8 (the error is how many tokens are still missing)."""

    needs_pixels = True

    def error(self, stats):
        need = (stats.images.mean(dim=(1, 2, 3)) * 16 - 3).clamp(1, 8).ceil()
        assert stats.recon is not None and stats.recon.shape == stats.images.shape
        return need - stats.num_tokens

    def met(self, error, num_tokens):
        return error <= 0


def graded_images(n=8, seed=3):
    g = torch.Generator().manual_seed(seed)
    levels = torch.linspace(0.2, 0.75, n)
    return (levels[:, None, None, None] + 0.1 * torch.rand(n, 3, 64, 64, generator=g)).clamp(0, 1)


def test_selection_equals_the_exhaustive_choice_on_a_full_sweep_monotone(tok):
    images = graded_images()
    crit = PerImageNeed()
    calls, handle = count_decodes(tok)
    try:
        sel = tok.select(images, crit)
    finally:
        handle.remove()
    need = (images.mean(dim=(1, 2, 3)) * 16 - 3).clamp(1, 8).ceil().long()
    assert len(set(need.tolist())) >= 5  # a real mix of lengths
    assert sel.tokens.lengths.tolist() == need.tolist()
    # bisection over 8 lengths: at most ceil(log2(9)) = 4 search decodes, in batches that shrink
    assert sel.iterations_run == len(calls) <= 4 and calls[0] == 8 and calls == sorted(calls, reverse=True)
    # the exhaustive rule on a full sweep gives the same lengths
    sweep = tok.sweep(images)
    errors = torch.stack([crit.error(_stats(n, images, sweep.images[t])) for t, n in enumerate(sweep.lengths)], 1)
    met = torch.stack([crit.met(errors[:, t], n) for t, n in enumerate(sweep.lengths)], 1)
    assert (torch.tensor(tok.allowed_lengths)[exhaustive_choice(errors, met)] == sel.tokens.lengths).all()
    # the chosen reconstructions are those of the sweep at the chosen lengths; NaN where not evaluated
    idx = sel.tokens.lengths - 1
    assert torch.allclose(sel.images, sweep.images[idx, torch.arange(8)], atol=1e-5)
    evaluated = ~sel.errors.isnan()
    assert evaluated.sum(1).max() <= 4 and (~evaluated).any()
    assert torch.allclose(sel.errors[evaluated], errors[evaluated])


def _stats(n, images, recon):
    from adatok.tokenizers.selection import IterationStats

    return IterationStats(n, images, images.new_zeros(images.shape[0], 0), recon)


def test_real_pixel_criterion_agrees_with_the_sweep_where_monotone(tok, images):
    # a pixel criterion on a real decode: wherever an image's met pattern is monotone, the
    # bisection picks the exhaustive rule's length; everywhere its errors are the sweep's
    errs = criterion_errors(tok, images, "l1")
    thr = float(errs.median())
    sel = tok.select(images, "l1", thr)
    met = met_matrix(errs, tok.allowed_lengths, "l1", thr)
    monotone = (met.int().diff(dim=1) >= 0).all(dim=1)
    want = torch.tensor(tok.allowed_lengths)[exhaustive_choice(errs, met)]
    assert (sel.tokens.lengths[monotone] == want[monotone]).all()
    evaluated = ~sel.errors.isnan()
    assert torch.allclose(sel.errors[evaluated], errs[evaluated], atol=1e-5)


@dataclass(frozen=True)
class Pattern(Criterion):
    """Met exactly at the given lengths (non-monotone patterns)."""

    lengths: tuple = ()
    needs_pixels = True

    def error(self, stats):
        return torch.full((stats.images.shape[0],), 0.0 if stats.num_tokens in self.lengths else 1.0)

    def met(self, error, num_tokens):
        return error == 0


def test_non_monotone_criterion_documented_difference(tok, images):
    # met at 2 and from 5 on: the exhaustive rule takes 2; the bisection probes 5 (met), 3, 4 (not)
    # and returns 5 — it never looks left of a met length it found (the select docstring)
    sel = tok.select(images[:2], Pattern(lengths=(2, 5, 6, 7, 8)))
    assert sel.tokens.lengths.tolist() == [5, 5]
    assert sel.errors[0].isnan().tolist() == [True, True, False, False, False, True, True, True]
    # never met: the fallback is the lowest error among the lengths evaluated, not the whole sweep
    sel = tok.select(images[:2], "l1", 1e-9)
    evaluated = ~sel.errors.isnan()
    assert evaluated[0].nonzero()[:, 0].tolist() == [4, 6, 7]  # lengths 5, 7, 8: all "not met", go right
    assert evaluated[1].nonzero()[:, 0].tolist() == [4, 6, 7]
    best = sel.errors.nan_to_num(nan=float("inf")).argmin(1) + 1
    assert sel.tokens.lengths.tolist() == best.tolist()


def test_early_exit_changes_no_result(tok, images):
    # images that are done leave the batch: selecting each image alone gives the same answer, with
    # or without reconstructions, and the reconstructions are decode(tokens)
    thr = float(criterion_errors(tok, images, "psnr").median())
    images = images[:4]
    sel = tok.select(images, "psnr", -thr)
    assert len(set(sel.tokens.lengths.tolist())) > 1
    alone = torch.cat([tok.select(images[i : i + 1], "psnr", -thr).tokens.lengths for i in range(4)])
    assert alone.tolist() == sel.tokens.lengths.tolist()
    assert tok.select(images, "psnr", -thr, return_images=False).tokens.lengths.tolist() == alone.tolist()
    with torch.no_grad():
        assert torch.allclose(tok.decode(sel.tokens), sel.images, atol=1e-5)
    # a cap bounds every length, and a budget gives exactly that length
    assert int(tok.select(images, "psnr", 99.0, max_tokens=4).tokens.lengths.max()) <= 4
    assert tok.select(images, "budget", 3).tokens.lengths.tolist() == [3] * 4


def test_training_forward_drops_a_tail_per_sample(tok):
    torch.manual_seed(0)
    lengths = tok.draw_lengths(512, "cpu")
    assert set(lengths.tolist()) == set(range(1, 9))  # per sample, every allowed length
    counts = torch.bincount(lengths, minlength=9)[1:].float()
    assert counts.min() > 0.5 * counts.mean()  # uniform
    inv = adatok.create_model("prefix_tiny", train_lengths="inverse").draw_lengths(4096, "cpu").float().mean()
    assert float(inv) < 0.8 * float(lengths.float().mean())  # biased to short prefixes
    full = adatok.create_model("prefix_tiny", train_lengths="full").draw_lengths(64, "cpu")
    assert full.eq(8).all()
    x = torch.rand(4, 3, 64, 64)
    out = tok.train()(x, lengths=torch.tensor([1, 8, 3, 8]))
    tok.eval()
    with torch.no_grad():
        want = tok.decode(tok.encode(x, lengths=torch.tensor([1, 8, 3, 8])), clamp=False)
    assert torch.allclose(out.images, want, atol=1e-4) and out.quantizer_loss.requires_grad
    # the gradient reaches the mask token
    out.images.mean().backward()
    assert tok.mask_token.grad is not None and tok.mask_token.grad.abs().sum() > 0
    tok.zero_grad()


def test_save_and_load_round_trip(tok, images, tmp_path):
    path = adatok.save(tok, tmp_path / "p")
    again = adatok.load(path)
    assert isinstance(again, PrefixTiTok) and again.config == tok.config
    with torch.no_grad():
        assert torch.allclose(again.sweep(images[:2]).images, tok.sweep(images[:2]).images)


def test_learned_length_predictor(tmp_path):
    tok = tiny()
    g = torch.Generator().manual_seed(5)
    train = torch.cat([graded_images(24, seed=7), torch.rand(24, 3, 64, 64, generator=g)])
    with pytest.raises(InputError, match="untrained"):
        tok.predict_lengths(train, 10.0)
    # a random model's errors hardly depend on the length or the image: use an error curve that does,
    # per image (PSNR rising 1.25 dB a token, 20 dB at the length the image needs), with a need the
    # encoder output carries (the rank of its first feature): the head must read it, per threshold
    with torch.no_grad():
        feature = tok.encode(train).latents[:, 0, 0]
    need = 1 + 7 * feature.argsort().argsort().float() / (len(train) - 1)
    errs = -(20 + 1.25 * (torch.arange(1, 9)[None] - need[:, None]))
    thresholds = [18.0, 20.0, 22.0]
    with pytest.raises(ConfigError, match="predictor is for"):
        fit_length_predictor(tok, train, "l1", thresholds, steps=1)
    report = fit_length_predictor(tok, train, "psnr", thresholds, steps=20, lr=1e-2, batch=64, errors=errs)
    assert 0 <= report["agreement"] <= 1 and report["loss"] > 0
    pred = tok.predict_lengths(train, thresholds[1])
    assert pred.shape == (48,) and 0 <= int(pred.min()) and int(pred.max()) < 8
    calls, handle = count_decodes(tok)
    try:
        sel = tok.select(train[:8], "psnr", thresholds[1], predictor=True)
    finally:
        handle.remove()
    assert len(calls) == 1 and sel.iterations_run == 1  # only the decode of the chosen lengths
    assert (sel.tokens.lengths - 1 == pred[:8]).all()
    assert (~sel.errors.isnan()).sum(1).tolist() == [1] * 8
    with pytest.raises(InputError, match="trained for"):
        tok.select(train[:2], "l1", 0.1, predictor=True)
    # the trained head is part of the model's state
    path = adatok.save(tok, tmp_path / "with_predictor")
    assert (adatok.load(path).predict_lengths(train[:8], thresholds[1]) == pred[:8]).all()
