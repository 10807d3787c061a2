"""Datasets and loaders for a run, built from ``RunConfig.data``."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from ..data.factory import create_dataset
from ..data.readers import StreamBatches, StreamShards
from ..data.sampler import ResumableBatchSampler
from ..errors import AdatokError, ConfigError
from .config import RunConfig
from .distributed import DistInfo


def build_dataset(source: str, cfg, labelled: bool, train: bool, transform=None):
    """The dataset of ``source`` with the run's ``DataConfig`` (``adatok.data.create_dataset``);
    ``transform`` replaces the image transform (classification with timm's transforms)."""
    return create_dataset(source, cfg.image_size, labelled=labelled, train=train, format=cfg.format, crop=cfg.crop,
                          flip=cfg.flip, scale=cfg.scale, cache=cfg.cache, transform=transform)


def build_loader(cfg: RunConfig, labelled: bool, info: DistInfo, start: int, transform=None) -> DataLoader:
    dataset = build_dataset(cfg.data.train, cfg.data, labelled, train=True, transform=transform)
    workers = cfg.data.workers
    if isinstance(dataset, StreamShards):  # streamed shards: the position bookkeeping is StreamBatches'
        if cfg.data.repeated_aug > 1:
            raise ConfigError("data.repeated_aug needs random access to the images: use local .tar shards or a "
                              "folder, not a stream (pipe:, .tar.gz)")
        batches = StreamBatches(dataset, cfg.train.batch_size, seed=cfg.train.seed, rank=info.rank,
                                world_size=info.world_size, start=start, repeat=cfg.data.repeat,
                                buffer=cfg.data.shuffle_buffer)
        return DataLoader(batches, batch_size=None, num_workers=workers, pin_memory=info.device.type == "cuda",
                          persistent_workers=workers > 0, prefetch_factor=2 if workers > 0 else None)
    sampler = ResumableBatchSampler(len(dataset), cfg.train.batch_size, seed=cfg.train.seed, rank=info.rank,
                                    world_size=info.world_size, start=start, repeat=cfg.data.repeat,
                                    repeated_aug=cfg.data.repeated_aug)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=info.device.type == "cuda",
                      persistent_workers=workers > 0, prefetch_factor=2 if workers > 0 else None)


def build_eval_images(cfg: RunConfig, labelled: bool) -> torch.Tensor | None:
    """A fixed batch for sample grids: the first images of ``data.heldout`` (else of the training
    data), with the evaluation transform (center crop); for a token file, class labels spread over
    it (the generator task samples them)."""
    if not cfg.data.num_samples:
        return None
    if cfg.data.train.endswith((".safetensors", ".npz")):  # token data: the class labels to generate
        from ..data.readers import TokenDataset

        return TokenDataset(cfg.data.train).spread_labels(cfg.data.num_samples)
    dataset = build_dataset(cfg.data.heldout or cfg.data.train, cfg.data, labelled=False, train=False)
    n = min(cfg.data.num_samples, len(dataset))
    if isinstance(dataset, StreamShards):  # the first n samples of the stream, in file order
        firsts = zip(range(n), dataset.epoch(0, 0, shuffle=False, buffer=1))
        return torch.stack([dataset.decode(sample, None)["image"] for _, sample in firsts])
    return torch.stack([dataset[i]["image"] for i in range(n)])


def one_line_worker_errors(batches):
    """Iterate a DataLoader's batches; an adatok error raised in a loader worker process (e.g.
    "none of its N images could be read") reaches the caller as that error's one line, not as
    DataLoader's "Caught ... in DataLoader worker process 0" with the worker's traceback."""
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as e:
            message = _worker_error_line(e)
            if message is None:
                raise
            raise AdatokError(message) from None
        yield batch


def _worker_error_line(error: Exception) -> str | None:
    """The original one-line message of an adatok error re-raised from a worker, else None."""
    text = str(error)
    if "DataLoader worker process" not in text.split("\n", 1)[0]:
        return None
    for line in reversed(text.strip().splitlines()):
        head, sep, message = line.partition(": ")
        if sep and head.startswith("adatok.") and head.endswith("Error") and " " not in head:
            return message.strip()
    return None
