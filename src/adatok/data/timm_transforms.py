"""timm's own image transforms (``timm.data.create_transform``) as seeded adatok transforms.

The classification task and ``adatok classify`` feed timm models the way timm's recipes do: the
model's pretrained cfg (``resolve_data_config``: resize by ``crop_pct``, interpolation, mean/std)
for evaluation and, for training, timm's augmentation (RandAugment ``auto_augment``, random
erasing ``re_prob``, colour jitter, ...), the DeiT recipe's (Touvron et al., 2021, §6 / Table 9).

timm's transforms draw from the global RNGs (``random``, NumPy, torch). To keep adatok's rule that
augmentation is a pure function of the sample and its seed (which is what makes resume exact,
see ``adatok/data/transforms.py``), each call seeds all three from the sample's seed and restores
their previous states afterwards, so the caller's random streams are untouched.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError


@contextlib.contextmanager
def seeded_global_rng(seed: int):
    """Run a block with ``random``, NumPy and torch (CPU) seeded from ``seed``; restore them after."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed % 2**63)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def _as_rgb8(image: Image.Image) -> Image.Image:
    if image.mode == "F":  # adatok's 16-bit / float images: [0, 1] floats
        return Image.fromarray((np.clip(np.asarray(image), 0, 1) * 255).round().astype(np.uint8)).convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


@dataclass(frozen=True)
class TimmTransform:
    """PIL image + seed -> the normalised ``3 x S x S`` tensor timm's transform makes.

    ``data_config``: what ``timm.data.resolve_data_config`` returns (``input_size``,
    ``interpolation``, ``mean``, ``std``, ``crop_pct``, ``crop_mode``). ``augment``: training
    keywords of ``timm.data.create_transform`` (``auto_augment="rand-m9-mstd0.5-inc1"``,
    ``re_prob=0.25``, ``color_jitter``, ``scale``, ...). ``seed=None`` is the evaluation transform.
    """

    data_config: dict
    augment: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from timm.data import create_transform

        try:
            train = create_transform(**self.data_config, is_training=True, **self.augment)
        except TypeError as e:
            raise ConfigError(f"options.augment: {e} (keywords of timm.data.create_transform)") from None
        object.__setattr__(self, "_train", train)
        object.__setattr__(self, "_eval", create_transform(**self.data_config, is_training=False))

    @property
    def size(self) -> int:
        return int(self.data_config["input_size"][-1])

    @property
    def deterministic(self) -> bool:
        return False

    def __call__(self, image: Image.Image, seed: int | None = None) -> torch.Tensor:
        return self.apply(self.prepare(image), seed)

    def prepare(self, image: Image.Image) -> Image.Image:
        """Seed-independent: RGB, 8 bits (what timm's PIL transforms read)."""
        return _as_rgb8(image)

    def apply(self, prepared: Image.Image, seed: int | None = None) -> torch.Tensor:
        if seed is None:
            return self._eval(prepared)
        with seeded_global_rng(int(seed)):
            return self._train(prepared)


def eval_data_config(model: torch.nn.Module, image_size: int | None = None) -> dict:
    """timm's evaluation settings for ``model`` (its pretrained cfg), at ``image_size`` if given."""
    from timm.data import resolve_data_config

    cfg = dict(resolve_data_config(model=model))
    if image_size:
        cfg["input_size"] = (3, int(image_size), int(image_size))
    return cfg
