"""Length against complexity (Spearman) and the allocation check, on constructed numbers."""

import itertools

import numpy as np
import pytest
import torch

from adatok.errors import InputError
from adatok.eval.complexity import (allocation_check, image_complexity, jpeg_bytes, length_complexity, png_bytes,
                                    spearman)


def test_spearman_on_constructed_ranks():
    up = spearman([1, 2, 3, 4, 5], [2, 4, 6, 8, 100])
    assert up["rho"] == pytest.approx(1.0) and up["p"] < 0.01 and up["n"] == 5
    assert spearman([1, 2, 3, 4, 5], [5, 4, 3, 2, 1])["rho"] == pytest.approx(-1.0)
    # one swapped pair: rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 60
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4])["rho"] == pytest.approx(0.8)
    flat = spearman([16, 16, 16, 16], [1, 2, 3, 4])
    assert np.isnan(flat["rho"]) and "same value" in flat["note"]
    assert np.isnan(spearman([1, 2], [1, 2])["rho"])
    with pytest.raises(InputError, match="one length"):
        spearman([1, 2, 3], [1, 2])


def test_complexity_sizes_grow_with_detail():
    g = torch.Generator().manual_seed(0)
    flat = torch.full((1, 3, 32, 32), 0.5)
    noise = torch.rand(1, 3, 32, 32, generator=g)
    c = image_complexity(torch.cat([flat, noise]))
    assert c["png_bytes"][0] < c["png_bytes"][1] and c["jpeg90_bytes"][0] < c["jpeg90_bytes"][1]
    u8 = (noise[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    assert c["png_bytes"][1] == png_bytes(u8) and c["jpeg90_bytes"][1] == jpeg_bytes(u8, 90)
    stats = length_complexity([8, 32], c)
    assert set(stats) == {"png_bytes", "jpeg90_bytes"}


def test_allocation_check_on_constructed_curves():
    lengths = [8, 16, 32]
    # image 0 is simple (saturates early), image 1 is steep, image 2 is in between
    curves = np.array([[30.0, 31.0, 31.5],
                       [15.0, 20.0, 26.0],
                       [20.0, 24.0, 25.0]]).T  # T x B
    chosen = [8, 32, 16]
    a = allocation_check(curves, lengths, chosen, seed=0, shuffles=3000)
    assert a["mean_tokens"] == pytest.approx(56 / 3)
    assert a["chosen_psnr"] == pytest.approx((30.0 + 26.0 + 24.0) / 3)
    fixed_at_16, fixed_at_32 = np.mean([31.0, 20.0, 24.0]), np.mean([31.5, 26.0, 25.0])
    want_fixed = fixed_at_16 + (56 / 3 - 16) / 16 * (fixed_at_32 - fixed_at_16)
    assert a["fixed_psnr"] == pytest.approx(want_fixed)
    # every permutation equally likely: the shuffled mean tends to the mean over all 6 permutations
    rows = {8: 0, 16: 1, 32: 2}
    perms = [np.mean([curves[rows[n], i] for i, n in enumerate(p)]) for p in itertools.permutations(chosen)]
    assert a["shuffled_psnr"] == pytest.approx(np.mean(perms), abs=0.15)
    assert a["vs_fixed_db"] == pytest.approx(a["chosen_psnr"] - a["fixed_psnr"])
    assert a["vs_shuffled_db"] == pytest.approx(a["chosen_psnr"] - a["shuffled_psnr"])
    assert allocation_check(curves, lengths, chosen, seed=0, shuffles=3000) == a  # the seed fixes the shuffles
    # one length for all: chosen == fixed == shuffled
    same = allocation_check(curves, lengths, [16, 16, 16])
    assert same["chosen_psnr"] == pytest.approx(same["fixed_psnr"]) == pytest.approx(same["shuffled_psnr"])


def test_allocation_check_rejects_lengths_off_the_curve():
    curves = np.zeros((2, 3))
    with pytest.raises(InputError, match="not among"):
        allocation_check(curves, [8, 16], [8, 12, 16])
    with pytest.raises(InputError, match="curves"):
        allocation_check(curves, [8, 16, 32], [8, 8, 8])
