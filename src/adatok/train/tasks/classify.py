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
from typing import Iterator

import torch.nn.functional as F

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
        self.model = timm.create_model(run.model, pretrained=False, num_classes=classes, img_size=run.data.image_size,
                                       drop_path_rate=self.opts.drop_path, **run.model_overrides).to(device)
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
        logits = modules["model"](batch["image"])
        loss = F.cross_entropy(logits.float(), batch["label"], label_smoothing=self.opts.label_smoothing)
        accuracy = (logits.argmax(-1) == batch["label"]).float().mean()
        yield Phase("model", loss, {"accuracy": accuracy})

    def save_export(self, model, path: Path) -> None:
        from safetensors.torch import save_file

        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))
        meta = {"format": "timm", "model": self.run.model, "num_classes": self.num_classes,
                "img_size": self.run.data.image_size, "model_overrides": self.run.model_overrides,
                "classes": self.class_names}
        if self.opts.reduction:
            from ...reduction import settings_of

            meta["reduction"] = settings_of(self.model)
        (path / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
