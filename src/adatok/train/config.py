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
    format: str = "auto"  # auto | folder | imagefolder | shards | stream (webdataset: pipe:, .tar.gz, URLs)
    image_size: int = 256
    crop: str = "random"  # random | center | random_resized
    scale: tuple = (0.08, 1.0)  # area range of random_resized crops
    flip: bool = True
    workers: int = 2
    cache: bool = False  # keep each decoded (prepared) image in memory, per worker: for small pools on fast GPUs
    repeat: int = 1  # views of each image per epoch (own random crops): lets a small pool fill a large batch
    repeated_aug: int = 1  # DeiT's repeated augmentation: each drawn image k times in a row (k ranks), same epoch length
    shuffle_buffer: int = 1000  # stream format: samples in the seeded shuffle buffer
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
    eval_every: int = 0  # held-out PSNR every N steps (0 = off): the crops of adatok.eval.crops of data.heldout
    eval_images: int = 0  # evaluate the first N of those crops (0 = all)
    keep_best: bool = False  # with eval_every: export the model of the best held-out PSNR to OUT/best


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
        validate(self)

    def to_dict(self) -> dict:
        return config_to_dict(self)


# ---------------------------------------------------------------------------------- validation
# Every field is checked when the recipe is parsed, so a bad value fails before any model is
# built (not after step 1, as ``train.ckpt_every=0`` did). Ranges: name -> (test, what it must be).
_POSITIVE, _NON_NEGATIVE = (lambda v: v >= 1, ">= 1"), (lambda v: v >= 0, ">= 0")
_RANGES = {
    "data.image_size": _POSITIVE,
    "data.crop": (lambda v: v in ("random", "center", "random_resized"), "random|center|random_resized"),
    "data.scale": (lambda v: len(v) == 2 and 0 < v[0] <= v[1] <= 1, "two area fractions 0 < min <= max <= 1"),
    "data.workers": _NON_NEGATIVE,
    "data.repeat": _POSITIVE,
    "data.repeated_aug": _POSITIVE,
    "data.num_samples": _NON_NEGATIVE,
    "data.format": (lambda v: v in ("auto", "folder", "imagefolder", "shards", "stream"),
                    "auto|folder|imagefolder|shards|stream"),
    "data.shuffle_buffer": _POSITIVE,
    "optim.lr": (lambda v: v >= 0, ">= 0"),
    "optim.betas": (lambda v: len(v) == 2 and all(0 <= b < 1 for b in v), "two numbers in [0, 1), e.g. [0.9, 0.99]"),
    "optim.weight_decay": _NON_NEGATIVE,
    "optim.eps": (lambda v: v > 0, "> 0"),
    "optim.warmup_steps": _NON_NEGATIVE,
    "optim.end_lr": _NON_NEGATIVE,
    "optim.schedule": (lambda v: v in ("cosine", "constant"), "cosine|constant"),
    "train.steps": _POSITIVE,
    "train.batch_size": _POSITIVE,
    "train.grad_accum": _POSITIVE,
    "train.clip_grad": (lambda v: v >= 0, ">= 0 (0 = off)"),
    "train.ema_decay": (lambda v: 0 <= v < 1, "in [0, 1) (0 = no EMA)"),
    "train.precision": (lambda v: v in ("auto", "fp32", "bf16", "fp16"), "auto|fp32|bf16|fp16"),
    "train.log_every": _POSITIVE,
    "train.ckpt_every": _POSITIVE,
    "train.sample_every": (lambda v: v >= 0, ">= 0 (0 = no sample grids)"),
    "train.nan_policy": (lambda v: v in ("skip", "stop"), "skip|stop"),
    "train.max_nan_skips": _NON_NEGATIVE,
    "train.eval_every": (lambda v: v >= 0, ">= 0 (0 = no held-out evaluation)"),
    "train.eval_images": (lambda v: v >= 0, ">= 0 (0 = every held-out crop)"),
}
_SECTIONS = {"data": DataConfig, "optim": OptimConfig, "disc_optim": OptimConfig, "train": TrainConfig}


def validate(cfg: "RunConfig") -> None:
    """Types and ranges of every field of a run config; a ``ConfigError`` naming the first bad one."""
    for name, cls in _SECTIONS.items():
        section = getattr(cfg, name)
        if not isinstance(section, cls):
            hint = f" — did you mean {name}.train={section}?" if name == "data" and isinstance(section, str) else ""
            raise ConfigError(f"{name}: expected a mapping of {name}.* fields (e.g. {name}.{dataclass_fields(cls)[0]}=...), "
                              f"got {section!r}{hint}")
        _check_fields(section, name)
        for key, (test, want) in _RANGES.items():
            prefix, _, field_name = key.partition(".")
            if prefix == ("optim" if name == "disc_optim" else name):
                value = getattr(section, field_name)
                if not test(value):
                    raise ConfigError(f"{name}.{field_name} must be {want}, got {value!r}")
    _check_fields(cfg, "", skip=set(_SECTIONS))
    if cfg.train.eval_every and not cfg.data.heldout:
        raise ConfigError("train.eval_every needs held-out images: data.heldout=FOLDER (photos the run does not "
                          "train on; their multi-scale crops are evaluated)")
    if cfg.train.keep_best and not cfg.train.eval_every:
        raise ConfigError("train.keep_best keeps the model of the best held-out PSNR: set train.eval_every too")


def dataclass_fields(cls) -> list[str]:
    import dataclasses

    return [f.name for f in dataclasses.fields(cls)]


def _check_fields(obj, prefix: str, skip: set = frozenset()) -> None:
    import dataclasses
    import math
    import typing

    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        if f.name in skip:
            continue
        hint, value = hints[f.name], getattr(obj, f.name)
        where = f"{prefix}.{f.name}" if prefix else f.name
        if hint is str and value is None:  # an empty YAML value: the field's "unset"
            object.__setattr__(obj, f.name, "")
            continue
        if hint is int and isinstance(value, float) and value.is_integer():  # 1e3 from key=value
            value = int(value)
            object.__setattr__(obj, f.name, value)
        if hint is bool:
            ok, want = isinstance(value, bool), "true or false"
        elif hint is int:
            ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif hint is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            want = "a number"
        elif hint is str:
            ok, want = isinstance(value, str), "a string"
        elif hint is dict:
            ok, want = isinstance(value, dict), "a mapping"
        elif hint is tuple:
            ok = isinstance(value, tuple) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
            want = "a list of numbers, e.g. [0.9, 0.99]"
        else:
            continue
        if not ok:
            raise ConfigError(f"{where}: expected {want}, got {value!r}")


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
