"""FID and Inception Score from streaming float64 statistics, as TiTok's evaluator computes them.

* ``FeatureStats``: running sum and sum of outer products of 2048-d Inception pool features in
  float64 (50k images never held in memory; memory is one 2048 x 2048 matrix). The covariance is
  ``(S - t t^T / n) / (n - 1)``: the unbiased covariance ``np.cov`` gives.
* ``ISStats``: running sums of the softmax of the bias-free logits and of ``p log p`` over the
  1008 classes; IS = exp(mean KL(p(y|x) || p(y))) over the whole set (one split, as TiTok's
  evaluator; torch-fidelity with ``isc_splits=1`` gives the same number).
* ``frechet_distance``: ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`` with scipy's ``sqrtm``
  (Heusel et al., NeurIPS 2017), float64.
* Under ``torchrun`` (an initialised ``torch.distributed`` group) ``reduce()`` sums every rank's
  statistics, so each rank reads its own share of the images.
* ``.npz`` statistics: ours (``mu``, ``sigma``, ``n``) and the ADM evaluator's reference batches
  (Dhariwal & Nichol 2021, ``mu`` / ``sigma`` beside ``arr_0``) are read alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError

__all__ = ["FeatureStats", "ISStats", "InceptionMetrics", "frechet_distance", "load_stats", "save_stats"]

IS_EPS = 1e-16  # TiTok's evaluator: log(p + eps)


def _reduce_(*tensors: torch.Tensor) -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)


class FeatureStats:
    """Running mean / covariance of feature vectors (float64)."""

    def __init__(self, dim: int = 2048, device=None):
        self.total = torch.zeros(dim, dtype=torch.float64, device=device)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64, device=device)
        self.count = torch.zeros((), dtype=torch.float64, device=device)

    def update(self, features: torch.Tensor) -> None:
        """``features`` N x dim."""
        f = features.to(self.total.device, torch.float64)
        self.total += f.sum(0)
        self.outer += f.T @ f
        self.count += f.shape[0]

    def reduce(self) -> "FeatureStats":
        """Sum over the ranks of a ``torch.distributed`` group (no-op on one process)."""
        _reduce_(self.total, self.outer, self.count)
        return self

    @property
    def n(self) -> int:
        return int(self.count.item())

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        n = self.n
        if n < 2:
            raise InputError(f"FID needs at least 2 images per set, got {n}")
        mu = self.total / n
        sigma = (self.outer - torch.outer(self.total, self.total) / n) / (n - 1)
        return mu.cpu().numpy(), sigma.cpu().numpy()


class ISStats:
    """Running sums for the Inception Score over ``classes`` logits (float64)."""

    def __init__(self, classes: int = 1008, device=None):
        self.prob = torch.zeros(classes, dtype=torch.float64, device=device)
        self.plogp = torch.zeros(classes, dtype=torch.float64, device=device)
        self.count = torch.zeros((), dtype=torch.float64, device=device)

    def update(self, logits: torch.Tensor) -> None:
        p = F.softmax(logits.to(self.prob.device, torch.float64), dim=-1)
        self.prob += p.sum(0)
        self.plogp += (p * torch.log(p + IS_EPS)).sum(0)
        self.count += p.shape[0]

    def reduce(self) -> "ISStats":
        _reduce_(self.prob, self.plogp, self.count)
        return self

    def score(self) -> float:
        n = self.count.item()
        if n < 1:
            raise InputError("the Inception Score needs at least one image")
        marginal = torch.log(self.prob / n + IS_EPS)
        return float(torch.exp((self.plogp - self.prob * marginal).sum() / n))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between two Gaussians (float64). When ``sqrtm`` of the product is not
    finite, ``eps`` is added to both diagonals (pytorch-fid's fallback)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise InputError(f"FID statistics do not match: mu {mu1.shape} / {mu2.shape}, "
                         f"sigma {s1.shape} / {s2.shape}")
    diff = mu1 - mu2
    covmean = _sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = _sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise InputError(f"FID: the covariance product's square root has an imaginary part "
                             f"{np.max(np.abs(covmean.imag)):.3g} (too few images for the dimension?)")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _sqrtm(m: np.ndarray) -> np.ndarray:
    import warnings

    from scipy import linalg

    with warnings.catch_warnings():  # singular products (fewer images than dimensions) are expected
        warnings.simplefilter("ignore")
        return linalg.sqrtm(m)


@dataclass
class InceptionMetrics:
    """rFID / IS accumulator: ``update(real, fake)`` per batch (float [0, 1] or uint8), then
    ``result()`` -> ``{"rfid", "is", "is_real", "images"}``. ``fake=None`` only collects ``real``
    (e.g. for ``save_stats``)."""

    model: torch.nn.Module
    dim: int = 2048
    classes: int = 1008

    def __post_init__(self):
        device = next(self.model.buffers(), torch.empty(0)).device
        self.real, self.fake = FeatureStats(self.dim, device), FeatureStats(self.dim, device)
        self.is_real, self.is_fake = ISStats(self.classes, device), ISStats(self.classes, device)

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from .inception import to_uint8

        device = next(self.model.buffers()).device
        with torch.inference_mode():
            return self.model(to_uint8(images).to(device))

    def update(self, real: Optional[torch.Tensor], fake: Optional[torch.Tensor] = None) -> None:
        for images, stats, scores in ((real, self.real, self.is_real), (fake, self.fake, self.is_fake)):
            if images is not None:
                pool, logits = self.features(images)
                stats.update(pool)
                scores.update(logits)

    def reduce(self) -> "InceptionMetrics":
        for s in (self.real, self.fake, self.is_real, self.is_fake):
            s.reduce()
        return self

    def result(self) -> dict:
        out = {"images": self.fake.n or self.real.n}
        if self.fake.n:
            out["is"] = self.is_fake.score()
        if self.real.n:
            out["is_real"] = self.is_real.score()
        if self.fake.n and self.real.n:
            out["rfid"] = frechet_distance(*self.real.mean_cov(), *self.fake.mean_cov())
        return out


def stats_of(model, batches: Iterable[torch.Tensor], progress=None) -> tuple[FeatureStats, ISStats]:
    """Statistics of a stream of image batches (reduced over ranks under ``torchrun``)."""
    metrics = InceptionMetrics(model)
    for batch in batches:
        metrics.update(batch)
        if progress is not None:
            progress.update(len(batch))
    metrics.reduce()
    return metrics.real, metrics.is_real


def save_stats(path: str | Path, stats: FeatureStats) -> Path:
    mu, sigma = stats.mean_cov()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, mu=mu, sigma=sigma, n=stats.n)
    return path


def load_stats(path: str | Path) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """``(mu, sigma)`` of a statistics ``.npz`` (ours or ADM's), or None when it holds none."""
    with np.load(path) as z:
        if "mu" in z.files and "sigma" in z.files:
            return np.asarray(z["mu"], np.float64), np.asarray(z["sigma"], np.float64)
    return None
