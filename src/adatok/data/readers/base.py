"""The item protocol and the bad-sample policy every image dataset (reader) shares.

``dataset[(index, seed)]`` for training — augmentation is a pure function of the sample and its
seed (see :mod:`adatok.data.transforms`) — or ``dataset[index]`` for evaluation (center crop, no
flip). Each item is a dict::

    {"image": float32 3 x S x S in [0, 1], "label": int (-1 if unlabelled), "index": int}

Bad samples: a file that cannot be decoded is reported **once** (one warning line on the
``adatok.data`` logger, naming the file and the problem) and remembered in ``bad_files``;
the sample is then replaced by the next readable index (``index + 1``, wrapping around) with
the **same seed**, so batches keep their size and runs stay reproducible. ``"index"`` is the
index actually returned. Each process (each DataLoader worker) keeps its own record, so a
bad file is reported at most once per process.
"""

from __future__ import annotations

import logging
import operator

import torch
from PIL import Image
from torch.utils.data import Dataset

from ...errors import AdatokError, ImageLoadError, InputError
from ..transforms import ImageTransform

logger = logging.getLogger("adatok.data")


class SampleDataset(Dataset):
    """The item protocol and the bad-sample policy; subclasses implement ``_load``."""

    def __init__(self, transform: ImageTransform, cache_prepared: bool = False):
        if not callable(getattr(transform, "apply", None)) or not callable(
                getattr(transform, "prepare", None)):
            raise InputError(f"transform must be an adatok ImageTransform, got {type(transform).__name__}")
        self.transform = transform
        self.cache_prepared = bool(cache_prepared)
        #: Unreadable samples met so far in this process: name -> one-line problem.
        self.bad_files: dict[str, str] = {}
        self._bad_indices: set[int] = set()
        self._prepared: dict[int, tuple[Image.Image, int]] = {}

    def _load(self, index: int) -> tuple[Image.Image, int]:  # pragma: no cover - abstract
        """Decode sample ``index``: ``(PIL image, label)``; ImageLoadError if unreadable."""
        raise NotImplementedError

    def _describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, item) -> dict:
        index, seed = _parse_item(item, len(self))
        n = len(self)
        for step in range(n):
            j = (index + step) % n
            if j in self._bad_indices:
                continue
            try:
                prepared, label = self._prepared_sample(j)
            except ImageLoadError as err:
                self._mark_bad(j, err)
                continue
            return {"image": self.transform.apply(prepared, seed), "label": label, "index": j}
        first = next(iter(self.bad_files.items()), ("?", "?"))
        raise AdatokError(f"{self._describe()}: none of its {n} images could be read "
                          f"(e.g. {first[0]}: {first[1]})")

    def _prepared_sample(self, index: int) -> tuple[Image.Image, int]:
        hit = self._prepared.get(index)
        if hit is not None:
            return hit
        image, label = self._load(index)
        sample = (self.transform.prepare(image), label)
        if self.cache_prepared:
            self._prepared[index] = sample
        return sample

    def _mark_bad(self, index: int, err: ImageLoadError) -> None:
        self._bad_indices.add(index)
        if err.path not in self.bad_files:
            self.bad_files[err.path] = err.problem
            logger.warning("skipping unreadable image %s (sample %d is replaced by the next "
                           "readable one)", err, index)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_prepared"] = {}  # a cache, not data: each worker builds its own
        return state


def _parse_item(item, n: int) -> tuple[int, int | None]:
    """``(index, seed)`` or ``index`` -> ``(index in [0, n), seed or None)``."""
    if isinstance(item, (tuple, list)) and len(item) == 2:
        index, seed = item
    else:
        index, seed = item, None
    if torch.is_tensor(index):
        index = index.item()
    if torch.is_tensor(seed):
        seed = seed.item()
    try:
        index = operator.index(index)
        seed = None if seed is None else operator.index(seed)
    except TypeError:
        raise InputError(f"dataset items are an int index or an (index, seed) pair of ints, "
                         f"got {item!r}") from None
    if not -n <= index < n:
        raise IndexError(f"index {index} is out of range for a dataset of {n} samples")
    return index % n, seed
