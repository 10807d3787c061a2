"""rFID and Inception Score of rate–distortion points (docs/rate_distortion.md).

The references are the sweep's input images: their Inception statistics are computed once
(``inception_reference``) and shared by every point, tokenizer and baseline alike. Each point then
streams its own 8-bit reconstructions through the Inception batch by batch (``PointInception``:
float64 running sums, ``adatok.eval.fid.FeatureStats`` / ``ISStats``), so no feature matrix is kept.
Images go to the network as ``adatok eval --rfid`` sends them: float [0, 1] rounded to uint8
(``adatok.data.images.to_uint8``), uint8 passed as is; the forward is ``FIDInception``'s (299 px
TF1 bilinear resize, float64 by default).

Shapes: images ``B x 3 x H x W``, float in [0, 1] or uint8.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..errors import InputError
from . import fid

__all__ = ["InceptionReference", "PointInception", "inception_reference", "as_reference"]


def _uint8(images: torch.Tensor) -> torch.Tensor:
    from ..data.images import to_uint8

    return images if images.dtype == torch.uint8 else to_uint8(images)


def _features(net: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pool ``B x 2048``, bias-free logits ``B x 1008``) of a batch."""
    device = next(net.buffers()).device
    with torch.inference_mode():
        return net(_uint8(images).to(device))


def _digest(u8: torch.Tensor) -> str:
    return hashlib.sha1(u8.contiguous().cpu().numpy().tobytes()).hexdigest()


@dataclass
class InceptionReference:
    """The Inception statistics of the input images, computed once per image set.

    ``net``: the FID Inception; ``mu`` (2048,) / ``sigma`` (2048 x 2048): float64 mean and unbiased
    covariance of the inputs' pool features; ``inception_score``: IS of the inputs; ``images``: how
    many; ``digest``: SHA-1 of the inputs' uint8 bytes (a reference is only used for its own images)."""

    net: torch.nn.Module
    mu: np.ndarray
    sigma: np.ndarray
    inception_score: float
    images: int
    digest: str

    def check(self, images: torch.Tensor, where: str) -> None:
        if len(images) != self.images or _digest(_uint8(images)) != self.digest:
            raise InputError(f"{where}: the Inception reference was computed on other images ({self.images} "
                             f"image(s)); build it with inception_reference(net, images) on these images")


def inception_reference(net: torch.nn.Module, images: torch.Tensor, batch_size: int = 8) -> InceptionReference:
    """Reference statistics of ``images`` (B x 3 x H x W, B >= 2: a covariance needs two), streamed
    in batches of ``batch_size``."""
    if len(images) < 2:
        raise InputError(f"rFID needs at least 2 images, got {len(images)}: give more images or drop --rfid")
    device = next(net.buffers()).device
    feats, scores = fid.FeatureStats(device=device), fid.ISStats(device=device)
    for i in range(0, len(images), batch_size):
        pool, logits = _features(net, images[i:i + batch_size])
        feats.update(pool)
        scores.update(logits)
    mu, sigma = feats.mean_cov()
    return InceptionReference(net=net, mu=mu, sigma=sigma, inception_score=scores.score(), images=feats.n,
                              digest=_digest(_uint8(images)))


def as_reference(inception, images: torch.Tensor, batch_size: int, where: str) -> Optional[InceptionReference]:
    """``inception`` as a reference for ``images``: None stays None; an ``InceptionReference`` is
    checked to be of these images; a network gets its reference computed here."""
    if inception is None:
        return None
    if isinstance(inception, InceptionReference):
        inception.check(images, where)
        return inception
    if not isinstance(inception, torch.nn.Module):
        raise InputError(f"{where}: inception must be the FID Inception (adatok.eval.inception.load_inception) or "
                         f"an InceptionReference, got {type(inception).__name__}")
    return inception_reference(inception, images, batch_size)


class PointInception:
    """rFID / IS of one point's reconstructions against a shared reference, updated per batch."""

    def __init__(self, reference: InceptionReference):
        self.reference = reference
        device = next(reference.net.buffers()).device
        self.feats, self.scores = fid.FeatureStats(device=device), fid.ISStats(device=device)

    def add(self, recon: torch.Tensor) -> None:
        """``recon``: B x 3 x H x W, float [0, 1] (rounded to uint8 here) or uint8."""
        pool, logits = _features(self.reference.net, recon)
        self.feats.update(pool)
        self.scores.update(logits)

    def result(self) -> tuple[float, float]:
        """``(rfid, inception_score)`` of everything added."""
        mu, sigma = self.feats.mean_cov()
        ref = self.reference
        return fid.frechet_distance(ref.mu, ref.sigma, mu, sigma), self.scores.score()
