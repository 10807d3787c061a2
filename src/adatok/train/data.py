"""Datasets and loaders for a run, built from ``RunConfig.data``."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from ..data.factory import create_dataset
from ..data.sampler import ResumableBatchSampler
from .config import RunConfig
from .distributed import DistInfo


def build_dataset(source: str, cfg, labelled: bool, train: bool):
    """The dataset of ``source`` with the run's ``DataConfig`` (``adatok.data.create_dataset``)."""
    return create_dataset(source, cfg.image_size, labelled=labelled, train=train, format=cfg.format, crop=cfg.crop,
                          flip=cfg.flip, scale=cfg.scale, cache=cfg.cache)


def build_loader(cfg: RunConfig, labelled: bool, info: DistInfo, start: int) -> DataLoader:
    dataset = build_dataset(cfg.data.train, cfg.data, labelled, train=True)
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
        from ..data.readers import TokenDataset

        return TokenDataset(cfg.data.train).spread_labels(cfg.data.num_samples)
    dataset = build_dataset(cfg.data.heldout or cfg.data.train, cfg.data, labelled=False, train=False)
    n = min(cfg.data.num_samples, len(dataset))
    return torch.stack([dataset[i]["image"] for i in range(n)])
