"""``adatok eval --rfid/--lpips`` and ``adatok eval-fid``, end to end on a random-weight Inception
file and LPIPS files this test builds, against direct computations.

The reference FID here is computed independently of ``frechet_distance``: for n images the
covariance is ``A^T A / (n - 1)`` with ``A`` the centered n x 2048 features, so
``tr (S1 S2)^(1/2)`` is the nuclear norm of ``A1 A2^T`` over ``sqrt((n1 - 1)(n2 - 1))``
(milliseconds). Inside the commands ``frechet_distance`` is swapped for its symmetric-eigen form
(``tr (S1^1/2 S2 S1^1/2)^1/2``, which tests/eval/test_fid.py shows equal to scipy's ``sqrtm`` to
1e-9) restricted to the range of the low-rank ``S1``, as ``sqrtm`` of a 2048 x 2048 product takes
~15 s on the test machine's CPU; everything else (image reading, cropping, uint8 rounding,
Inception, streaming statistics, rank reduction) is the real path."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import adatok
from adatok.cli.main import main
from adatok.data.images import load_images, to_uint8
from adatok.eval import fid as fid_module
from adatok.eval.fid import FeatureStats, ISStats, save_stats
from adatok.eval.inception import INCEPTION_FILE, load_inception
from adatok.eval.samples_npz import iter_npz_images, write_samples_npz

from .test_fid import write_random_inception
from .test_lpips import lpips_files  # noqa: F401  (fixture)

FLOAT = r"([-0-9.e+]+)"


def eigen_frechet(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """``frechet_distance`` with ``tr (S1^1/2 S2 S1^1/2)^1/2`` from symmetric eigen problems in the
    range of ``S1``: a covariance of n << 2048 images has rank < n, so ``S1 = Q B Q^T`` with ``Q``
    an orthonormal basis of its range (found from ``S1 G``, ``G`` random 2048 x 32) and the eigen
    problems are 32 x 32 (milliseconds instead of seconds). Checked: ``S1`` is reproduced."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    q, _ = np.linalg.qr(s1 @ np.random.default_rng(0).normal(size=(len(s1), 32)))
    b = q.T @ s1 @ q
    assert np.abs(q @ b @ q.T - s1).max() <= 1e-9 * max(np.abs(s1).max(), 1e-300), "S1 is not low-rank"
    w, v = np.linalg.eigh((b + b.T) / 2)
    root = (v * np.sqrt(w.clip(0))) @ v.T
    inner = np.linalg.eigvalsh(root @ (q.T @ s2 @ q) @ root).clip(0)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(inner).sum())


def exact_fid(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """FID of two feature sets (n x d, n << d) via the nuclear norm (see the module docstring)."""
    a, b = f1.double().numpy(), f2.double().numpy()
    ca, cb = a - a.mean(0), b - b.mean(0)
    trace_root = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt((len(a) - 1) * (len(b) - 1))
    tr1, tr2 = (ca ** 2).sum() / (len(a) - 1), (cb ** 2).sum() / (len(b) - 1)
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + tr1 + tr2 - 2 * trace_root)


def inception_score(logits: torch.Tensor) -> float:
    s = ISStats(logits.shape[1])
    s.update(logits)
    return s.score()


@pytest.fixture(autouse=True)
def fast_frechet(monkeypatch):
    monkeypatch.setattr(fid_module, "frechet_distance", eigen_frechet)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on the shared 2-core test machine a second OpenMP thread stalls the
    Inception's convolutions (3x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def base_inception(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "base.pth"
    write_random_inception(path)
    return path


@pytest.fixture(scope="module")
def inception_file(base_inception, pools):
    """The random Inception with an ``fc`` that sees the differences between images: random pool
    features share one large direction (post-ReLU averages), so random logits pick the same class
    for every image and IS is 1.0000. Projecting that direction (the mean pool of the test
    images) out of ``fc`` and scaling the logits to a spread of ~3 across images makes IS > 1."""
    sd = torch.load(base_inception)
    w = sd["fc.weight"].double()
    m = torch.cat(pools).mean(0)
    m = m / m.norm()
    w = w - (w @ m)[:, None] * m[None]
    spread = (torch.cat(pools) @ w.T).std(0).mean()
    sd["fc.weight"] = (w * (3.0 / spread)).float()
    path = base_inception.parent / INCEPTION_FILE
    torch.save(sd, path)
    return path


@pytest.fixture(scope="module")
def inception(inception_file):
    return load_inception(inception_file)


def _write_images(folder: Path, seed: int, n: int, size=(40, 32)) -> list[Path]:
    """``n`` structured random RGB images (a colour ramp + noise), width x height ``size``."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    w, h = size
    paths = []
    for i in range(n):
        ramp = torch.rand(3, 1, 1, generator=g) * torch.linspace(0, 1, w).view(1, 1, w)
        x = (0.7 * ramp + 0.3 * torch.rand(1, h, w, generator=g) * torch.rand(1, generator=g)).clamp(0, 1)
        arr = to_uint8(x.expand(3, h, w)).permute(1, 2, 0).numpy()
        Image.fromarray(arr).save(folder / f"{i:02d}.png")
        paths.append(folder / f"{i:02d}.png")
    return paths


@pytest.fixture(scope="module")
def image_sets(tmp_path_factory):
    """Two folders of 3 images 40 x 32 (A, B) and their 32 x 32 center crops as uint8."""
    root = tmp_path_factory.mktemp("sets")
    out = {}
    for name, seed in (("a", 0), ("b", 1)):
        paths = _write_images(root / name, seed, 3)
        out[name] = {"dir": root / name, "crops": to_uint8(load_images(paths, 32)[0])}
    return out


@pytest.fixture(scope="module")
def pools(image_sets, base_inception):
    """The Inception pool features of A's and B's crops (``fc`` does not change them)."""
    net = load_inception(base_inception)
    with torch.inference_mode():
        return [net(image_sets[k]["crops"])[0] for k in ("a", "b")]


@pytest.fixture(scope="module")
def sets(image_sets, pools, inception):
    """``image_sets`` with the direct features: pool and bias-free logits."""
    fc = inception.fc.weight
    return {k: dict(image_sets[k], pool=pool, logits=pool @ fc.T) for k, pool in zip(("a", "b"), pools)}


def _number(pattern: str, text: str) -> float:
    m = re.search(pattern + r" " + FLOAT, text)
    assert m, text
    return float(m.group(1).rstrip("."))


# ----------------------------------------------------------------------------- adatok eval


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    return adatok.save(adatok.create_model("titok_tiny"), tmp_path_factory.mktemp("m") / "tiny")


def test_eval_rfid_is_lpips_equal_a_direct_computation(model_dir, inception_file, inception, lpips_files,
                                                       tmp_path, capsys):
    """2 images 80 x 64: the references are their 64 x 64 center crops (the model's size), the
    reconstructions rounded to uint8; rFID / IS / LPIPS streamed over 2 batches."""
    from adatok.eval.lpips import load_lpips, lpips_distance

    paths = _write_images(tmp_path / "in", 5, 2, size=(80, 64))
    code = main(["eval", str(tmp_path / "in"), "--model", str(model_dir), "--batch-size", "1", "--rfid",
                 "--inception", str(inception_file), "--lpips", "--lpips-dir", str(lpips_files)])
    out = capsys.readouterr().out
    assert code == 0, out
    model = adatok.load(model_dir)
    refs = load_images(paths, 64)[0]
    with torch.inference_mode():
        recon = (model.decode(model.encode(refs)).float() * 255).round() / 255
        pr, lr = inception(to_uint8(refs))
        pf, lf = inception(to_uint8(recon))
    lpips = lpips_distance(load_lpips(weights_dir=lpips_files), recon, refs).mean().item()
    want = exact_fid(pr, pf)
    assert want > 1e-4
    assert _number("rFID", out) == pytest.approx(want, rel=1e-4, abs=1e-4)
    assert _number("IS", out) == pytest.approx(inception_score(lf), abs=1e-4)
    assert _number(r"\(inputs", out) == pytest.approx(inception_score(lr), abs=1e-4)
    assert inception_score(lr) > 1.01  # the inputs' classes do spread (the reconstructions' may not)
    assert _number("LPIPS", out) == pytest.approx(lpips, abs=1e-4) and lpips > 0
    assert "over 2 image(s)" in out and "2 image(s): PSNR" in out


def test_missing_weight_files_one_line_exit_2(model_dir, tmp_path, monkeypatch, capsys):
    """No Inception anywhere: one line naming the file, every place looked and how to provide it;
    before the tokenizer is loaded (a bad --model is not reported). Same for LPIPS and eval-fid."""
    monkeypatch.setenv("ADATOK_WEIGHTS_DIR", str(tmp_path / "w"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    _write_images(tmp_path / "in", 0, 2)
    assert main(["eval", str(tmp_path / "in"), "--model", "no_such_model", "--rfid"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("adatok: error:"), err
    for part in (INCEPTION_FILE, str(tmp_path / "w"), str(tmp_path / "home" / ".cache" / "adatok" / "weights"),
                 str(tmp_path / "hub"), "--inception FILE"):
        assert part in err, (part, err)
    assert main(["eval", str(tmp_path / "in"), "--model", str(model_dir), "--lpips", "--lpips-dir",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "vgg16-397923af.pth" in err and "--lpips-dir" in err, err
    assert main(["eval-fid", str(tmp_path / "in"), str(tmp_path / "in")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and INCEPTION_FILE in err and "Traceback" not in err, err
    assert main(["eval-fid", str(tmp_path / "in"), str(tmp_path / "in"), "--inception", str(tmp_path / "x.pth")]) == 2
    assert "x.pth" in capsys.readouterr().err


# ----------------------------------------------------------------------------- adatok eval-fid


def test_eval_fid_folder_vs_folder_and_saved_statistics(sets, inception_file, tmp_path, capsys):
    a, b = sets["a"], sets["b"]
    stats = tmp_path / "a_stats.npz"
    code = main(["eval-fid", str(a["dir"]), str(b["dir"]), "--size", "32", "--batch-size", "2",
                 "--inception", str(inception_file), "--save-stats", str(stats)])
    out = capsys.readouterr().out
    assert code == 0, out
    want = exact_fid(a["pool"], b["pool"])
    assert want > 1e-4 and _number("FID", out) == pytest.approx(want, rel=1e-4, abs=1e-4)
    assert _number("IS of B", out) == pytest.approx(inception_score(b["logits"]), abs=1e-4)
    direct = FeatureStats()
    direct.update(a["pool"])
    mu, sigma = direct.mean_cov()
    with np.load(stats) as z:
        assert int(z["n"]) == 3 and np.allclose(z["mu"], mu, atol=1e-12) and np.allclose(z["sigma"], sigma, atol=1e-12)


def test_eval_fid_stats_vs_samples_npz_and_identical_sets(sets, inception_file, tmp_path, capsys):
    """A's statistics (ADM layout: mu / sigma beside an arr_0) against B as ADM samples: the same
    FID as the folders; A's folder against A as samples: ~0."""
    a, b = sets["a"], sets["b"]
    stats = FeatureStats()
    stats.update(a["pool"])
    ref = save_stats(tmp_path / "ref.npz", stats)
    with np.load(ref) as z:
        np.savez(tmp_path / "adm_ref.npz", arr_0=np.zeros((1, 2, 2, 3), np.uint8), mu=z["mu"], sigma=z["sigma"])
    write_samples_npz(tmp_path / "b.npz", [b["crops"][:2], b["crops"][2:]], 3)
    write_samples_npz(tmp_path / "a.npz", [a["crops"]], 3)
    assert main(["eval-fid", str(tmp_path / "adm_ref.npz"), str(tmp_path / "b.npz"), "--batch-size", "2",
                 "--inception", str(inception_file)]) == 0
    out = capsys.readouterr().out
    assert _number("FID", out) == pytest.approx(exact_fid(a["pool"], b["pool"]), rel=1e-4, abs=1e-4)
    assert "A: statistics" in out and "IS of B" in out
    assert main(["eval-fid", str(a["dir"]), str(tmp_path / "a.npz"), "--size", "32",
                 "--inception", str(inception_file)]) == 0
    out = capsys.readouterr().out
    assert abs(_number("FID", out)) < 1e-6


def test_the_fast_frechet_equals_scipy_on_low_rank_covariances():
    from adatok.eval.fid import frechet_distance  # the real one (the fixture patches the module attribute)

    g = np.random.default_rng(0)
    a, b = g.normal(size=(4, 300)), g.normal(size=(5, 300)) * 1.5 + 0.1
    args = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    want = exact_fid(torch.from_numpy(a), torch.from_numpy(b))
    assert eigen_frechet(*args) == pytest.approx(want, rel=1e-9)
    assert frechet_distance(*args) == pytest.approx(want, rel=1e-6)


def test_samples_npz_round_trip_and_bad_inputs(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(5, 3, 6, 4, generator=g) * 255).to(torch.uint8)
    path = write_samples_npz(tmp_path / "s.npz", [images[:2], images[2:]], 5, labels=torch.arange(5))
    with np.load(path) as z:
        assert z["arr_0"].shape == (5, 6, 4, 3) and z["arr_0"].dtype == np.uint8
        assert np.array_equal(z["arr_0"], images.permute(0, 2, 3, 1).numpy()) and z["arr_1"].tolist() == list(range(5))
    back = torch.cat(list(iter_npz_images(path, 2)))
    assert torch.equal(back, images)
    shares = [torch.cat(list(iter_npz_images(path, 2, rank=r, world=2))) for r in range(2)]
    assert torch.equal(shares[0], images[0::2]) and torch.equal(shares[1], images[1::2])
    with pytest.raises(adatok.errors.OutputError, match="--overwrite"):
        write_samples_npz(path, [images], 5)
    with pytest.raises(adatok.errors.InputError, match="expected 5 samples, got 2"):
        write_samples_npz(tmp_path / "short.npz", [images[:2]], 5)
    assert not (tmp_path / "short.npz").exists()
    np.savez(tmp_path / "f.npz", arr_0=np.zeros((2, 4, 4, 3), np.float32))
    assert main(["eval-fid", str(tmp_path / "f.npz"), str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "uint8 N x H x W x 3" in err, err


# ----------------------------------------------------------------------------- torchrun

RANK_SCRIPT = """
import json, sys
import torch.distributed as dist
from adatok.eval import fid
sys.path.insert(0, {tests!r})
from eval.test_cli_metrics import eigen_frechet
fid.frechet_distance = eigen_frechet
from adatok.cli.main import main
dist.init_process_group("gloo")  # one group for both commands (each would otherwise open its own)
codes = [main(argv) for argv in json.load(open(sys.argv[1]))]
dist.destroy_process_group()
sys.exit(max(codes))
"""


def test_torchrun_two_ranks_equal_one_process(sets, inception_file, model_dir, tmp_path, capsys):
    """``torchrun --nproc_per_node 2`` (gloo, CPU): for eval-fid the ranks read 2 + 1 of each
    folder's 3 images, for eval 1 + 1; the reduced statistics give the single-process FID / IS
    (eval-fid) and rFID / IS / PSNR / SSIM (eval), printed once."""
    import json

    a, b = sets["a"], sets["b"]
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT.format(tests=str(Path(__file__).resolve().parents[1])))
    two = tmp_path / "two"  # eval: 1 + 1 images (each forward is ~1 s of CPU)
    two.mkdir()
    for f in sorted(a["dir"].glob("*.png"))[:2]:
        (two / f.name).write_bytes(f.read_bytes())
    evaluate = ["eval", str(two), "--model", str(model_dir), "--rfid", "--inception", str(inception_file),
                "--quiet"]
    commands = tmp_path / "commands.json"
    commands.write_text(json.dumps([["eval-fid", str(a["dir"]), str(b["dir"]), "--size", "32", "--inception",
                                     str(inception_file), "--quiet"], evaluate]))
    src = str(Path(adatok.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(commands)], env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert len(re.findall(r"^FID ", out, re.M)) == 1 and len(re.findall(r"^rFID ", out, re.M)) == 1, out
    assert out.count("PSNR") == 1, out  # rank 0 prints, once per command
    assert _number("FID", out) == pytest.approx(exact_fid(a["pool"], b["pool"]), rel=1e-4, abs=1e-4)
    assert _number("IS of B", out) == pytest.approx(inception_score(b["logits"]), abs=1e-4)
    assert inception_score(b["logits"]) > 1.05  # a score that tells the images apart
    assert main(evaluate) == 0
    single = capsys.readouterr().out
    assert "2 image(s): PSNR" in out
    for key in ("rFID", "IS", r"\(inputs", "PSNR", "SSIM"):
        assert _number(key, out) == pytest.approx(_number(key, single), rel=1e-6, abs=1.5e-4), key  # printed to 1e-4
