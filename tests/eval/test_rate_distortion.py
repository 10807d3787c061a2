"""Rate–distortion points: the bits arithmetic, fixed and adaptive tokenizers, and selections,
checked against the models decoded one length at a time."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import adatok
from adatok.errors import InputError
from adatok.eval.metrics import psnr, ssim
from adatok.eval.rate_distortion import (default_lambdas, default_psnr_targets, rate_distortion, round8,
                                         token_bits)
from adatok.tokenizers.prefix.lagrangian import select_lagrangian

SAMPLES = Path(adatok.__file__).parent / "data" / "samples"


def _images(size, n=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    # smooth images of different complexity: a few low-frequency waves plus a little noise
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = []
    for i in range(n):
        f = 1 + 2 * i
        base = torch.stack([torch.sin(f * 3.1 * xx + c) * torch.cos(f * 2.3 * yy) for c in range(3)])
        out.append((0.5 + 0.4 * base + 0.05 * torch.rand(3, size, size, generator=g)).clamp(0, 1))
    return torch.stack(out)


@pytest.fixture(scope="module")
def prefix():
    torch.manual_seed(0)
    return adatok.create_model("prefix_tiny_step2").eval()


@pytest.fixture(scope="module")
def alit():
    return adatok.load("alit_default")  # shipped weights (the tiny test preset is slower on CPU)


def _samples(size):
    from adatok.data.images import load_images

    return load_images(sorted(SAMPLES.glob("*.jpg")), size)[0]


def test_bits_are_tokens_times_log2_codebook_plus_the_length_side_cost():
    assert token_bits([16, 32], 1024).tolist() == [160.0, 320.0]
    assert token_bits([16, 32], 1024, num_allowed=4).tolist() == [162.0, 322.0]
    assert token_bits([8], 4096, 3)[0] == pytest.approx(8 * 12 + math.log2(3))
    with pytest.raises(InputError, match="codebook_size"):
        token_bits([1], 0)
    with pytest.raises(InputError, match="num_allowed"):
        token_bits([1], 16, 0)


@torch.no_grad()
def test_a_fixed_tokenizer_gives_one_point_equal_to_its_8_bit_round_trip():
    model = adatok.load("titok_default")
    x = _images(model.image_size, 3)
    sweep = rate_distortion(model, x, method="tiny", batch_size=2, lpips=lambda a, b: (a - b).abs().mean((1, 2, 3)))
    (p,) = sweep.points
    recon = round8(model.reconstruct(x))
    assert p.kind == "fixed" and p.method == "tiny" and p.tokens == model.max_tokens
    assert p.bits == model.max_tokens * math.log2(model.codebook_size)
    assert p.bpp == p.bits / model.image_size ** 2
    assert p.psnr == pytest.approx(float(psnr(recon, x).mean()), abs=1e-4)
    assert p.ssim == pytest.approx(float(ssim(recon, x).mean()), abs=1e-4)
    assert p.lpips == pytest.approx(float((recon - x).abs().mean()), abs=1e-5)
    assert sweep.curves.shape == (1, 3) and p.lengths == [model.max_tokens] * 3
    with pytest.raises(InputError, match="fixed-length"):
        rate_distortion(model, x, lengths=[4])


@pytest.mark.parametrize("name", ["prefix", "alit"])
@torch.no_grad()
def test_the_sweep_equals_decoding_each_length_separately(name, request):
    model = request.getfixturevalue(name)
    x = _images(model.image_size, 3)
    sweep = rate_distortion(model, x, psnr_targets=(), lambdas=(), batch_size=2)  # two batches
    assert sweep.lengths == model.allowed_lengths and len(sweep.points) == len(model.allowed_lengths)
    for t, n in enumerate(model.allowed_lengths):
        if name == "prefix":
            recon = model.decode(model.encode(x, lengths=torch.full((len(x),), n)))
        else:
            recon = model.select(x, "budget", n).images
        want = psnr(round8(recon), x)
        assert np.allclose(sweep.curves[t], want.numpy(), atol=1e-3)
        p = sweep.points[t]
        assert p.kind == "length" and p.tokens == n and p.bits == n * math.log2(model.codebook_size)
        assert p.psnr == pytest.approx(float(want.mean()), abs=1e-3)
    assert sweep.preview.shape == (3, model.image_size, model.image_size, 3) and sweep.preview.dtype == np.uint8
    assert sweep.preview_recon.shape == (len(model.allowed_lengths), *sweep.preview.shape)
    none = rate_distortion(model, x, psnr_targets=(), lambdas=(), preview=0)  # no grid: same points
    assert none.preview_recon.shape[1] == 0 and np.allclose(none.curves, sweep.curves)


@torch.no_grad()
def test_psnr_selection_points_follow_select_and_pay_log2_of_the_lengths(alit):
    x = _samples(alit.image_size)[:3]
    target = 22.0  # astronaut, cat, coffee: one never meets it (its best length), two at 32 tokens
    sweep = rate_distortion(alit, x, psnr_targets=(target,))
    (sel,) = sweep.selections
    assert len(set(sel.lengths)) > 1
    want = alit.select(x, "psnr", target, generator=torch.Generator().manual_seed(0)).tokens.lengths
    assert sel.lengths == want.tolist() and sel.kind == "selection" and "psnr target" in sel.method
    T = len(alit.allowed_lengths)
    assert sel.bits == pytest.approx(float(want.float().mean()) * math.log2(alit.codebook_size) + math.log2(T))
    rows = [alit.allowed_lengths.index(n) for n in sel.lengths]
    # the selected images are the sweep's images at the chosen lengths
    assert np.allclose(sel.psnr_per_image, sweep.curves[rows, np.arange(len(x))], atol=1e-3)
    with pytest.raises(InputError, match="prefix tokenizer"):
        rate_distortion(alit, x[:1], psnr_targets=(), lambdas=(0.1,))


def test_lagrangian_points_of_a_prefix_tokenizer(prefix):
    x = _images(prefix.image_size, 5)
    sweep = rate_distortion(prefix, x, psnr_targets=(), lambdas=(0.0, 1e6))
    best, cheapest = sweep.selections
    assert cheapest.lengths == [prefix.allowed_lengths[0]] * 5
    assert best.lengths == select_lagrangian(prefix, x, 0.0).tokens.lengths.tolist()
    assert best.label == "lambda=0 dB/token" and best.method.endswith("lagrangian")
    # defaults: a PSNR target per length but the longest, a price per rising segment
    default = rate_distortion(prefix, x)
    kinds = [p.method.rsplit(" ", 1)[-1] for p in default.selections]
    assert kinds.count("target") == len(default_psnr_targets(default.curves))
    assert kinds.count("lagrangian") == len(default_lambdas(default.curves, default.lengths))


def test_default_targets_and_prices_come_from_the_mean_curve():
    curves = np.array([[10.0, 12.0], [14.0, 16.0], [15.0, 17.0], [15.0, 16.0]])  # 4 lengths x 2 images
    assert default_psnr_targets(curves) == (11.0, 15.0, 16.0)
    # slopes of (11, 15, 16, 15.5) over lengths 8, 16, 32, 64: 0.5, 1/16, negative (dropped)
    assert default_lambdas(curves, (8, 16, 32, 64)) == (0.0625, 0.5)


def test_bad_inputs_are_one_line_errors(prefix):
    with pytest.raises(InputError, match="model reads"):
        rate_distortion(prefix, torch.rand(2, 3, 8, 8))
    with pytest.raises(InputError, match="non-empty"):
        rate_distortion(prefix, torch.rand(0, 3, prefix.image_size, prefix.image_size))
    with pytest.raises(InputError, match="not among"):
        rate_distortion(prefix, _images(prefix.image_size, 2), lengths=[3])


# ----------------------------------------------------------------------------- rFID / IS per point


@pytest.fixture(scope="module")
def inception_net(tmp_path_factory):
    """The random-weight FID Inception of tests/eval/test_fid.py, in float32 (3x faster on the CPU
    than the float64 default; rFID is compared against the same network, so the dtype is free)."""
    from adatok.eval.inception import load_inception

    from .test_fid import write_random_inception

    path = tmp_path_factory.mktemp("inception") / "inception.pth"
    write_random_inception(path)
    return load_inception(path, dtype=torch.float32)


@pytest.fixture
def fast_frechet(monkeypatch):
    """``frechet_distance`` as its exact low-rank eigen form (scipy's 2048 x 2048 sqrtm is ~15 s)."""
    from adatok.eval import fid

    from .test_cli_metrics import eigen_frechet

    monkeypatch.setattr(fid, "frechet_distance", eigen_frechet)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the shared 2-core machine stalls a second one's convolutions
    yield
    torch.set_num_threads(before)


def _pool(net, u8):
    with torch.inference_mode():
        return net(u8)[0]


def _u8(x):
    from adatok.data.images import to_uint8

    return to_uint8(x)


@torch.no_grad()
def test_rfid_of_each_point_equals_a_direct_fid_against_the_inputs(prefix, inception_net, fast_frechet):
    """2 images, one per batch: each point's rFID is the FID between the inputs' and its 8-bit
    reconstructions' Inception features, computed directly; the inputs' statistics come from one
    pass over the images, shared by every point (the network sees each point's images once)."""
    from adatok.eval.rd_inception import inception_reference

    from .test_cli_metrics import exact_fid, inception_score

    x = _images(prefix.image_size, 2)
    ref = inception_reference(inception_net, x, batch_size=1)
    seen = []
    hook = inception_net.register_forward_hook(lambda m, args, out: seen.append(len(args[0])))
    try:
        sweep = rate_distortion(prefix, x, lengths=(2, 8), psnr_targets=(), lambdas=(0.0,), batch_size=1,
                                inception=ref)
    finally:
        hook.remove()
    assert seen == [1] * 3 * 2  # 3 points x 2 images, one at a time: the reference was not recomputed
    assert sweep.reference is ref
    real = _pool(inception_net, _u8(x))
    recons = [prefix.decode(prefix.encode(x, lengths=torch.full((2,), n))) for n in (2, 8)]
    recons.append(select_lagrangian(prefix, x, 0.0).images)
    rfids = []
    for p, recon in zip(sweep.points, recons):
        with torch.inference_mode():
            pool, logits = inception_net(_u8(round8(recon)))
        want = exact_fid(real, pool)
        assert want > 1e-4
        assert p.rfid == pytest.approx(want, rel=1e-5, abs=1e-6), p.label
        assert p.inception_score == pytest.approx(inception_score(logits), abs=1e-6)
        assert p.row()["rfid"] == p.rfid and p.row()["inception_score"] == p.inception_score
        rfids.append(p.rfid)
    assert len(set(rfids)) == 3  # the points differ
    # a network instead of a reference: the same numbers (the reference built inside)
    again = rate_distortion(prefix, x, lengths=(2,), psnr_targets=(), lambdas=(), inception=inception_net)
    assert again.points[0].rfid == pytest.approx(sweep.points[0].rfid, rel=1e-6)
    assert rate_distortion(prefix, x, lengths=(2,), psnr_targets=(), lambdas=()).points[0].rfid is None


@torch.no_grad()
def test_baseline_rfid_shares_the_reference_and_identical_images_give_zero(inception_net, fast_frechet):
    from adatok.eval.baselines import _decode, baseline_points, encode_jpeg
    from adatok.eval.rd_inception import PointInception, inception_reference

    from .test_cli_metrics import exact_fid, inception_score

    x = _images(32, 3)
    ref = inception_reference(inception_net, x)
    (jpeg,) = baseline_points(x, (), jpeg_qualities=(5,), webp_qualities=(), inception=ref, batch_size=2)
    u8 = _u8(x).permute(0, 2, 3, 1).numpy()  # B x H x W x 3
    decoded = torch.from_numpy(np.stack([_decode(encode_jpeg(im, 5)) for im in u8])).permute(0, 3, 1, 2)
    real = _pool(inception_net, _u8(x))
    with torch.inference_mode():
        pool, logits = inception_net(decoded.contiguous())
    want = exact_fid(real, pool)
    assert want > 1e-4 and jpeg.rfid == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert jpeg.inception_score == pytest.approx(inception_score(logits), abs=1e-6)
    # the reference against itself: rFID ~0 and the inputs' IS
    same = PointInception(ref)
    same.add(x[:2])
    same.add(torch.from_numpy(u8[2:]).permute(0, 3, 1, 2))  # uint8 goes in as is
    rfid, score = same.result()
    assert abs(rfid) < 1e-6 and score == pytest.approx(ref.inception_score, rel=1e-9)
    with pytest.raises(InputError, match="other images"):
        baseline_points(x.flip(0), (), jpeg_qualities=(5,), webp_qualities=(), inception=ref)
    with pytest.raises(InputError, match="at least 2 images"):
        inception_reference(inception_net, x[:1])
