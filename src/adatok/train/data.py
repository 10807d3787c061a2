"""Datasets and loaders for a run, built from ``RunConfig.data``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..data.sampler import ResumableBatchSampler
from ..errors import AdatokError, ConfigError
from .config import RunConfig
from .distributed import DistInfo


def _is_shards(source: str) -> bool:
    p = Path(source)
    return ".tar" in source or "{" in source or (p.is_dir() and any(p.glob("*.tar")))


def build_dataset(source: str, cfg, labelled: bool, train: bool, transform=None):
    from ..data.datasets import ImageDataset, ShardDataset
    from ..data.transforms import ImageTransform

    if not source:
        raise ConfigError("no training data: set data.train=FOLDER (images, ImageFolder tree, or shards)")
    if source.endswith((".safetensors", ".npz")):  # a token file (generator training)
        from ..data.tokens import TokenDataset

        return TokenDataset(source)
    if transform is None:  # else the task's own (classification with timm's transforms)
        transform = ImageTransform(cfg.image_size, crop=cfg.crop if train else "center", flip=cfg.flip and train,
                                   scale=tuple(cfg.scale))
    fmt = cfg.format
    if fmt == "auto":
        fmt = "shards" if _is_shards(source) else ("imagefolder" if labelled else "folder")
    if fmt == "shards":
        shards = ShardDataset(source, transform, cache_prepared=cfg.cache)
        if labelled and not shards.has_labels:
            raise ConfigError(f"{source}: these shards carry no .cls labels and this task needs them — write them "
                              "from an ImageFolder tree: adatok data shard SRC DST --labelled")
        return shards
    if labelled and fmt != "imagefolder":
        raise ConfigError(f"this task needs labels: data.format must be imagefolder or shards, got {fmt}")
    return ImageDataset(source, transform, labelled=fmt == "imagefolder", cache_prepared=cfg.cache)


def build_loader(cfg: RunConfig, labelled: bool, info: DistInfo, start: int, transform=None) -> DataLoader:
    dataset = build_dataset(cfg.data.train, cfg.data, labelled, train=True, transform=transform)
    sampler = ResumableBatchSampler(len(dataset), cfg.train.batch_size, seed=cfg.train.seed, rank=info.rank,
                                    world_size=info.world_size, start=start, repeat=cfg.data.repeat)
    workers = cfg.data.workers
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=info.device.type == "cuda",
                      persistent_workers=workers > 0, prefetch_factor=2 if workers > 0 else None)


def build_eval_images(cfg: RunConfig, labelled: bool) -> torch.Tensor | None:
    """A fixed batch for sample grids: the first images of ``data.heldout`` (else of the training
    data), with the evaluation transform (center crop); for a token file, class labels spread over
    it (the generator task samples them)."""
    if not cfg.data.num_samples:
        return None
    if cfg.data.train.endswith((".safetensors", ".npz")):  # token data: the class labels to generate
        from ..data.tokens import TokenDataset

        return TokenDataset(cfg.data.train).spread_labels(cfg.data.num_samples)
    dataset = build_dataset(cfg.data.heldout or cfg.data.train, cfg.data, labelled=False, train=False)
    n = min(cfg.data.num_samples, len(dataset))
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
