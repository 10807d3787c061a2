"""A batch sampler whose position is part of the training state.

Each epoch is a seeded permutation of the dataset; rank ``r`` of ``W`` takes every ``W``-th entry,
so the union of the ranks' batches at a step is exactly the batch one process with ``W`` times the
batch size would see. Every item is ``(index, seed)``: the per-sample augmentation seed is a hash of
(run seed, epoch, position in the permutation), so what a sample looks like depends on neither the
world size nor DataLoader workers. Resuming at a position reproduces the stream exactly.
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

    ``batches_per_epoch = (length // world_size) // batch_size`` (incomplete batches are dropped,
    so every rank does the same number of steps).
    """

    def __init__(self, length: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, start: int = 0):
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.rank, self.world_size, self.shuffle, self.start = rank, world_size, shuffle, start
        self.batches_per_epoch = (length // world_size) // batch_size
        if self.batches_per_epoch < 1:
            raise ConfigError(
                f"the dataset has {length} images: too few for batch size {batch_size} on {world_size} "
                "process(es); add images or lower train.batch_size"
            )

    def permutation(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.length)
        return torch.randperm(self.length, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))

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
