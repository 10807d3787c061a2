"""The task interface: build the models, say what trains with which optimizer, compute losses.

A training step may have several *phases* (a generator phase and a discriminator phase for GAN
tasks); each phase's loss is backpropagated before the next phase runs, and every optimizer steps
once after all phases (and all gradient-accumulation micro-batches) of the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from ...config_utils import config_from_dict
from ...errors import ConfigError
from ..config import RunConfig
from ..schedule import adamw

TASKS: dict[str, type["Task"]] = {}


def register_task(cls):
    TASKS[cls.name] = cls
    return cls


def get_task(name: str) -> type["Task"]:
    from . import alit, classify, generator, prefix, titok, vqgan  # noqa: F401  (registration)

    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; tasks: {sorted(TASKS)}")
    return TASKS[name]


@dataclass
class Phase:
    """One backward pass of a step: ``loss`` trains the module behind optimizer ``optimizer``."""

    optimizer: str
    loss: torch.Tensor
    logs: dict


class Task:
    name = ""
    labelled = False  # needs class labels from the data
    transform = None  # the training images' transform, when the task has its own (else from data.*)
    options_cls: type = None  # a dataclass of the task's options (loss weights, ...)
    reconstructs = False  # the last row of ``samples`` reconstructs its input images (train.eval_every)

    def __init__(self, run: RunConfig, device: torch.device):
        self.run = run
        self.device = device
        self.opts = config_from_dict(self.options_cls, run.options) if self.options_cls else None

    # -- what the loop needs -----------------------------------------------------------------
    def trainable(self) -> dict[str, nn.Module]:
        """Modules with trainable parameters, by optimizer name (``"model"`` first; it gets EMA)."""
        raise NotImplementedError

    def state_modules(self) -> dict[str, nn.Module]:
        """Modules whose state a checkpoint holds (default: the trainables). Add modules with
        buffers that change during training (e.g. the GAN loss's EMA anchors)."""
        return self.trainable()

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        mods = self.trainable()
        opts = {"model": adamw(mods["model"], self.run.optim)}
        for name in mods:
            if name != "model":
                opts[name] = adamw(mods[name], self.run.disc_optim)
        return opts

    def phases(self, batch: dict, step: int, modules: dict[str, nn.Module]) -> Iterator[Phase]:
        """Yield the phases of one micro-batch. ``modules`` are the (possibly DDP-wrapped) trainables;
        ``self.trainable()`` gives the raw ones."""
        raise NotImplementedError

    @torch.no_grad()
    def samples(self, images: torch.Tensor, model: nn.Module) -> list[torch.Tensor]:
        """Rows of a sample grid (each ``B x 3 x H x W`` in [0, 1]), e.g. [originals, reconstructions]."""
        return [images]

    def save_export(self, model: nn.Module, path) -> None:
        """Save the final model (the EMA weights when EMA is on) in a loadable format."""
        from ...hub import save

        save(model, path)
