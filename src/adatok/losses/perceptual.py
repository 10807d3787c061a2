"""Frozen perceptual losses: LPIPS (VGG16) and TiTok's ConvNeXt-Small logit MSE.

Weights are read from LOCAL files only, never downloaded. Search order for each file:
1. the explicit path argument; 2. ``weights_dir`` argument; 3. ``$ADATOK_WEIGHTS_DIR``;
4. (LPIPS heads only) the installed ``lpips`` package's ``weights/v0.1/vgg.pth``;
5. torch hub's checkpoint cache ``torch.hub.get_dir()/checkpoints``.

Files: ``vgg16-397923af.pth`` (torchvision VGG16 state dict; only ``features.*`` is used),
``lpips_vgg_v0.1.pth`` or ``vgg.pth`` (LPIPS v0.1 / taming linear heads, keys
``lin{k}.model.1.weight`` of shape 1 x C x 1 x 1), ``convnext_small-0c510722.pth`` (torchvision).

Checkpoints: the frozen networks hold their weights as NON-PERSISTENT BUFFERS, not parameters.
They follow ``.to(device)``, never appear in ``state_dict()`` (nothing to save or resume: they
are reloaded from the files), in ``parameters()`` (no optimizer or DDP sees them), and never get
grads; gradients still flow to the input images. ``train()`` keeps them in eval mode.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from adatok.errors import AdatokError, CheckpointError, ConfigError, InputError

__all__ = ["LPIPS", "ConvNeXtPerceptual", "PerceptualLoss", "WeightsNotFoundError"]

logger = logging.getLogger("adatok.losses")

VGG16_FILE = "vgg16-397923af.pth"
LPIPS_HEAD_FILES = ("lpips_vgg_v0.1.pth", "vgg.pth")
CONVNEXT_S_FILE = "convnext_small-0c510722.pth"

_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)
_VGG_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in vgg16().features
_VGG_WIDTHS = (64, 128, 256, 512, 512)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsNotFoundError(AdatokError, FileNotFoundError):
    """A frozen loss network's weight file is not on this machine (adatok never downloads)."""


# ----------------------------------------------------------------------------- file lookup


def _search_dirs(weights_dir, lpips_package: bool = False) -> list[tuple[str, Path]]:
    """(label, directory) pairs in search order."""
    dirs = []
    if weights_dir:
        dirs.append(("weights_dir", Path(weights_dir)))
    if os.environ.get("ADATOK_WEIGHTS_DIR"):
        dirs.append(("$ADATOK_WEIGHTS_DIR", Path(os.environ["ADATOK_WEIGHTS_DIR"])))
    if lpips_package:
        spec = importlib.util.find_spec("lpips")  # locate without importing
        for loc in (spec.submodule_search_locations or []) if spec else []:
            dirs.append(("lpips package", Path(loc) / "weights" / "v0.1"))
    dirs.append(("torch hub cache", Path(torch.hub.get_dir()) / "checkpoints"))
    return dirs


def _find(what: str, names: tuple[str, ...], explicit, weights_dir, lpips_package: bool = False) -> Path:
    """Return the first existing file, or raise ``WeightsNotFoundError`` saying where it looked."""
    if explicit is not None:
        if Path(explicit).is_file():
            return Path(explicit)
        raise WeightsNotFoundError(f"{what}: {explicit} (explicit path) does not exist")
    dirs = _search_dirs(weights_dir, lpips_package)
    for _, d in dirs:
        for name in names:
            if (d / name).is_file():
                return d / name
    where = ", ".join(f"{label} {d}" for label, d in dirs)
    raise WeightsNotFoundError(f"{what}: {' or '.join(names)} not found (looked in {where})")


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any read failure becomes one user-facing line
        raise CheckpointError(f"{path}: cannot be read as a state dict ({type(e).__name__}: {e})") from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor), got {type(sd).__name__}")
    return sd


def _load_strict(module: nn.Module, sd: dict[str, torch.Tensor], path: Path) -> None:
    """Load into a meta-device module (assign), naming missing/unexpected keys and bad shapes."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    bad = [f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
           if k in sd and sd[k].shape != v.shape]
    if missing or unexpected or bad:
        raise CheckpointError(f"{path}: does not match the network: missing {missing[:5]}, unexpected "
                              f"{unexpected[:5]}, shape mismatches {bad[:5]}")
    module.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True, assign=True)


def _freeze_as_buffers(module: nn.Module) -> None:
    """Turn every parameter into a non-persistent buffer (see the module docstring)."""
    for m in module.modules():
        for name, p in list(m._parameters.items()):
            del m._parameters[name]
            if p is not None:
                m.register_buffer(name, p.detach().requires_grad_(False), persistent=False)


class _Frozen(nn.Module):
    """Base of the frozen loss networks: always eval, float32, autocast off."""

    def train(self, mode: bool = True):
        return super().train(False)

    @staticmethod
    def _check(x: torch.Tensor, y: torch.Tensor, name: str) -> None:
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise InputError(f"{name}: expected two B x 3 x H x W images of the same shape, "
                             f"got {tuple(x.shape)} and {tuple(y.shape)}")


# ----------------------------------------------------------------------------- LPIPS


class LPIPS(_Frozen):
    """LPIPS v0.1 with VGG16 (Zhang et al., 2018), as TiTok/taming use it.

    Input: images ``B x 3 x H x W`` in [0, 1] (H, W >= 16) -> distance ``B`` (float32).
    [0, 1] -> [-1, 1] -> (x - shift) / scale; channel-normalised relu1_2..relu5_3 features;
    squared difference; 1x1 linear heads; spatial mean; sum over the 5 layers.
    ``signed_input=False`` skips the [0, 1] -> [-1, 1] step (ALIT's as-written behaviour).
    Raises ``WeightsNotFoundError`` when a file is missing (see the module docstring).
    """

    def __init__(self, vgg_path=None, heads_path=None, weights_dir=None, signed_input: bool = True):
        super().__init__()
        found, missing = [], []
        for args in (("LPIPS VGG16 weights", (VGG16_FILE,), vgg_path, weights_dir),
                     ("LPIPS linear heads", LPIPS_HEAD_FILES, heads_path, weights_dir, True)):
            try:
                found.append(_find(*args))
            except WeightsNotFoundError as e:  # report both files in one message
                missing.append(str(e))
        if missing:
            raise WeightsNotFoundError("; ".join(missing))
        vgg_file, heads_file = found
        self.signed_input = signed_input
        with torch.device("meta"):  # no 138M-parameter random init: the classifier is dropped
            self.features = torchvision.models.vgg16(weights=None).features[: _VGG_TAPS[-1] + 1]
        vgg_sd = _load_state_dict(vgg_file)
        prefix = "features."
        feats = {k[len(prefix):]: v for k, v in vgg_sd.items()
                 if k.startswith(prefix) and int(k.split(".")[1]) <= _VGG_TAPS[-1]}
        _load_strict(self.features, feats, vgg_file)
        heads = self._read_heads(_load_state_dict(heads_file), heads_file)
        for i, h in enumerate(heads):
            self.register_buffer(f"head{i}", h, persistent=False)
        self.register_buffer("shift", torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        _freeze_as_buffers(self)
        self.eval()

    @staticmethod
    def _read_heads(sd: dict[str, torch.Tensor], path: Path) -> list[torch.Tensor]:
        """Heads ``lin{k}.model.{0|1}.weight`` (also ``lins.{k}.…``, any prefix), shape 1 x C x 1 x 1."""
        heads = []
        for k, c in enumerate(_VGG_WIDTHS):
            pat = re.compile(rf"(^|\.)(lin{k}|lins\.{k})\.model\.\d+\.weight$")
            found = [v for name, v in sd.items() if pat.search(name)]
            # a full LPIPS module state dict holds each head twice (lin{k} and lins.{k}): same tensor
            if not found or any(tuple(v.shape) != (1, c, 1, 1) or not torch.equal(v, found[0]) for v in found):
                raise CheckpointError(f"{path}: expected the LPIPS head 'lin{k}.model.1.weight' of shape "
                                      f"(1, {c}, 1, 1), found {[tuple(v.shape) for v in found]}")
            heads.append(found[0].float())
        return heads

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self._check(x, y, "LPIPS")
        b = x.shape[0]
        with torch.autocast(device_type=x.device.type, enabled=False):
            h = torch.cat([x, y]).float()
            if self.signed_input:
                h = h * 2.0 - 1.0
            h = (h - self.shift) / self.scale
            total = x.new_zeros(b, dtype=torch.float32)
            tap = 0
            for i, layer in enumerate(self.features):
                h = layer(h)
                if i == _VGG_TAPS[tap]:
                    # channel-normalise (eps outside the sqrt, as LPIPS), compare, weight, average
                    f = h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                    d = (f[:b] - f[b:]).pow(2)
                    total = total + F.conv2d(d, getattr(self, f"head{tap}")).mean((1, 2, 3))
                    tap += 1
        return total


# ----------------------------------------------------------------------------- ConvNeXt


class ConvNeXtPerceptual(_Frozen):
    """TiTok's ``convnext_s`` perceptual loss: MSE between ConvNeXt-Small ImageNet logits.

    Input: images ``B x 3 x H x W`` in [0, 1] -> per-sample mean squared logit difference ``B``
    (its batch mean is the official scalar). Both images are resized to ``resize`` (224;
    bilinear, antialias, align_corners=False; ``None`` = keep size) and ImageNet-normalised.
    """

    def __init__(self, path=None, weights_dir=None, resize: int | None = 224):
        super().__init__()
        file = _find("ConvNeXt-Small weights", (CONVNEXT_S_FILE,), path, weights_dir)
        self.resize = resize
        with torch.device("meta"):
            self.net = torchvision.models.convnext_small(weights=None)
        _load_strict(self.net, _load_state_dict(file), file)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        _freeze_as_buffers(self)
        self.eval()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self._check(x, y, "ConvNeXtPerceptual")
        b = x.shape[0]
        with torch.autocast(device_type=x.device.type, enabled=False):
            h = torch.cat([x, y]).float()
            if self.resize is not None:
                h = F.interpolate(h, size=(self.resize, self.resize), mode="bilinear", align_corners=False,
                                  antialias=True)
            logits = self.net((h - self.mean) / self.std)
            return (logits[:b] - logits[b:]).pow(2).mean(1)


# ----------------------------------------------------------------------------- wrapper


class PerceptualLoss(nn.Module):
    """``weight * mean_batch(perceptual distance)`` -> scalar float32, or zeros when unavailable.

    kind: ``"lpips"``, ``"convnext_s"`` (TiTok's paper configs), ``"lpips-convnext_s-a-b"``
    ((a*LPIPS + b*ConvNeXt) / (a + b), TiTok's combined name) or ``"none"``. When a weight file
    is missing, ONE warning line on the ``adatok.losses`` logger names the files and the places
    searched, ``available`` is False and ``forward`` returns zeros: the run continues without
    the term. A file that exists but does not fit still raises ``CheckpointError``.
    ``state_dict()`` is empty (see the module docstring): checkpoints never carry these weights.
    """

    def __init__(self, kind: str = "lpips", weight: float = 1.0, *, weights_dir=None, vgg_path=None,
                 lpips_heads_path=None, convnext_path=None, convnext_resize: int | None = 224,
                 lpips_signed_input: bool = True):
        super().__init__()
        self.kind, self.weight = kind, float(weight)
        self.nets = nn.ModuleDict()
        self.mix: dict[str, float] = {}
        if kind == "none" or self.weight == 0.0:
            self.available = False
            return
        m = re.fullmatch(r"lpips-convnext_s-([0-9.eE+-]+)-([0-9.eE+-]+)", kind)
        if kind == "lpips":
            self.mix = {"lpips": 1.0}
        elif kind == "convnext_s":
            self.mix = {"convnext_s": 1.0}
        elif m:
            a, b = float(m.group(1)), float(m.group(2))
            self.mix = {"lpips": a / (a + b), "convnext_s": b / (a + b)}
        else:
            raise ConfigError(f"PerceptualLoss: kind={kind!r} is not supported; use 'lpips', 'convnext_s', "
                              "'lpips-convnext_s-A-B' or 'none'")
        problems = []
        for name in self.mix:
            try:
                if name == "lpips":
                    self.nets[name] = LPIPS(vgg_path, lpips_heads_path, weights_dir, lpips_signed_input)
                else:
                    self.nets[name] = ConvNeXtPerceptual(convnext_path, weights_dir, convnext_resize)
            except WeightsNotFoundError as e:
                problems.append(str(e))
        self.available = not problems
        if problems:
            self.nets = nn.ModuleDict()
            logger.warning("perceptual loss %r disabled, training continues without it: %s; put the files there, "
                           "set ADATOK_WEIGHTS_DIR or pass the paths", kind, "; ".join(problems))

    def train(self, mode: bool = True):
        return super().train(False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not self.available:
            return torch.zeros((), device=pred.device)
        loss = sum(w * self.nets[name](pred, target).mean() for name, w in self.mix.items())
        return self.weight * loss

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, weight={self.weight}, available={self.available}"
