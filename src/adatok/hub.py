"""Save and load models: our format, official checkpoints, local paths and hub repos.

Our format is a folder with ``config.json`` (``{"format": "adatok", "family": ..., "config": ...}``)
and ``model.safetensors`` (whose metadata repeats the config, so the file alone also loads).
Official checkpoints are recognised by their keys and converted by the family's pure
``state_dict -> state_dict`` map; ``.bin``/``.pth`` files go through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
from pathlib import Path
from typing import Any, Optional, cast

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .atomic import atomic_write_bytes, atomic_write_path
from .config_utils import config_from_dict, config_to_dict, replace_config
from .convert_utils import check_against_model
from .errors import CheckpointError, ConfigError
from .model_types import LoadedModel
from .registry import FAMILIES, PRESETS, Family, create_model, family_of_config, get_preset

FORMAT = "adatok"
BUNDLED_DIR = Path(__file__).parent / "weights"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.bin")


# ------------------------------------------------------------------------------------ save
def save(model: torch.nn.Module | LoadedModel, path) -> Path:
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
        ours = _our_metadata(meta["adatok"], path) if "adatok" in meta else None
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


def _our_metadata(text: str, path: Path) -> dict:
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: its 'adatok' metadata is not valid JSON ({e}); re-export the model "
                              "with adatok.save") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config", {}), dict):
        raise CheckpointError(f"{path}: its 'adatok' metadata is not a JSON object with a config; re-export the "
                              "model with adatok.save")
    return meta


def _first_line(e: Exception, limit: int | None = 300) -> str:
    text = str(e).strip().splitlines()
    if not text:
        return type(e).__name__
    return text[0] if limit is None or len(text[0]) <= limit else text[0][:limit] + " ..."


def _weights_in_folder(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).exists():
            return folder / name
    raise CheckpointError(f"{folder}: no weight file (looked for {', '.join(WEIGHT_FILES)})")


# ------------------------------------------------------------------------------------ load
def load(name_or_path, weights=None, device="cpu", **overrides) -> LoadedModel:
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
    elif _looks_like_local_path(name):
        raise CheckpointError(_no_such_path(name))
    elif _looks_like_repo_id(name):
        model = _load_path(_download(name), None, overrides)
    else:
        get_preset(name)  # raises the "unknown model ... did you mean" error
        raise AssertionError("unreachable")
    return cast(LoadedModel, model.to(device).eval())  # an nn.Module; typed as adatok/model_types.py


def _load_preset(name: str, weights, overrides: dict) -> torch.nn.Module:
    preset = get_preset(name)
    config = replace_config(preset.config(), **_expand_heads(preset.config(), overrides))
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
            official_cfg = json.loads(cfg_file.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as e:
            raise CheckpointError(f"{cfg_file}: not UTF-8 text (byte {e.start}); is it really a config.json?") from None
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{cfg_file}: invalid JSON ({e})") from None
        if not isinstance(official_cfg, dict):
            raise CheckpointError(f"{cfg_file}: holds a JSON {type(official_cfg).__name__}, not an object "
                                  "({...}); is it really a model's config.json?")
        if official_cfg.get("format") == FORMAT and not isinstance(official_cfg.get("config"), dict):
            raise CheckpointError(f"{cfg_file}: an adatok config.json without a \"config\" object; re-export the "
                                  "model with adatok.save")
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
    """Load a checkpoint (ours or official, file or folder) into an existing ``model``, strictly.
    A plain ``torch.save(model.state_dict())`` of one of our models loads too."""
    path = Path(path)
    state, ours, _ = read_checkpoint(path)
    if not ours and _find_official_family(state) is None:
        state = dict(state)  # our own keys without metadata: strict loading checks them
    else:
        _, state = to_model_state_dict(state, ours, str(path))
    check_against_model(state, model, str(path))
    model.load_state_dict(state, strict=True)
    return model


def _load_path(path: Path, preset_config, overrides: dict) -> torch.nn.Module:
    source = str(path)
    state, ours, official_cfg = read_checkpoint(path)
    if not ours and preset_config is not None and _find_official_family(state) is None:
        # a plain torch.save(model.state_dict()) of our model, named with its preset: strict
        # loading below says clearly if the keys or shapes are not that preset's
        family, converted = family_of_config(preset_config), state
    else:
        family, converted = to_model_state_dict(state, ours, source)
    if preset_config is not None and family_of_config(preset_config) is not family:
        wanted = family_of_config(preset_config).name
        raise CheckpointError(f"{source}: holds a {family.name} model, not a {wanted} one — wrong file for this preset?")
    if ours:
        # our files carry their exact config: it wins over a preset's (which may differ by overrides)
        config = config_from_dict(family.config_cls, ours["config"])
    else:
        config = preset_config or family.config_from_official(official_cfg, state, source)
    overrides = _expand_heads(config, overrides)
    if not ours and preset_config is None:
        _check_heads_known(config, family, official_cfg, overrides, source)
    config = replace_config(config, **overrides) if overrides else config
    model = create_model(config)
    check_against_model(converted, model, source)
    model.load_state_dict(converted, strict=True)
    return model


def _find_official_family(state: dict) -> Optional[Family]:
    for family in FAMILIES.values():
        if family.is_official and family.is_official(state):
            return family
    return None


def _official_family(state: dict, source: str) -> Family:
    family = _find_official_family(state)
    if family is not None:
        return family
    # our own keys without metadata (e.g. a raw torch.save of model.state_dict()) are not enough
    raise CheckpointError(
        f"{source}: not a checkpoint adatok recognises (neither adatok metadata nor an official "
        f"{'/'.join(f.name for f in FAMILIES.values() if f.is_official)} layout); pass the preset name with "
        "weights=FILE if it is ours"
    )


# ------------------------------------------------------------------------------ head counts
def _head_fields(config, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted name of a ``heads`` field, the config holding it) for a config and its parts."""
    out = []
    names = {f.name for f in dataclasses.fields(config)}
    if {"width", "heads"} <= names:
        out.append((prefix + "heads", config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out += _head_fields(value, f"{prefix}{f.name}.")
    return out


def _expand_heads(config, overrides: dict) -> dict:
    """``heads=N`` for a config without a top-level ``heads`` field (TiTok: ``encoder.heads`` and
    ``decoder.heads``) sets every head count: what ``adatok convert --heads N`` passes."""
    if "heads" not in overrides or "heads" in {f.name for f in dataclasses.fields(config)}:
        return overrides
    rest = {k: v for k, v in overrides.items() if k != "heads"}
    for name, _ in _head_fields(config):
        rest.setdefault(name, overrides["heads"])
    return rest


# The official generators (BERT 768 wide, UViT 1024 wide) have 16 heads; a generator of any other
# width (a shrunk or own one) cannot be told from its tensors.
_GENERATOR_WIDTHS = (768, 1024)


def _check_heads_known(config, family: Family, official_cfg, overrides: dict, source: str) -> None:
    """A bare official file does not store its head count; it is read off the width only for the
    official sizes (head dim 64; the generators' 16). Otherwise refuse unless it is given."""
    generator_heads = (((official_cfg or {}).get("model") or {}).get("generator") or {}).get("num_attention_heads")
    unknown = []
    for name, sub in _head_fields(config):
        if name in overrides:
            continue
        if family.name == "maskgit" and not generator_heads and sub.width not in _GENERATOR_WIDTHS:
            unknown.append((name, sub.width))
        elif sub.width % 64:
            unknown.append((name, sub.width))
    if unknown:
        widths = ", ".join(f"{n.rsplit('.', 2)[0] if '.' in n else 'model'} width {w}" for n, w in unknown)
        given = ", ".join(f"'{n}': N" for n, _ in unknown)
        raise CheckpointError(
            f"{source}: the head count of this official checkpoint cannot be read off its tensors ({widths}: "
            f"not an official size); pass it: adatok.load(..., heads=N) or **{{{given}}}, or adatok convert SOURCE "
            "DEST --heads N")


# ------------------------------------------------------------------------------ local or hub
_WEIGHT_SUFFIXES = (".bin", ".pth", ".pt", ".safetensors", ".ckpt", ".json", ".tar")


def _looks_like_local_path(name: str) -> bool:
    """A name that means a local file or folder (so it is not tried as a hub repo id): it starts
    with / . ~, has a weight-file suffix, more than one "/", a backslash, or its first part is a
    local folder (``runs/tinyy`` while ``runs/`` exists)."""
    parts = name.replace("\\", "/").split("/")
    return (name.startswith(("/", ".", "~")) or "\\" in name or len(parts) > 2
            or name.lower().endswith(_WEIGHT_SUFFIXES) or (len(parts) == 2 and Path(parts[0]).is_dir()))


def _no_such_path(name: str) -> str:
    """"NAME: no such file or folder", with the closest names in its folder when there are."""
    path = Path(name).expanduser()
    if not path.parent.is_dir():
        return f"{name}: no such file or folder ({path.parent} does not exist either)"
    try:
        siblings = sorted(c.name for c in path.parent.iterdir())
    except OSError:
        siblings = []
    close = difflib.get_close_matches(path.name, siblings, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(str(path.parent / c) for c in close)}?" if close else ""
    return f"{name}: no such file or folder{hint}"


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
            f"could not fetch {repo_id!r} from the hub ({_first_line(e, limit=None)}); download it where the network is "
            "reachable and pass the folder or file path instead"
        ) from None
    return Path(folder)
