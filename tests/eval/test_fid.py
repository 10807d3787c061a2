"""rFID / IS: parity with torch-fidelity (the Inception TiTok's evaluator runs) and pytorch-fid on a
random-weight Inception file this test builds; Fréchet distance against float64 references;
streaming statistics against np.cov; the reduction across ranks; the missing-file message."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from adatok.errors import AdatokError, CheckpointError
from adatok.eval.fid import FeatureStats, InceptionMetrics, ISStats, frechet_distance, load_stats, save_stats
from adatok.eval.inception import INCEPTION_FILE, FIDInception, load_inception, resize_tf1_bilinear, to_uint8


def write_random_inception(path) -> None:
    """A random FID Inception in the layout of pt_inception-2015-12-05-6726825d.pth (no
    num_batches_tracked, as the released file). He-normal convolutions keep the features
    image-dependent through 94 layers; a large fc spreads the class probabilities so IS > 1."""
    g = torch.Generator().manual_seed(0)
    sd = FIDInception(dtype=torch.float32).state_dict()
    for k, v in sd.items():
        if k.endswith("conv.weight"):
            v.copy_(torch.randn(v.shape, generator=g) * math.sqrt(2.0 / v[0].numel()))
        elif k.endswith("bn.weight"):
            v.copy_(1 + 0.1 * torch.randn(v.shape, generator=g))
        elif k.endswith("bn.bias"):
            v.copy_(0.1 * torch.randn(v.shape, generator=g))
        elif k.endswith("running_mean"):
            v.zero_()
        elif k.endswith("running_var"):
            v.fill_(1.0)
        elif k == "fc.weight":
            v.copy_(torch.randn(v.shape, generator=g) * 40.0)
    torch.save({k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}, path)


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / INCEPTION_FILE
    write_random_inception(path)
    return path


def _images(n, seed, size=40):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, 1, 1, generator=g) * torch.linspace(0, 1, size).view(1, 1, 1, size)
    noise = torch.rand(n, 1, size, size, generator=g) * torch.rand(n, 1, 1, 1, generator=g)
    return (base * 0.7 + noise * 0.3).clamp(0, 1)


def test_inception_features_equal_torch_fidelity(inception_file):
    """Pool features and bias-free logits of our Inception vs torch-fidelity's extractor (the one
    TiTok's evaluator runs), same weight file; ours in uneven batches (1 + 2), torch-fidelity's in
    one (batch invariance). Three images: the 299 px Inception costs ~1 s per image on the CPU."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    images = to_uint8(_images(3, 0))
    ours = load_inception(inception_file, dtype=torch.float32)
    pool, logits = (torch.cat(t) for t in zip(ours(images[:1]), ours(images[1:])))
    ref = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                      feature_extractor_weights_path=str(inception_file),
                                      feature_extractor_internal_dtype="float32")
    with torch.no_grad():
        r = dict(zip(["2048", "logits_unbiased"], ref(images)))
    assert pool.shape == (3, 2048) and logits.shape == (3, 1008)
    assert (pool - r["2048"]).abs().max() <= 1e-4 * r["2048"].abs().max()
    assert (logits - r["logits_unbiased"]).abs().max() <= 1e-4 * r["logits_unbiased"].abs().max()
    assert pool.std(0).mean() > 1e-3 * pool.abs().mean()  # image-dependent features


def test_fid_and_is_equal_torch_fidelity_on_the_same_features():
    """FID / IS from our streaming statistics vs torch-fidelity's metric functions (TiTok's
    formulas) on the same features: within 1e-3 relative (in fact 1e-9)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_features_to_metric

    g = torch.Generator().manual_seed(0)
    real = torch.randn(300, 64, generator=g, dtype=torch.float64)
    fake = real[:, torch.randperm(64, generator=g)] * 0.8 + 0.3 * torch.randn(300, 64, generator=g, dtype=torch.float64)
    ours_real, ours_fake = FeatureStats(64), FeatureStats(64)
    for a, b in zip(real.split(70), fake.split(70)):
        ours_real.update(a), ours_fake.update(b)
    fid = frechet_distance(*ours_real.mean_cov(), *ours_fake.mean_cov())
    ref = fid_statistics_to_metric(fid_features_to_statistics(real), fid_features_to_statistics(fake), False)
    assert fid > 1 and fid == pytest.approx(ref["frechet_inception_distance"], rel=1e-6)
    logits = fake[:, :40] * 3
    scores = ISStats(40)
    for chunk in logits.split(100):
        scores.update(chunk)
    is_ref = isc_features_to_metric(logits, splits=1, shuffle=False)["inception_score_mean"]
    assert scores.score() > 1.5 and scores.score() == pytest.approx(is_ref, rel=1e-6)


def test_inception_metrics_end_to_end_on_a_tiny_inception(monkeypatch):
    """InceptionMetrics (update(real, fake) -> rfid / is) over uneven batches equals the metrics of
    the features computed in one batch; a cheap stand-in network keeps it fast."""
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("w", torch.randn(3 * 4 * 4, 8, generator=torch.Generator().manual_seed(0)))

        def forward(self, x):
            f = torch.nn.functional.adaptive_avg_pool2d(x.double() / 255, 4).flatten(1) @ self.w.double()
            return f, 3 * f[:, :5]

    net = Tiny()
    real, fake = _images(12, 0), _images(12, 1)
    m = InceptionMetrics(net, dim=8, classes=5)
    m.update(real[:5], fake[:5])
    m.update(real[5:], fake[5:])
    out = m.result()
    pr, lr = net(to_uint8(real))
    pf, lf = net(to_uint8(fake))
    s1, s2 = FeatureStats(8), FeatureStats(8)
    s1.update(pr), s2.update(pf)
    scores = ISStats(5)
    scores.update(lf)
    assert out["images"] == 12
    assert out["rfid"] == pytest.approx(frechet_distance(*s1.mean_cov(), *s2.mean_cov()), rel=1e-6)
    assert out["is"] == pytest.approx(scores.score(), rel=1e-9)


def test_default_is_float64_and_missing_file_is_one_line(tmp_path, monkeypatch):
    assert FIDInception().fc.weight.dtype == torch.float64
    monkeypatch.setenv("ADATOK_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(AdatokError) as e:
        load_inception()
    msg = str(e.value)
    assert "\n" not in msg and INCEPTION_FILE in msg and str(tmp_path) in msg and "--inception" in msg
    bad = tmp_path / "bad.pth"
    torch.save({"fc.weight": torch.zeros(3)}, bad)
    with pytest.raises(CheckpointError, match="missing"):
        load_inception(bad)


def test_resize_equals_tensorflow1_bilinear_of_torch_fidelity():
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    x = torch.rand(2, 3, 37, 64, dtype=torch.float64) * 255
    ref = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    # torch-fidelity computes the source coordinates in float32: 2e-4 of 255 apart at most
    assert (resize_tf1_bilinear(x, 299) - ref).abs().max() < 1e-3
    assert resize_tf1_bilinear(x, 299)[..., 0, 0].equal(x[..., 0, 0])


def test_frechet_distance_equals_float64_references():
    from pytorch_fid.fid_score import calculate_frechet_distance
    from scipy import linalg

    g = np.random.default_rng(0)
    a, b = g.normal(size=(200, 32)), g.normal(size=(200, 32)) * 1.3 + 0.2
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    ours = frechet_distance(mu1, s1, mu2, s2)
    # independent: tr((S1^1/2 S2 S1^1/2)^1/2) via symmetric eigendecompositions
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(w)) @ v.T
    inner = np.linalg.eigvalsh(r1 @ s2 @ r1)
    exact = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(inner).sum())
    assert ours == pytest.approx(exact, rel=1e-9)
    assert ours == pytest.approx(calculate_frechet_distance(mu1, s1, mu2, s2), rel=1e-9)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-8)
    assert linalg is not None


def test_streaming_statistics_equal_np_cov_and_is_formula(tmp_path):
    from torch_fidelity.metric_isc import isc_features_to_metric

    g = torch.Generator().manual_seed(0)
    f = torch.randn(50, 16, generator=g, dtype=torch.float64) * 3 + 1
    stats = FeatureStats(16)
    for chunk in f.split([1, 20, 29]):
        stats.update(chunk.float())
    mu, sigma = stats.mean_cov()
    f32 = f.float().double().numpy()
    assert np.allclose(mu, f32.mean(0), atol=1e-12) and np.allclose(sigma, np.cov(f32, rowvar=False), atol=1e-10)
    saved = save_stats(tmp_path / "s.npz", stats)
    mu2, sigma2 = load_stats(saved)
    assert np.array_equal(mu2, mu) and np.array_equal(sigma2, sigma)

    logits = torch.randn(30, 10, generator=g) * 3
    scores = ISStats(10)
    for chunk in logits.split([7, 23]):
        scores.update(chunk)
    ref = isc_features_to_metric(logits, splits=1, shuffle=False)["inception_score_mean"]
    assert scores.score() == pytest.approx(ref, rel=1e-9)


def _rank(rank, world, port, features, queue):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    stats, scores = FeatureStats(features.shape[1]), ISStats(features.shape[1])
    stats.update(features[rank::world])
    scores.update(features[rank::world])
    stats.reduce(), scores.reduce()
    mu, sigma = stats.mean_cov()
    queue.put((rank, stats.n, mu, sigma, scores.score()))
    dist.destroy_process_group()


def test_statistics_reduce_across_ranks():
    """Two gloo processes each see half the features; after reduce() both hold the statistics of
    all. Run in a fresh interpreter: forking a pytest process whose torch thread pools are running
    can hang."""
    import subprocess
    import sys

    src = str(Path(__file__).resolve().parents[2] / "src")
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "ranks agree" in done.stdout, done.stdout + done.stderr


def _two_ranks():
    import socket

    f = torch.randn(9, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, 2, port, f, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    single, scores = FeatureStats(6), ISStats(6)
    single.update(f)
    scores.update(f)
    mu, sigma = single.mean_cov()
    for _, n, mu_r, sigma_r, is_r in results:
        assert n == 9 and np.allclose(mu_r, mu) and np.allclose(sigma_r, sigma)
        assert is_r == pytest.approx(scores.score(), rel=1e-12)
    print("ranks agree")


if __name__ == "__main__":
    _two_ranks()
