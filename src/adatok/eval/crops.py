"""The held-out evaluation set: deterministic multi-scale crops of a folder of photos.

A handful of held-out photos is too few images for a stable mean (and for a rank correlation of
length against complexity), so every photo gives a grid of square crops at several scales: the
largest centred square of the photo (scale 1), then that square cut into an n x n grid for
scale 1/n. With the default scales (1, 1/2, 1/4) a photo gives 1 + 4 + 16 = 21 crops, so the 8
held-out photos of ``adatok data photos`` give 168 images. Crops are resized to ``size`` with
Pillow's bicubic filter (antialiased), as the training crops are. The set is a pure function of the
files: no randomness, sorted by file name, crops in row-major order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def multiscale_crops(image: Image.Image, size: int, scales: Sequence[float] = (1.0, 0.5, 0.25)) -> list[Image.Image]:
    """Square crops of ``image`` at each scale (a fraction 1/n of the centred square's side, n x n
    grid of crops), each resized to ``size`` x ``size``."""
    image = image.convert("RGB")
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    out = []
    for s in scales:
        n = round(1 / s)
        if n < 1 or abs(n * s - 1) > 1e-6:
            raise InputError(f"crop scale {s} is not 1/n for a whole n (use e.g. 1, 0.5, 0.25)")
        c = side // n
        if c < 1:
            raise InputError(f"a {w}x{h} image is too small for crops at scale {s}")
        for i in range(n):
            for j in range(n):
                box = (left + j * c, top + i * c, left + (j + 1) * c, top + (i + 1) * c)
                out.append(image.crop(box).resize((size, size), Image.BICUBIC))
    return out


def heldout_crops(folder, size: int, scales: Sequence[float] = (1.0, 0.5, 0.25)) -> tuple[torch.Tensor, list[str]]:
    """All crops of every image file in ``folder`` (sorted by name) as a float tensor in [0, 1]
    (N x 3 x size x size) and a name per crop (``photo@scale#index``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of held-out photos")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    arrays, names = [], []
    for path in files:
        try:
            with Image.open(path) as im:
                crops = multiscale_crops(im, size, scales)
        except OSError as e:
            raise InputError(f"{path}: not a readable image ({e})") from e
        k = 0
        for s in scales:
            for _ in range(round(1 / s) ** 2):
                names.append(f"{path.stem}@{s:g}#{k}")
                k += 1
        arrays.extend(np.asarray(c) for c in crops)
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255)
    return x, names
