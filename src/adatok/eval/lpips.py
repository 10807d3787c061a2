"""LPIPS as an evaluation metric (Zhang et al., "The Unreasonable Effectiveness of Deep Features as
a Perceptual Metric", CVPR 2018; VGG16 with the v0.1 linear heads), from local files.

It is the network training already loads (``adatok.losses.perceptual.LPIPS``: the same files,
found the same way: explicit paths, ``$ADATOK_WEIGHTS_DIR``, the ``lpips`` package's heads, torch
hub's cache), run without gradients and averaged per image.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..losses.perceptual import LPIPS, WeightsNotFoundError

__all__ = ["LPIPS", "WeightsNotFoundError", "load_lpips", "lpips_distance"]


def load_lpips(vgg_path=None, heads_path=None, weights_dir=None, device=None) -> LPIPS:
    """The frozen LPIPS-VGG network; ``WeightsNotFoundError`` (one line: which files, where it
    looked) when a file is missing."""
    return LPIPS(vgg_path=vgg_path, heads_path=heads_path, weights_dir=weights_dir).to(device)


def lpips_distance(model: LPIPS, a: torch.Tensor, b: torch.Tensor, batch_size: Optional[int] = 32) -> torch.Tensor:
    """Per-image LPIPS of two ``B x 3 x H x W`` batches in [0, 1] -> float64 ``(B,)``."""
    device = next(model.buffers()).device
    out = []
    step = batch_size or len(a)
    with torch.inference_mode():
        for i in range(0, len(a), step):
            out.append(model(a[i:i + step].to(device).float(), b[i:i + step].to(device).float()).double().cpu())
    return torch.cat(out)
