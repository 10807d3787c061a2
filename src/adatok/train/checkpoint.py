"""Training checkpoints: written atomically (temp file + rename), so a crash mid-write leaves the
previous checkpoint intact; read back strictly."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write
from ..errors import CheckpointError


def atomic_save(obj, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: Path) -> dict:
    if not path.exists():
        raise CheckpointError(f"{path}: no checkpoint to resume from (run without --resume to start)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable checkpoint ({str(e).splitlines()[0][:200]})") from None


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return _to_plain(state)


def set_rng_state(state: dict) -> None:
    random.setstate(_python_state(state["python"]))
    np.random.set_state(_numpy_state(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# torch.load(weights_only=True) accepts tensors, dicts, lists, tuples and primitives: store the
# Python/NumPy RNG states in those terms and rebuild them on the way back.
def _to_plain(state: dict) -> dict:
    version, internal, gauss = state["python"]
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    return {
        **state,
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)],
    }


def _python_state(s):
    version, internal, gauss = s
    return (version, tuple(int(x) for x in internal.tolist()), gauss)


def _numpy_state(s):
    name, keys, pos, has_gauss, gauss = s
    return (name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss)
