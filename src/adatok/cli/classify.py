"""``adatok classify``: top-5 classes of images with a (token-reduced) timm ViT, and the tokens kept per block."""

from __future__ import annotations

import argparse

import torch

from ..errors import ConfigError
from .common import autocast, checked_device, progress

METHODS = ("none", "tome", "evit", "imagepiece")


def add_reduction_args(p: argparse.ArgumentParser, default_method: str | None = None) -> None:
    p.add_argument("--model", required=True,
                   help="folder exported by `adatok train` (task classify), a reduction preset "
                        "(imagepiece_deit_tiny, imagepiece_deit_small) or a timm model name (random weights "
                        "unless --weights)")
    p.add_argument("--weights", help="state-dict file for a preset / timm name (safetensors, .pth)")
    p.add_argument("--pretrained", action="store_true",
                   help="a timm model name with timm's pretrained weights (from the hub, or its cache offline)")
    p.add_argument("--reduction", choices=METHODS, default=default_method,
                   help="token reduction to run (default: the model's own; 'none' turns it off)")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="a reduction setting, e.g. --set r=13, --set keep_rate=0.7 (repeatable)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward (default: 16)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")


def add_parser(sub) -> None:
    p = sub.add_parser("classify", help="classify images with a timm ViT, optionally token-reduced",
                       description="Top-k classes per image and the tokens each block kept.")
    p.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    add_reduction_args(p)
    p.add_argument("--top", type=int, default=5, help="classes listed per image (default: 5)")
    p.set_defaults(func=run)


def parse_settings(items: list[str]) -> dict:
    from ..train.config import parse_value

    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} is not KEY=VALUE (e.g. --set r=13)")
        key, value = item.split("=", 1)
        out[key.strip()] = parse_value(value)
    return out


def load_reduced(args, trace: bool = False):
    """The classifier of ``args.model`` with the reduction ``--reduction`` / ``--set`` ask for."""
    from .. import reduction as R

    device = checked_device(args)
    if args.pretrained and args.weights:
        raise ConfigError("--pretrained and --weights both name weights: pass one")
    clf = R.load_classifier(args.model, weights=args.weights, pretrained=args.pretrained)
    model, settings = clf.model, parse_settings(args.settings)
    method = args.reduction
    if R.is_patched(model):
        if method == "none":
            if R.settings_of(model).get("lcb"):
                raise ConfigError(f"{args.model}: its weights include the ImagePiece LCB stem, which cannot be "
                                  "turned off; use --set keep_rate=1 --set merge_ratio=0 for no reduction")
            R.remove(model)
        else:
            R.reconfigure(model, method, trace=trace, **settings)
    elif method not in (None, "none"):
        R.apply(model, method, trace=trace, **settings)
    elif settings:
        raise ConfigError("--set needs a reduction: pass --reduction tome|evit|imagepiece")
    return clf, model.to(device), device


def normalise(batch: torch.Tensor, clf) -> torch.Tensor:
    if clf.mean is None:
        return batch
    mean = torch.tensor(clf.mean, device=batch.device).view(1, -1, 1, 1)
    std = torch.tensor(clf.std, device=batch.device).view(1, -1, 1, 1)
    return (batch - mean) / std


def run(args) -> int:
    from .. import reduction as R

    if args.top < 1:
        raise ConfigError(f"--top must be >= 1, got {args.top}")
    clf, model, device = load_reduced(args)
    counts = None
    batches = TimmBatches(args, clf.data_config)
    with torch.inference_mode(), autocast(args, device):
        for paths, batch in batches:  # timm's eval transform: resize by crop_pct, crop, normalise
            probs = model(batch.to(device)).float().softmax(dim=-1)
            top = probs.topk(min(args.top, probs.shape[-1]), dim=-1)
            for path, p, i in zip(paths, top.values.tolist(), top.indices.tolist()):
                best = "  ".join(f"{clf.classes[c]} {100 * q:.1f}%" for c, q in zip(i, p))
                print(f"{path}\t{best}")
            if R.is_patched(model) and counts is None:
                info = R.info(model)
                counts = (info.tokens_in, info.tokens, info.method)
    if counts:
        tokens_in, tokens, method = counts
        print(f"tokens per block ({method}, [CLS] included; {tokens_in} in): {' '.join(map(str, tokens))}")
    if batches.failed:
        print(f"{batches.failed} file(s) skipped")
    return 1 if batches.failed else 0


class TimmBatches:
    """``(paths, batch)`` of the images in ``args.images`` through timm's eval transform for
    ``data_config`` (``timm.data.resolve_data_config``: resize to size / crop_pct with its
    interpolation, center crop, mean/std). Unreadable files are reported once each and counted."""

    def __init__(self, args, data_config: dict):
        from ..data.images import list_image_files
        from ..data.timm_transforms import TimmTransform

        self.paths = list_image_files(args.images)
        if not self.paths:
            raise ConfigError("no image files found in the given paths")
        self.transform, self.batch_size, self.failed = TimmTransform(data_config), args.batch_size, 0

    def __iter__(self):
        import sys

        from ..data.images import read_image
        from ..errors import ImageLoadError

        bar = progress(len(self.paths), "classify")
        try:
            for start in range(0, len(self.paths), self.batch_size):
                ok, tensors = [], []
                for path in self.paths[start:start + self.batch_size]:
                    try:
                        tensors.append(self.transform(read_image(path)))
                        ok.append(path)
                    except ImageLoadError as e:
                        print(f"adatok: skipped {e}", file=sys.stderr)
                        self.failed += 1
                    bar.update(1)
                if ok:
                    yield ok, torch.stack(tensors)
        finally:
            bar.close()
