"""Image classification with a timm ViT (the setting of token-reduction papers: DeiT on ImageNet).

The model is ``timm.create_model(model, num_classes=..., img_size=...)`` with random weights, or
weights from a local file (``init_weights``; the classifier head is re-initialised when the class
count differs). Token reduction: ``options.reduction`` names a method of ``adatok.reduction``
(tome | evit | imagepiece) applied to the timm model with ``options.reduction_settings``; pruning
keep rates warm up as EViT's (``options.keep_rate_warmup: [start_step, steps]``: 1 until
``start_step``, then a half cosine to the configured rate). Exported as ``model.safetensors`` +
``config.json`` naming the timm model, the reduction and the class names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch.nn.functional as F
from timm.loss import SoftTargetCrossEntropy

from ...errors import ConfigError
from ...hub import read_state_dict
from .base import Phase, Task, register_task


@dataclass(frozen=True)
class ClassifyOptions:
    num_classes: int = 0  # 0 = the number of class folders in the data
    label_smoothing: float = 0.1
    drop_path: float = 0.0
    reduction: str = ""  # "" | tome | evit | imagepiece (adatok.reduction)
    reduction_settings: dict = field(default_factory=dict)  # the method's config fields
    keep_rate_warmup: tuple = (0, 0)  # (start step, steps) of the pruning keep-rate warm-up
    pretrained: Any = False  # true: timm's pretrained weights; a path: a local timm checkpoint (head re-initialised, as timm fine-tunes)
    transform: str = "adatok"  # adatok: data.crop/flip, [0, 1] inputs | timm: timm's create_transform, normalised
    augment: dict = field(default_factory=dict)  # transform=timm: create_transform training keywords
    mixup: float = 0.0  # Mixup alpha (timm.data.Mixup; DeiT: 0.8); with cutmix, soft-target cross-entropy
    cutmix: float = 0.0  # CutMix alpha (DeiT: 1.0)
    mixup_switch_prob: float = 0.5  # chance of CutMix instead of Mixup when both are on (DeiT: 0.5)


@register_task
class ClassifyTask(Task):
    name = "classify"
    labelled = True
    options_cls = ClassifyOptions

    def __init__(self, run, device):
        super().__init__(run, device)
        import timm

        from ..data import build_dataset

        names = getattr(build_dataset(run.data.train, run.data, True, train=False), "classes", [])
        if not names and not self.opts.num_classes:
            raise ConfigError(f"{run.data.train}: shards carry class ids, not the class count: "
                              "set options.num_classes")
        classes = self.opts.num_classes or len(names)
        self.class_names = list(names) if len(names) == classes else []
        if run.model not in timm.list_models():
            raise ConfigError(f"unknown timm model {run.model!r} (timm.list_models() lists them)")
        self.num_classes = classes
        self.model = timm.create_model(run.model, num_classes=classes, img_size=run.data.image_size,
                                       drop_path_rate=self.opts.drop_path, **_pretrained_args(self.opts.pretrained),
                                       **run.model_overrides).to(device)
        self.data_config = _data_config(self.model, run.data.image_size, self.opts.transform)
        if self.opts.transform == "timm":
            from ...data.timm_transforms import TimmTransform

            self.transform = TimmTransform(self.data_config, dict(self.opts.augment))
        elif self.opts.augment:
            raise ConfigError("options.augment needs options.transform=timm (timm's create_transform)")
        self.mixup = None
        if self.opts.mixup > 0 or self.opts.cutmix > 0:
            from timm.data import Mixup

            self.mixup = Mixup(mixup_alpha=self.opts.mixup, cutmix_alpha=self.opts.cutmix,
                               switch_prob=self.opts.mixup_switch_prob, label_smoothing=self.opts.label_smoothing,
                               num_classes=classes)
        if run.init_weights:
            state, _ = read_state_dict(Path(run.init_weights))
            head = self.model.get_classifier()
            state = {k: v for k, v in state.items()
                     if not (k.startswith("head.") and v.shape[0] != head.out_features)}
            missing, unexpected = self.model.load_state_dict(state, strict=False)
            if unexpected or any(not k.startswith("head.") for k in missing):
                raise ConfigError(f"{run.init_weights}: does not fit {run.model} (missing {missing[:4]}, unexpected {unexpected[:4]})")
        if self.opts.reduction:  # after init_weights: a plain checkpoint loads before the LCB stem replaces patchify
            from ... import reduction

            reduction.apply(self.model, self.opts.reduction, **self.opts.reduction_settings)

    def trainable(self):
        return {"model": self.model}

    def phases(self, batch, step, modules) -> Iterator[Phase]:
        if self.opts.reduction and self.opts.reduction != "tome":
            from ...reduction import ops, set_keep_rate, settings_of

            target = settings_of(self.model).get("keep_rate", 1.0)
            set_keep_rate(self.model, ops.keep_rate_warmup(step, target, *self.opts.keep_rate_warmup))
        images, labels = batch["image"], batch["label"]
        if self.mixup is not None:  # timm's Mixup/CutMix, seeded by the step (exact resume)
            from ...data.timm_transforms import seeded_global_rng

            with seeded_global_rng(self.run.train.seed * 1_000_003 + step):
                images, targets = self.mixup(images, labels)
            logits = modules["model"](images)
            loss = SoftTargetCrossEntropy()(logits.float(), targets)  # smoothing is in the mixed targets
        else:
            logits = modules["model"](images)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.opts.label_smoothing)
        accuracy = (logits.argmax(-1) == labels).float().mean()
        yield Phase("model", loss, {"accuracy": accuracy})

    def save_export(self, model, path: Path) -> None:
        from safetensors.torch import save_file

        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))
        meta = {"format": "timm", "model": self.run.model, "num_classes": self.num_classes,
                "img_size": self.run.data.image_size, "model_overrides": self.run.model_overrides,
                "classes": self.class_names,
                **timm_local_dir_config(self.run.model, self.num_classes, self.data_config,
                                        {"img_size": self.run.data.image_size, **self.run.model_overrides},
                                        self.class_names)}
        if self.opts.reduction:
            from ...reduction import settings_of

            meta["reduction"] = settings_of(self.model)
        (path / "config.json").write_text(json.dumps(meta, indent=2) + "\n")


def _pretrained_args(pretrained) -> dict:
    """``options.pretrained`` -> ``timm.create_model`` keywords: False, True (timm's weights, from
    the hub or its cache), or a local timm checkpoint (a file, or a folder timm wrote)."""
    if pretrained in (False, None, ""):
        return {"pretrained": False}
    if pretrained is True:
        return {"pretrained": True}
    path = Path(str(pretrained))
    if not path.exists():
        raise ConfigError(f"options.pretrained={pretrained}: no such checkpoint file or folder (or use true/false)")
    return {"pretrained": True, "pretrained_cfg_overlay": {"file": str(path), "source": "file"}}


def _data_config(model, image_size: int, transform: str) -> dict:
    """timm's data config of ``model`` at ``image_size``; with adatok's transform the inputs are
    [0, 1] images (mean 0, std 1), shorter side resized to the size and center-cropped."""
    from ...data.timm_transforms import eval_data_config

    if transform not in ("adatok", "timm"):
        raise ConfigError(f"options.transform {transform!r}: adatok | timm")
    cfg = eval_data_config(model, image_size)
    if transform == "adatok":
        cfg.update(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_pct=1.0, interpolation="bicubic",
                   crop_mode="center")
    return cfg


def timm_local_dir_config(architecture: str, num_classes: int, data_config: dict, model_args: dict,
                          label_names: list) -> dict:
    """The keys ``timm.create_model("local-dir:FOLDER", pretrained=True)`` reads from config.json
    (timm's own export layout: ``architecture``, ``num_classes``, ``model_args``, ``pretrained_cfg``)."""
    pretrained_cfg = {
        "input_size": list(data_config["input_size"]), "interpolation": data_config["interpolation"],
        "mean": list(data_config["mean"]), "std": list(data_config["std"]),
        "crop_pct": data_config["crop_pct"], "crop_mode": data_config.get("crop_mode", "center"),
        "num_classes": num_classes, "fixed_input_size": True,
    }
    out = {"architecture": architecture, "num_classes": num_classes, "model_args": dict(model_args),
           "pretrained_cfg": pretrained_cfg}
    if label_names:
        out["label_names"] = list(label_names)
    return out
