"""Token-selection criteria for adaptive-length tokenizers (ALIT's token selection
criteria, "TSC": Duggal et al. 2025).

A criterion looks at one rollout iteration of a batch and says, per image, how bad the
representation is (``error``: lower is better) and whether it is good enough (``met``). The
tokenizer stops iterating an image at the first iteration where ``met`` holds; if none does by the
last iteration (or the ``max_tokens`` cap), it keeps the iteration with the lowest error — the
official rule, applied per image instead of per batch.

Criteria are small frozen dataclasses; add one by subclassing ``Criterion``. All are pure tensor
functions of the iteration's statistics (no model inside), so they are testable alone.

Shapes: images / recon B x 3 x H x W; p_gt B x N2 (the decoder's probability of each 2D token's
base code); error / met B.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from ..errors import ConfigError


@dataclass(frozen=True)
class IterationStats:
    """What a criterion may read about one iteration (``recon`` is None unless it needs pixels)."""

    num_tokens: int
    images: torch.Tensor
    p_gt: torch.Tensor
    recon: Optional[torch.Tensor] = None


@dataclass(frozen=True)
class Criterion:
    """Base class. ``max_tokens`` caps the length whatever the criterion says (None = no cap)."""

    max_tokens: Optional[int] = None
    needs_pixels = False

    def error(self, stats: IterationStats) -> torch.Tensor:
        raise NotImplementedError

    def met(self, error: torch.Tensor, num_tokens: int) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class ReconstructionThreshold(Criterion):
    """The paper's criterion: reconstruction error of the pixel decode below a threshold.

    metric "l1" (the official one: mean |recon - image| on the unclamped decode, threshold 0.07 in
    the official code, 0.05 in its notebook), "mse", or "psnr" (dB, met when PSNR >= threshold;
    computed on the decode clamped to [0, 1]). Needs one pixel decode per iteration.
    """

    metric: str = "l1"
    threshold: float = 0.07
    needs_pixels = True

    def __post_init__(self):
        if self.metric not in ("l1", "mse", "psnr"):
            raise ConfigError(f"unknown reconstruction metric {self.metric!r}: choose l1, mse or psnr")
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold) and self.threshold > 0):
            raise ConfigError(f"{self.metric} threshold must be a positive number, got {self.threshold!r}")

    def error(self, stats: IterationStats) -> torch.Tensor:
        diff = stats.recon.float() - stats.images.float()
        if self.metric == "l1":
            return diff.abs().mean(dim=(1, 2, 3))
        if self.metric == "mse":
            return diff.pow(2).mean(dim=(1, 2, 3))
        mse = (stats.recon.float().clamp(0, 1) - stats.images.float()).pow(2).mean(dim=(1, 2, 3))
        return 10 * torch.log10(mse.clamp_min(1e-10))  # = -PSNR for images in [0, 1]

    def met(self, error: torch.Tensor, num_tokens: int) -> torch.Tensor:
        if self.metric == "psnr":
            return -error >= self.threshold
        return error < self.threshold

    def describe(self) -> str:
        op = ">=" if self.metric == "psnr" else "<"
        return f"{self.metric} {op} {self.threshold:g}"


@dataclass(frozen=True)
class TokenConfidence(Criterion):
    """Token-space criterion (ours): the decoder's mean probability of the base tokenizer's codes,
    ``mean_i p(gt_i)``, at least ``threshold``. Needs no pixel decode until the length is chosen.
    ``calibrate_confidence`` maps a pixel-L1 target to an equivalent threshold on held-out images."""

    threshold: float = 0.5

    def __post_init__(self):
        if not (isinstance(self.threshold, (int, float)) and 0 < self.threshold <= 1):
            raise ConfigError(f"confidence threshold must lie in (0, 1], got {self.threshold!r}")

    def error(self, stats: IterationStats) -> torch.Tensor:
        return 1.0 - stats.p_gt.float().mean(dim=1)

    def met(self, error: torch.Tensor, num_tokens: int) -> torch.Tensor:
        return (1.0 - error) >= self.threshold

    def describe(self) -> str:
        return f"confidence >= {self.threshold:g}"


@dataclass(frozen=True)
class TokenBudget(Criterion):
    """A fixed length: the first iteration with at least ``tokens`` tokens (no adaptivity)."""

    tokens: int = 256

    def __post_init__(self):
        if not (isinstance(self.tokens, int) and not isinstance(self.tokens, bool) and self.tokens > 0):
            raise ConfigError(f"token budget must be a positive int, got {self.tokens!r}")

    def error(self, stats: IterationStats) -> torch.Tensor:
        # prefer the longest representation if the budget is never reached
        return torch.full((stats.p_gt.shape[0],), -float(stats.num_tokens), device=stats.p_gt.device)

    def met(self, error: torch.Tensor, num_tokens: int) -> torch.Tensor:
        return torch.full_like(error, num_tokens >= self.tokens, dtype=torch.bool)

    def describe(self) -> str:
        return f"{self.tokens} tokens"


@dataclass(frozen=True)
class ContrastNormalizedError(Criterion):
    """Reconstruction error relative to the image's own contrast (ours): RMSE of the clamped decode
    divided by the image's standard deviation (over pixels and channels, floored at ``min_std``),
    met when below ``threshold``. Raw L1 / MSE call a dark photo "simple" because all its values,
    and so all its errors, are small; divided by its contrast, losing a dark image's detail costs as
    much as losing a bright one's. ``min_std`` keeps flat images (std ~ 0) from never being met: an
    error of a few grey levels on a flat image stays small."""

    threshold: float = 0.4
    min_std: float = 0.02
    needs_pixels = True

    def __post_init__(self):
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold) and self.threshold > 0):
            raise ConfigError(f"nrmse threshold must be a positive number, got {self.threshold!r}")
        if not (isinstance(self.min_std, (int, float)) and self.min_std > 0):
            raise ConfigError(f"min_std must be a positive number, got {self.min_std!r}")

    def error(self, stats: IterationStats) -> torch.Tensor:
        images = stats.images.float()
        rmse = (stats.recon.float().clamp(0, 1) - images).pow(2).mean(dim=(1, 2, 3)).sqrt()
        return rmse / images.flatten(1).std(dim=1).clamp_min(self.min_std)

    def met(self, error: torch.Tensor, num_tokens: int) -> torch.Tensor:
        return error < self.threshold

    def describe(self) -> str:
        return f"nrmse < {self.threshold:g}"


def ssim_per_image(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """SSIM (Wang et al. 2004; Gaussian window 11, sigma 1.5, data range 1, valid region only, the
    mean over channels) per image, B. Pure torch: a criterion must not need optional packages."""
    a, b = a.double(), b.double()
    c = a.shape[1]
    x = torch.arange(window, dtype=torch.float64, device=a.device) - (window - 1) / 2
    g = torch.exp(-x**2 / (2 * sigma**2))
    g = g / g.sum()
    k = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()

    def blur(t):
        return torch.nn.functional.conv2d(t, k, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(dim=1)


@dataclass(frozen=True)
class SSIMTarget(Criterion):
    """Structural similarity of the clamped decode at least ``threshold`` (ours). SSIM compares local
    means, contrasts and structure, each normalised by the local signal, so dark detail counts. The
    error is ``1 - SSIM``. Images must be at least 11 x 11 (the window)."""

    threshold: float = 0.6
    needs_pixels = True

    def __post_init__(self):
        if not (isinstance(self.threshold, (int, float)) and -1 < self.threshold <= 1):
            raise ConfigError(f"ssim threshold must lie in (-1, 1], got {self.threshold!r}")

    def error(self, stats: IterationStats) -> torch.Tensor:
        return (1.0 - ssim_per_image(stats.recon.float().clamp(0, 1), stats.images.float())).float()

    def met(self, error: torch.Tensor, num_tokens: int) -> torch.Tensor:
        return (1.0 - error) >= self.threshold

    def describe(self) -> str:
        return f"ssim >= {self.threshold:g}"


CRITERIA = {
    "l1": lambda t, cap: ReconstructionThreshold(cap, "l1", 0.07 if t is None else t),
    "mse": lambda t, cap: ReconstructionThreshold(cap, "mse", 0.01 if t is None else t),
    "psnr": lambda t, cap: ReconstructionThreshold(cap, "psnr", 25.0 if t is None else t),
    "confidence": lambda t, cap: TokenConfidence(cap, 0.5 if t is None else t),
    "budget": lambda t, cap: TokenBudget(cap, 256 if t is None else _as_int(t)),
    "nrmse": lambda t, cap: ContrastNormalizedError(cap, 0.4 if t is None else t),
    "ssim": lambda t, cap: SSIMTarget(cap, 0.6 if t is None else t),
}


def _as_int(t) -> int:
    if isinstance(t, float) and t.is_integer():
        return int(t)
    return t


def get_criterion(criterion, threshold: Optional[float] = None, max_tokens: Optional[int] = None) -> Criterion:
    """A ``Criterion`` from a name (``l1``, ``mse``, ``psnr``, ``confidence``, ``budget``, ``nrmse``,
    ``ssim``) and a
    threshold (the budget's token count for ``budget``), or a ``Criterion`` passed through."""
    if max_tokens is not None and not (isinstance(max_tokens, int) and max_tokens > 0):
        raise ConfigError(f"max_tokens must be a positive int, got {max_tokens!r}")
    if isinstance(criterion, Criterion):
        if threshold is not None:
            raise ConfigError("pass either a Criterion object or a name with a threshold, not both")
        if max_tokens is not None:
            from dataclasses import replace

            criterion = replace(criterion, max_tokens=max_tokens)
        return criterion
    if criterion not in CRITERIA:
        raise ConfigError(f"unknown token-selection criterion {criterion!r}; choose one of {sorted(CRITERIA)}")
    return CRITERIA[criterion](threshold, max_tokens)


def calibrate_confidence(confidence: torch.Tensor, l1: torch.Tensor, l1_threshold: float) -> tuple[float, float]:
    """The confidence threshold that best predicts ``l1 < l1_threshold``.

    ``confidence`` and ``l1`` are matching per-(image, iteration) measurements (any shape) from full
    rollouts on held-out images. Returns ``(threshold, agreement)``: the cut that maximises the
    fraction of pairs on which ``confidence >= threshold`` agrees with ``l1 < l1_threshold``, and
    that fraction. Ties go to the higher threshold (fewer images stop too early).
    """
    c, target = confidence.flatten().double(), (l1.flatten() < l1_threshold)
    if c.numel() == 0:
        raise ConfigError("calibration needs at least one (confidence, l1) measurement")
    candidates = torch.cat([c.unique(), c.new_tensor([1.0 + 1e-9])])
    agree = ((c[None, :] >= candidates[:, None]) == target[None, :]).double().mean(dim=1)
    best = agree.max()
    idx = int(torch.nonzero(agree == best).max())
    return float(min(candidates[idx], 1.0)), float(best)
