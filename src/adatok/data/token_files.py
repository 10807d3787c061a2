"""Token files: a dataset tokenized once, so that generator training never runs the tokenizer.

A token file is a ``.safetensors`` (or ``.npz``) file with

    ids      N x L  int32/int64   code ids, ``PAD_ID`` (-1, ``adatok.interface``) past each row's length
    lengths  N      int64         valid tokens per row (= L for fixed-length tokenizers)
    labels   N      int64         class per row, -1 when unlabelled
    source   N      int64         index of the image a row came from (rows of augmented views share it)

and JSON metadata (``adatok`` key): ``kind: "tokens"``, ``pad_id``, the tokenizer (name/path,
weights), ``codebook_size``, ``num_tokens``, ``image_size``, ``classes`` (names), ``views`` and
``paths``. Files written by ``adatok tokenize`` (ids + lengths) read as well (unlabelled), and so
do files of older versions that padded with 0: a reader takes ``lengths`` as the truth and
sets every id past them to ``PAD_ID``.

This module only reads and writes; ``adatok.tokenizers.pretokenize`` runs a tokenizer over a
dataset to write one; :class:`adatok.data.readers.TokenDataset` serves the rows with the item protocol of the
image datasets (``dataset[(index, seed)]``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..atomic import atomic_write, atomic_write_path
from ..errors import ConfigError
from ..interface import PAD_ID

TOKEN_SUFFIXES = (".safetensors", ".npz")
FORMAT_VERSION = 2  # 2: ids padded with PAD_ID (-1); 1: padded with 0 (still read)
MAX_PATHS_IN_META = 200_000  # beyond this, paths stay out of the header (safetensors caps it at 100 MB)


@dataclass
class TokenFile:
    ids: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    source: torch.Tensor
    meta: dict = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return int(self.ids.shape[1])

    @property
    def codebook_size(self) -> Optional[int]:
        return self.meta.get("codebook_size")


def is_token_file(path) -> bool:
    p = Path(str(path))
    return p.suffix in TOKEN_SUFFIXES and p.is_file()


def write_token_file(path, ids: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
                     source: torch.Tensor, meta: dict) -> Path:
    path = Path(path)
    if path.suffix not in TOKEN_SUFFIXES:
        raise ConfigError(f"{path}: a token file is .safetensors or .npz")
    ids = pad_past_lengths(ids.long(), lengths)
    small = torch.int32 if (int(ids.max()) if ids.numel() else 0) < 2**31 else torch.int64
    tensors = {"ids": ids.to(small).contiguous(), "lengths": lengths.long().contiguous(),
               "labels": labels.long().contiguous(), "source": source.long().contiguous()}
    meta = {**meta, "kind": "tokens", "format_version": FORMAT_VERSION, "pad_id": PAD_ID}
    if path.suffix == ".npz":  # a file object: np.savez would add ".npz" to a temp file's name
        arrays = {k: v.numpy() for k, v in tensors.items()}
        return atomic_write(path, lambda f: np.savez(f, **arrays, meta=np.array(json.dumps(meta))))
    from safetensors.torch import save_file

    return atomic_write_path(path, lambda tmp: save_file(tensors, str(tmp), metadata={"adatok": json.dumps(meta)}))


def read_token_file(path) -> TokenFile:
    """Read a token file (ours, or the output of ``adatok tokenize``); one-line errors."""
    path = Path(str(path))
    if not path.is_file():
        raise ConfigError(f"{path}: no such token file (write one with `adatok data pretokenize`)")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                names = ("ids", "lengths", "labels", "source")
                arrays = {k: torch.from_numpy(z[k].copy()) for k in z.files if k in names}
                if "meta" in z.files:
                    meta = json.loads(str(z["meta"]))
                else:  # `adatok tokenize` output
                    meta = {"tokenizer": str(z["model"]) if "model" in z.files else ""}
        else:
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {}).get("adatok", "{}"))
            arrays = load_file(str(path))
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a readable token file ({str(e).splitlines()[0][:120]})") from None
    if "ids" not in arrays:
        raise ConfigError(f"{path}: holds no 'ids' (continuous codes cannot train a MaskGIT generator)")
    ids = arrays["ids"].long()
    if ids.ndim != 2 or ids.shape[0] == 0:
        raise ConfigError(f"{path}: 'ids' must be a non-empty N x L array, got shape {tuple(ids.shape)}")
    n, k = ids.shape
    lengths = arrays.get("lengths", torch.full((n,), k)).long()
    labels = arrays.get("labels", torch.full((n,), -1)).long()
    source = arrays.get("source", torch.arange(n)).long()
    if not (lengths.shape == labels.shape == source.shape == (n,)):
        raise ConfigError(f"{path}: lengths/labels/source must have one entry per row ({n})")
    if int(lengths.min()) < 1 or int(lengths.max()) > k:
        raise ConfigError(f"{path}: lengths must lie in [1, {k}]")
    if "tokenizer" not in meta and "model" in meta:  # `adatok tokenize` output
        meta["tokenizer"] = meta["model"]
    return TokenFile(pad_past_lengths(ids, lengths), lengths, labels, source, meta)


def pad_past_lengths(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``ids`` (``N x L``) with every position at or past its row's length set to ``PAD_ID``:
    whatever a writer put there (0 in files of format version 1) is not a token."""
    valid = torch.arange(ids.shape[1], device=ids.device) < lengths.to(ids.device).unsqueeze(1)
    return torch.where(valid, ids, torch.full_like(ids, PAD_ID))


def pad_past_lengths(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``ids`` (``N x L``) with every position at or past its row's length set to ``PAD_ID``:
    whatever a writer put there (0 in files of format version 1) is not a token."""
    valid = torch.arange(ids.shape[1], device=ids.device) < lengths.to(ids.device).unsqueeze(1)
    return torch.where(valid, ids, torch.full_like(ids, PAD_ID))
