"""A batch sampler whose position is part of the training state.

Each epoch is a seeded permutation of the dataset; rank ``r`` of ``W`` takes every ``W``-th entry,
so the union of the ranks' batches at a step is exactly the batch one process with ``W`` times the
batch size would see. Every item is ``(index, seed)``: the per-sample augmentation seed is a hash of
(run seed, epoch, position in the permutation), so what a sample looks like depends on neither the
world size nor DataLoader workers. Resuming at a position reproduces the stream exactly.

Repeated augmentation (``repeated_aug=k``; DeiT's recipe, Touvron et al., 2021, Table 9, after
Hoffer et al., 2020 and Berman et al., 2019): each epoch's order puts every drawn image ``k`` times
in a row, keeping the epoch's length — so an epoch shows ``1/k`` of the images, each ``k`` times,
and since consecutive positions go to consecutive ranks, the ``k`` views of an image are seen by
``k`` different ranks in the same step (with ``W >= k``), each with its own augmentation seed.
"""

from __future__ import annotations

import hashlib
from typing import Iterator

import torch

from ..errors import ConfigError


def sample_seed(seed: int, epoch: int, position: int) -> int:
    digest = hashlib.blake2b(f"{seed}/{epoch}/{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # non-negative int63


class ResumableBatchSampler:
    """Infinite stream of per-rank batches of ``(index, seed)``, starting at batch ``start``.

    ``batches_per_epoch = (length * repeat // world_size) // batch_size`` (incomplete batches are
    dropped, so every rank does the same number of steps). ``repeat`` shows each image that many
    times per epoch, each time with its own augmentation seed (another random crop): for pools of a
    few dozen photos, whose batches could otherwise not exceed the pool. ``repeated_aug`` (see the
    module doc) repeats each drawn image that many times in a row without lengthening the epoch.
    """

    def __init__(self, length: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, start: int = 0, repeat: int = 1, repeated_aug: int = 1):
        if repeat < 1:
            raise ConfigError(f"data.repeat must be a whole number >= 1, got {repeat}")
        if repeated_aug < 1:
            raise ConfigError(f"data.repeated_aug must be a whole number >= 1, got {repeated_aug}")
        self.length, self.batch_size, self.seed, self.repeat = length, batch_size, seed, repeat
        self.repeated_aug = repeated_aug
        self.rank, self.world_size, self.shuffle, self.start = rank, world_size, shuffle, start
        self.batches_per_epoch = (length * repeat // world_size) // batch_size
        if self.batches_per_epoch < 1:
            raise ConfigError(
                f"the dataset has {length} images (x{repeat} per epoch): too few for batch size {batch_size} on "
                f"{world_size} process(es); add images, raise data.repeat or lower train.batch_size"
            )

    def permutation(self, epoch: int) -> torch.Tensor:
        """The epoch's order of dataset indices (each one ``repeat`` times; with ``repeated_aug=k``
        each drawn index ``k`` times in a row, cut to the same length)."""
        views = self.length * self.repeat
        if not self.shuffle:
            order = torch.arange(views) % self.length
        else:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            order = torch.randperm(views, generator=gen) % self.length
        if self.repeated_aug > 1:
            order = order.repeat_interleave(self.repeated_aug)[:views]
        return order

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        position = self.start
        while True:
            epoch, batch = divmod(position, self.batches_per_epoch)
            perm = self.permutation(epoch).tolist()
            for b in range(batch, self.batches_per_epoch):
                first = (b * self.batch_size) * self.world_size + self.rank
                slots = range(first, first + self.batch_size * self.world_size, self.world_size)
                yield [(perm[p], sample_seed(self.seed, epoch, p)) for p in slots]
                position += 1

    def __len__(self) -> int:  # DataLoader asks; the stream is infinite in practice
        return 2**62
