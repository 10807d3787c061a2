"""Token-selection criteria as pure tensor functions, and the confidence calibration."""

import pytest
import torch

from adatok.errors import ConfigError
from adatok.tokenizers.selection import (IterationStats, ReconstructionThreshold, TokenBudget, TokenConfidence,
                                         calibrate_confidence, get_criterion)


def stats(recon_offset, p_gt, n=32):
    images = torch.full((len(recon_offset), 3, 4, 4), 0.5)
    recon = images + torch.tensor(recon_offset).view(-1, 1, 1, 1)
    return IterationStats(n, images, torch.tensor(p_gt).view(len(p_gt), 1).expand(-1, 16), recon)


def test_reconstruction_metrics():
    s = stats([0.01, 0.2], [0.5, 0.5])
    l1 = ReconstructionThreshold(metric="l1", threshold=0.07)
    err = l1.error(s)
    torch.testing.assert_close(err, torch.tensor([0.01, 0.2]))
    assert l1.met(err, 32).tolist() == [True, False]
    mse = ReconstructionThreshold(metric="mse", threshold=0.001)
    torch.testing.assert_close(mse.error(s), torch.tensor([1e-4, 0.04]))
    psnr = ReconstructionThreshold(metric="psnr", threshold=30.0)
    e = psnr.error(s)
    torch.testing.assert_close(-e, torch.tensor([40.0, 10 * torch.log10(torch.tensor(1 / 0.04)).item()]))
    assert psnr.met(e, 32).tolist() == [True, False]
    assert l1.needs_pixels and psnr.needs_pixels


def test_token_space_and_budget():
    s = stats([0.0, 0.0], [0.9, 0.3], n=64)
    c = TokenConfidence(threshold=0.5)
    torch.testing.assert_close(c.error(s), torch.tensor([0.1, 0.7]))
    assert c.met(c.error(s), 64).tolist() == [True, False] and not c.needs_pixels
    b = TokenBudget(tokens=64)
    assert b.met(b.error(s), 64).tolist() == [True, True] and b.met(b.error(s), 32).tolist() == [False, False]


def test_get_criterion_names_defaults_and_errors():
    assert get_criterion("l1") == ReconstructionThreshold(None, "l1", 0.07)
    assert get_criterion("budget", 96.0) == TokenBudget(None, 96)
    assert get_criterion("confidence", 0.8, max_tokens=128).max_tokens == 128
    obj = TokenConfidence(threshold=0.7)
    assert get_criterion(obj, max_tokens=64) == TokenConfidence(64, 0.7)
    with pytest.raises(ConfigError, match="unknown token-selection criterion 'fid'"):
        get_criterion("fid")
    with pytest.raises(ConfigError, match="positive int"):
        get_criterion("budget", 12.5)
    with pytest.raises(ConfigError, match="max_tokens"):
        get_criterion("l1", 0.1, max_tokens=0)
    with pytest.raises(ConfigError, match="either"):
        get_criterion(obj, 0.5)


def test_calibration_finds_the_separating_confidence():
    # l1 falls as confidence rises; l1 < 0.05 exactly when confidence >= 0.6
    confidence = torch.tensor([0.1, 0.3, 0.5, 0.6, 0.7, 0.9])
    l1 = torch.tensor([0.20, 0.12, 0.07, 0.04, 0.03, 0.01])
    threshold, agreement = calibrate_confidence(confidence, l1, 0.05)
    assert threshold == pytest.approx(0.6) and agreement == 1.0
    # with one outlier the best cut still agrees on 5 of 6
    l1_noisy = torch.tensor([0.20, 0.12, 0.07, 0.04, 0.08, 0.01])
    threshold, agreement = calibrate_confidence(confidence, l1_noisy, 0.05)
    assert agreement == pytest.approx(5 / 6)
    # nothing reaches the target: the threshold is above every confidence (never stop early)
    threshold, agreement = calibrate_confidence(confidence, l1, 0.001)
    assert threshold == 1.0 and agreement == 1.0
