"""Save and load models: our format, official checkpoints, local paths and hub repos.

Our format is a folder with ``config.json`` (``{"format": "adatok", "family": ..., "config": ...}``)
and ``model.safetensors`` (whose metadata repeats the config, so the file alone also loads).
Official checkpoints are recognised by their keys and converted by the family's pure
``state_dict -> state_dict`` map; ``.bin``/``.pth`` files go through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .atomic import atomic_write_bytes, atomic_write_path
from .config_utils import config_from_dict, config_to_dict, replace_config
from .convert_utils import check_against_model
from .errors import CheckpointError, ConfigError
from .registry import FAMILIES, PRESETS, Family, create_model, family_of_config, get_preset

FORMAT = "adatok"
BUNDLED_DIR = Path(__file__).parent / "weights"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.bin")


# ------------------------------------------------------------------------------------ save
def save(model: torch.nn.Module, path) -> Path:
    """Write ``model`` to folder ``path`` (config.json + model.safetensors), atomically per file."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    family = family_of_config(model.config)
    meta = {"format": FORMAT, "format_version": 1, "family": family.name, "config": config_to_dict(model.config)}
    text = json.dumps(meta, indent=2)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_path(path / "model.safetensors", lambda tmp: save_file(state, str(tmp), metadata={"adatok": text}))
    atomic_write_bytes(path / "config.json", (text + "\n").encode())
    return path


# ------------------------------------------------------------------------------------ read
def read_state_dict(path) -> tuple[dict, Optional[dict]]:
    """Tensors of a weight file, and our metadata if it has any. One-line errors name the file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (an interrupted download?)")
    if path.suffix == ".safetensors":
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(e)}); truncated or corrupt?") from None
        ours = json.loads(meta["adatok"]) if "adatok" in meta else None
        return tensors, ours
    try:
        # Training checkpoints (e.g. ALIT's) also pickle their argparse Namespace: allow that one
        # class, nothing else (weights_only stays on).
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad pickle/zip
        raise CheckpointError(f"{path}: cannot read this checkpoint ({_first_line(e)}); truncated, or not a PyTorch file?") from None
    # common training-checkpoint wrappers; EMA weights first (what the official evaluations load)
    for key in ("ema", "state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: does not hold a state dict of tensors")
    return obj, None


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _weights_in_folder(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).exists():
            return folder / name
    raise CheckpointError(f"{folder}: no weight file (looked for {', '.join(WEIGHT_FILES)})")


# ------------------------------------------------------------------------------------ load
def load(name_or_path, weights=None, device="cpu", **overrides) -> torch.nn.Module:
    """Load a model, in eval mode.

    ``name_or_path`` is a preset name (``"titok_l32"``), a folder (ours, or an official hub
    folder with ``config.json`` + ``model.safetensors``), a weight file (``.safetensors``, ``.bin``,
    ``.pth``; official files are recognised by their keys), or a hub repo id. ``weights`` gives the
    weight file or folder for a preset name. Official checkpoints are converted on the fly.

    ``overrides`` replace config fields (dotted names reach nested ones, e.g.
    ``**{"encoder.heads": 4}``): needed only for what a bare official file cannot tell, such as
    the head count of a non-standard width (official sizes all use head dim 64).
    """
    name = str(name_or_path)
    if name in PRESETS:
        model = _load_preset(name, weights, overrides)
    elif Path(name).exists():
        model = _load_path(Path(name), None, overrides)
    elif _looks_like_repo_id(name):
        model = _load_path(_download(name), None, overrides)
    else:
        get_preset(name)  # raises the "unknown model ... did you mean" error
        raise AssertionError("unreachable")
    return model.to(device).eval()


def _load_preset(name: str, weights, overrides: dict) -> torch.nn.Module:
    preset = get_preset(name)
    config = replace_config(preset.config(), **overrides)
    if weights is not None:
        return _load_path(Path(weights), config, {})
    if preset.bundled:
        folder = BUNDLED_DIR / preset.bundled
        if not (folder / "model.safetensors").exists():
            raise CheckpointError(f"{folder}: the weights of {name!r} are missing from this installation")
        return _load_path(folder, config, overrides)
    if preset.hub_repo:
        return _load_path(_download(preset.hub_repo, preset.hub_file), config, {})
    raise ConfigError(
        f"{name!r} has no pretrained weights: use adatok.create_model({name!r}) for a randomly "
        "initialised model, or pass weights=FILE"
    )


def read_checkpoint(path: Path) -> tuple[dict, Optional[dict], Optional[dict]]:
    """(state dict, our metadata or None, official config.json or None) of a file or folder."""
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if not path.is_dir():
        state, ours = read_state_dict(path)
        return state, ours, None
    official_cfg = None
    cfg_file = path / "config.json"
    if cfg_file.exists():
        try:
            official_cfg = json.loads(cfg_file.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{cfg_file}: invalid JSON ({e})") from None
    state, ours = read_state_dict(_weights_in_folder(path))
    if (official_cfg or {}).get("format") == FORMAT:
        ours, official_cfg = ours or official_cfg, None
    return state, ours, official_cfg


def to_model_state_dict(state: dict, ours: Optional[dict], source: str) -> tuple[Family, dict]:
    """(family, state dict in our layout): official checkpoints are converted, ours pass through."""
    if ours:
        family = FAMILIES.get(ours.get("family"))
        if family is None:
            raise CheckpointError(f"{source}: unknown model family {ours.get('family')!r}")
        return family, state
    family = _official_family(state, source)
    return family, family.convert_official(state, source)


def load_weights(model: torch.nn.Module, path) -> torch.nn.Module:
    """Load a checkpoint (ours or official, file or folder) into an existing ``model``, strictly."""
    path = Path(path)
    state, ours, _ = read_checkpoint(path)
    _, state = to_model_state_dict(state, ours, str(path))
    check_against_model(state, model, str(path))
    model.load_state_dict(state, strict=True)
    return model


def _load_path(path: Path, preset_config, overrides: dict) -> torch.nn.Module:
    source = str(path)
    state, ours, official_cfg = read_checkpoint(path)
    family, converted = to_model_state_dict(state, ours, source)
    if preset_config is not None and family_of_config(preset_config) is not family:
        wanted = family_of_config(preset_config).name
        raise CheckpointError(f"{source}: holds a {family.name} model, not a {wanted} one — wrong file for this preset?")
    if ours:
        # our files carry their exact config: it wins over a preset's (which may differ by overrides)
        config = config_from_dict(family.config_cls, ours["config"])
    else:
        config = preset_config or family.config_from_official(official_cfg, state, source)
    config = replace_config(config, **overrides) if overrides else config
    model = create_model(config)
    check_against_model(converted, model, source)
    model.load_state_dict(converted, strict=True)
    return model


def _official_family(state: dict, source: str) -> Family:
    for family in FAMILIES.values():
        if family.is_official and family.is_official(state):
            return family
    # our own keys without metadata (e.g. a raw torch.save of model.state_dict()) are not enough
    raise CheckpointError(
        f"{source}: not a checkpoint adatok recognises (neither adatok metadata nor an official "
        f"{'/'.join(f.name for f in FAMILIES.values() if f.is_official)} layout); pass the preset name with "
        "weights=FILE if it is ours"
    )


def _looks_like_repo_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def _download(repo_id: str, filename: Optional[str] = None) -> Path:
    try:
        from huggingface_hub import hf_hub_download, snapshot_download

        if filename:
            return Path(hf_hub_download(repo_id, filename))
        folder = snapshot_download(repo_id, allow_patterns=["config.json", "*.safetensors", "*.bin"])
    except Exception as e:
        raise CheckpointError(
            f"could not fetch {repo_id!r} from the hub ({_first_line(e)}); download it where the network is "
            "reachable and pass the folder or file path instead"
        ) from None
    return Path(folder)
