"""Run configuration: YAML recipe + ``key=value`` overrides -> frozen dataclasses.

Architecture lives in model presets; a recipe only names the preset (and any size overrides),
the data, the optimisation and the task's loss options.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config_utils import config_from_dict, config_to_dict
from ..errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    train: str = ""  # image folder (recursive), ImageFolder tree, or shard pattern
    format: str = "auto"  # auto | folder | imagefolder | shards
    image_size: int = 256
    crop: str = "random"  # random | center | random_resized
    scale: tuple = (0.08, 1.0)  # area range of random_resized crops
    flip: bool = True
    workers: int = 2
    cache: bool = False  # keep each decoded (prepared) image in memory, per worker: for small pools on fast GPUs
    repeat: int = 1  # views of each image per epoch (own random crops): lets a small pool fill a large batch
    heldout: str = ""  # images for sample grids / evaluation (eval transform)
    num_samples: int = 8  # images in each sample grid


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-4
    betas: tuple = (0.9, 0.99)
    weight_decay: float = 1e-4
    eps: float = 1e-8
    warmup_steps: int = 0
    end_lr: float = 1e-5
    schedule: str = "cosine"  # cosine (linear warm-up, cosine to end_lr) | constant (after warm-up)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 32  # per process
    grad_accum: int = 1
    clip_grad: float = 1.0  # 0 = off
    ema_decay: float = 0.999  # 0 = no EMA; warm-up min(decay, (1 + t) / (10 + t)) as the official code
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16
    seed: int = 42
    log_every: int = 50
    ckpt_every: int = 1000
    sample_every: int = 1000
    nan_policy: str = "skip"  # skip the step (and stop after max_nan_skips in a row) | stop
    max_nan_skips: int = 10
    tensorboard: bool = True


@dataclass(frozen=True)
class RunConfig:
    task: str
    out: str = "runs/run"
    model: str = ""  # preset name, or a folder/file to start from
    model_overrides: dict = field(default_factory=dict)
    init_weights: str = ""  # weights loaded into the model before training (ours or official)
    teacher: str = ""  # preset/folder/file of a frozen teacher (TiTok stage 1, ALIT)
    teacher_weights: str = ""
    options: dict = field(default_factory=dict)  # the task's own options (loss weights, ...)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    disc_optim: OptimConfig = field(default_factory=OptimConfig)  # discriminator, for GAN tasks
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        t = self.train
        checks = [
            (t.steps >= 1, f"train.steps must be >= 1, got {t.steps}"),
            (t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}"),
            (t.grad_accum >= 1, f"train.grad_accum must be >= 1, got {t.grad_accum}"),
            (t.precision in ("auto", "fp32", "bf16", "fp16"), f"train.precision {t.precision!r}: use auto|fp32|bf16|fp16"),
            (t.nan_policy in ("skip", "stop"), f"train.nan_policy {t.nan_policy!r}: use skip|stop"),
            (0 <= t.ema_decay < 1, f"train.ema_decay must be in [0, 1), got {t.ema_decay}"),
            (self.data.format in ("auto", "folder", "imagefolder", "shards"), f"data.format {self.data.format!r}"),
            (self.optim.schedule in ("cosine", "constant"), f"optim.schedule {self.optim.schedule!r}: cosine|constant"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict:
        return config_to_dict(self)


@functools.lru_cache(maxsize=None)
def _yaml12_loader():
    """PyYAML's SafeLoader with YAML 1.2 booleans (built once, on first use: yaml is imported lazily)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                 list("tTfF"))
    return Loader


def yaml_load(text: str) -> Any:
    """``yaml.safe_load`` with YAML 1.2 booleans: only true/false are booleans. YAML 1.1 also reads
    on/off/yes/no as booleans, which turns ``halting: off`` (ALIT's rule named "off") into False."""
    import yaml

    return yaml.load(text, Loader=_yaml12_loader())


def parse_value(text: str) -> Any:
    """``key=value`` values are read as YAML scalars/lists (``1e-4``, ``true``, ``[0.9, 0.99]``)."""
    import yaml

    for number in (int, float):  # "2e-4" is a string to YAML 1.1, a number to everyone else
        try:
            return number(text)
        except ValueError:
            pass
    try:
        return yaml_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    raw = dict(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value (e.g. train.steps=100)")
        key, value = item.split("=", 1)
        node, parts = raw, key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        node[parts[-1]] = parse_value(value)
    return raw


def load_run_config(source: str | Path | dict, overrides: list[str] = ()) -> RunConfig:
    """A recipe (YAML path, shipped recipe name, or dict) with ``key=value`` overrides -> ``RunConfig``."""
    if isinstance(source, dict):
        raw = source
    else:
        import yaml

        from ..recipes import resolve_recipe

        path = resolve_recipe(source)  # a path, or a shipped recipe's name (adatok train --list)
        try:
            raw = yaml_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    raw = apply_overrides(raw, list(overrides))
    if "task" not in raw:
        raise ConfigError("the recipe names no task (task: titok_stage1 | titok_stage2 | ...)")
    return config_from_dict(RunConfig, raw)
