"""Training/eval image transforms that are pure functions of ``(image, seed)``.

Exact resume after a crash, and identical global batches under 1 or N DDP processes, need
augmentation that depends on nothing but the sample and its seed: never on the global RNG,
the DataLoader worker, or how many samples a process has seen. :class:`ImageTransform`
therefore draws every random number from ``torch.Generator().manual_seed(seed)``, a fresh
generator per call; ``seed=None`` is the deterministic evaluation path (center crop, no flip).

Crops (all end as a float32 ``3 x size x size`` tensor in [0, 1]):

* ``"center"`` — resize the shorter side to ``size`` (bicubic, antialiased), center crop.
  This is exactly :func:`adatok.data.load_image` (the TiTok evaluation transform).
* ``"random"`` — TiTok's training transform: resize the shorter side to ``size``, random
  ``size x size`` crop, random horizontal flip (``torchvision`` ``Resize`` + ``RandomCrop``
  + ``RandomHorizontalFlip`` on a PIL image).
* ``"random_resized"`` — ``RandomResizedCrop`` semantics (area fraction in ``scale``, log-
  uniform aspect ratio in ``ratio``, 10 tries, then a center fallback), then the flip. The
  crop box is resized straight from the source in one Pillow call (``resize(box=...)``):
  only the output pixels are computed, and the filter may use the pixels just outside the
  box instead of clamping at its edge.

The work is split in two: :meth:`ImageTransform.prepare` (seed-independent: colour mode and,
for ``"random"``/``"center"``, the shorter-side resize, which is most of the cost on large
photos) and :meth:`ImageTransform.apply` (the seeded crop and flip). A dataset may cache
prepared images (see ``cache_prepared`` in :mod:`adatok.data.readers`); the result is
bit-identical either way.

Random draws, in order: crop offsets (``randint`` row then column; for ``random_resized`` up
to 10 ``(area, log-ratio)`` pairs first), then one ``rand`` for the flip. Changing this order
changes every augmented sample, so treat it as part of the data format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from PIL import Image

from adatok.data.images import (
    _center_crop,
    _resize_shorter_side,
    _to_rgb_or_float,
    _to_tensor,
)
from adatok.errors import ConfigError, InputError

__all__ = ["CROPS", "ImageTransform"]

#: The crop modes :class:`ImageTransform` knows.
CROPS = ("random", "center", "random_resized")
_BICUBIC = Image.Resampling.BICUBIC


@dataclass(frozen=True)
class ImageTransform:
    """PIL image + seed -> float32 ``3 x size x size`` tensor in [0, 1] (see module doc).

    Args:
        size: output side in pixels.
        crop: ``"random"`` (TiTok training), ``"center"`` (evaluation) or
            ``"random_resized"`` (``RandomResizedCrop``).
        flip: random horizontal flip with probability 1/2 (not for ``"center"``).
        scale: ``random_resized`` only: range of the crop's fraction of the image area.
        ratio: ``random_resized`` only: range of the crop's aspect ratio (width / height).
    """

    size: int
    crop: str = "random"
    flip: bool = True
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 1:
            raise ConfigError(f"ImageTransform size must be a positive int, got {self.size!r}")
        if self.crop not in CROPS:
            raise ConfigError(f"ImageTransform crop must be one of {', '.join(CROPS)}; "
                              f"got {self.crop!r}")
        lo, hi = _pair(self.scale, "scale")
        if not 0.0 < lo <= hi <= 1.0:
            raise ConfigError(f"ImageTransform scale must satisfy 0 < min <= max <= 1, "
                              f"got {self.scale!r}")
        lo, hi = _pair(self.ratio, "ratio")
        if not 0.0 < lo <= hi:
            raise ConfigError(f"ImageTransform ratio must satisfy 0 < min <= max, got {self.ratio!r}")
        # Normalise lists from YAML to tuples so instances stay hashable and comparable.
        object.__setattr__(self, "scale", tuple(float(v) for v in self.scale))
        object.__setattr__(self, "ratio", tuple(float(v) for v in self.ratio))

    @property
    def deterministic(self) -> bool:
        """True when the output does not depend on the seed (``crop="center"``)."""
        return self.crop == "center"

    def __call__(self, image: Image.Image, seed: int | None = None) -> torch.Tensor:
        """Transform one image. ``seed=None``: center crop, no flip (evaluation)."""
        return self.apply(self.prepare(image), seed)

    def prepare(self, image: Image.Image) -> Image.Image:
        """The seed-independent first step: RGB/``F`` mode, and the shorter-side resize
        for ``"random"``/``"center"`` (``random_resized`` needs the full-resolution image)."""
        img = _as_rgb_or_float(image)
        if self.crop == "random_resized":
            return img
        return _resize_shorter_side(img, self.size)

    def apply(self, prepared: Image.Image, seed: int | None = None) -> torch.Tensor:
        """The seeded step on a :meth:`prepare`-d image: crop, resize if needed, flip."""
        img, size = prepared, self.size
        if seed is None or self.crop == "center":
            return _to_tensor(_center_crop(_resize_shorter_side(img, size), size))
        gen = torch.Generator().manual_seed(_check_seed(seed))
        if self.crop == "random":
            img = _resize_shorter_side(img, size)  # a no-op on a prepared image
            width, height = img.size
            top = _randint(gen, height - size + 1)
            left = _randint(gen, width - size + 1)
            out = img.crop((left, top, left + size, top + size))
        else:
            left, top, width, height = self.random_resized_box(img.size, gen)
            out = img.resize((size, size), _BICUBIC, box=(left, top, left + width, top + height))
        x = _to_tensor(out)
        if self.flip and torch.rand(1, generator=gen).item() < 0.5:
            x = x.flip(-1)
        return x

    # ------------------------------------------------------------------ crop parameters

    def random_resized_box(
        self, image_size: tuple[int, int], gen: torch.Generator
    ) -> tuple[int, int, int, int]:
        """``(left, top, width, height)`` of a ``RandomResizedCrop`` window, drawn from ``gen``."""
        width, height = image_size
        area = width * height
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            u_area, u_ratio = torch.rand(2, generator=gen, dtype=torch.float64).tolist()
            target = area * (self.scale[0] + (self.scale[1] - self.scale[0]) * u_area)
            aspect = math.exp(log_lo + (log_hi - log_lo) * u_ratio)
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = _randint(gen, height - h + 1)
                left = _randint(gen, width - w + 1)
                return left, top, w, h
        # Fallback, as torchvision: the whole image, clipped to the allowed aspect range.
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            w, h = int(round(height * self.ratio[1])), height
        else:
            w, h = width, height
        return (width - w) // 2, (height - h) // 2, w, h


# ----------------------------------------------------------------------------- helpers


def _pair(value, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"ImageTransform {name} must be a pair of numbers, got {value!r}") from None
    return lo, hi


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not hasattr(seed, "__index__"):
        raise InputError(f"seed must be an int or None, got {type(seed).__name__} {seed!r}")
    # Generator.manual_seed takes 64 bits; fold any Python int into that range.
    return int(seed) % (1 << 64)


def _randint(gen: torch.Generator, high: int) -> int:
    """Uniform int in [0, high)."""
    return int(torch.randint(0, high, (1,), generator=gen).item())


def _as_rgb_or_float(image) -> Image.Image:
    if not isinstance(image, Image.Image):
        raise InputError(f"ImageTransform expects a PIL image, got {type(image).__name__}")
    if image.mode in ("RGB", "F"):
        return image
    return _to_rgb_or_float(image, getattr(image, "filename", "") or "<image>")
