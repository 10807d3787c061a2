"""Token files: a dataset tokenized once, so that generator training never runs the tokenizer.

A token file is a ``.safetensors`` (or ``.npz``) file with

    ids      N x L  int32/int64   code ids, padded past each row's length (with 0)
    lengths  N      int64         valid tokens per row (= L for fixed-length tokenizers)
    labels   N      int64         class per row, -1 when unlabelled
    source   N      int64         index of the image a row came from (rows of augmented views share it)

and JSON metadata (``adatok`` key): ``kind: "tokens"``, the tokenizer (name/path, weights),
``codebook_size``, ``num_tokens``, ``image_size``, ``classes`` (names), ``views`` and ``paths``.
Files written by ``adatok tokenize`` (ids + lengths) read as well (unlabelled).

:func:`pretokenize` writes one from an image folder, an ImageFolder tree or shards: each image
as its center crop (the evaluation transform), optionally its mirror and extra random crops
(``views``; the official pre-tokenisation offers ten-crop). :class:`TokenDataset` serves the rows
with the same item protocol as the image datasets (``dataset[(index, seed)]``).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..atomic import atomic_write, atomic_write_path
from ..errors import AdatokError, ConfigError

TOKEN_SUFFIXES = (".safetensors", ".npz")
MAX_PATHS_IN_META = 200_000  # beyond this, paths stay out of the header (safetensors caps it at 100 MB)
log = logging.getLogger("adatok.data")


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
    small = torch.int32 if (int(ids.max()) if ids.numel() else 0) < 2**31 else torch.int64
    tensors = {"ids": ids.to(small).contiguous(), "lengths": lengths.long().contiguous(),
               "labels": labels.long().contiguous(), "source": source.long().contiguous()}
    meta = {"kind": "tokens", "format_version": 1, **meta}
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
    return TokenFile(ids, lengths, labels, source, meta)


class TokenDataset(Dataset):
    """Rows of a token file. Items (``index`` or ``(index, seed)``; the seed is unused: augmented
    views are rows of their own) are ``{"ids": L int64, "length": int64, "label": int64, "index": int}``."""

    def __init__(self, path):
        self.file = read_token_file(path)
        self.path = str(path)

    def __len__(self) -> int:
        return self.file.ids.shape[0]

    def __getitem__(self, item) -> dict:
        index = item[0] if isinstance(item, (tuple, list)) else item
        index = int(index) % len(self)
        f = self.file
        return {"ids": f.ids[index], "length": f.lengths[index], "label": f.labels[index], "index": index}

    def spread_labels(self, n: int) -> torch.Tensor:
        """Labels of ``n`` rows spread evenly over the file (the fixed inputs of training sample
        grids: with an ImageFolder's sorted classes, the first rows would all share one class)."""
        rows = torch.linspace(0, len(self) - 1, steps=min(n, len(self))).round().long()
        return self.file.labels[rows]


# ------------------------------------------------------------------------------------ pretokenize
def pretokenize(source: str, out, tokenizer: torch.nn.Module, tokenizer_name: str = "", weights: str = "",
                labelled: bool = False, views: int = 1, flip: bool = False, batch_size: int = 32,
                workers: int = 0, autocast_dtype: Optional[torch.dtype] = None, progress: bool = True,
                encode_kwargs: Optional[dict] = None) -> dict:
    """Tokenize every image of ``source`` into the token file ``out``.

    Rows per image: the center crop, its mirror (``flip``), and ``views - 1`` random crops with
    random flips (seeded by image and view: the same call writes the same file). Unreadable images
    are reported once and skipped. ``encode_kwargs`` go to ``tokenizer.encode`` (e.g. an adaptive
    tokenizer's length criterion). Returns a summary (rows, images, skipped, seconds)."""
    import time

    from ..data.transforms import ImageTransform
    from ..train.config import DataConfig
    from ..train.data import build_dataset

    out = Path(out)
    if out.suffix not in TOKEN_SUFFIXES:
        raise ConfigError(f"--out {out}: use a .safetensors or .npz file name")
    if views < 1 or batch_size < 1:
        raise ConfigError("views and batch size must be >= 1")
    if getattr(getattr(tokenizer, "config", None), "quantizer", "vq") != "vq":
        raise ConfigError("this tokenizer has continuous (KL) tokens: pretokenize needs a VQ tokenizer")
    encode_kwargs = dict(encode_kwargs or {})
    _check_encode_kwargs(tokenizer, encode_kwargs)
    size = int(tokenizer.image_size)
    data_cfg = DataConfig(train=str(source), image_size=size, crop="random", flip=True)
    dataset = build_dataset(str(source), data_cfg, labelled=labelled, train=True)
    if not isinstance(dataset.transform, ImageTransform):  # pragma: no cover - defensive
        raise AdatokError("unexpected dataset transform")
    n = len(dataset)
    items = [(i, 0) for i in range(n)]  # view 0: the center crop (seed None below)
    items += [(i, 1) for i in range(n)] if flip else []
    items += [(i, 1 + v) for v in range(1, views) for i in range(n)]
    loader = DataLoader(_Views(dataset), batch_size=batch_size, sampler=items, num_workers=workers)
    device = next(tokenizer.parameters()).device
    ids, lengths, labels, sources, skipped = [], [], [], [], set()
    start = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(total=len(items), desc="pretokenize", unit="img", disable=not progress or not sys.stderr.isatty())
    with torch.inference_mode(), torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                                                enabled=autocast_dtype is not None):
        for batch in loader:
            ok = batch["ok"]
            skipped.update(batch["wanted"][~ok].tolist())
            bar.update(len(ok))
            if not bool(ok.any()):
                continue
            tokens = tokenizer.encode(batch["image"][ok].to(device), **encode_kwargs)
            ids.append(tokens.ids.cpu())
            lengths.append(tokens.lengths.cpu())
            labels.append(batch["label"][ok])
            sources.append(batch["wanted"][ok])
    bar.close()
    if not ids:
        raise AdatokError(f"{source}: no image could be read")
    width = max(t.shape[1] for t in ids)
    ids = torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1])) for t in ids])
    cfg = getattr(tokenizer, "config", None)
    files = [str(p) for p in getattr(dataset, "files", [])]
    meta = {
        "tokenizer": tokenizer_name, "weights": weights or "", "image_size": size,
        "codebook_size": getattr(cfg, "codebook_size", None),
        "num_tokens": int(getattr(tokenizer, "num_tokens", width)),
        "classes": list(getattr(dataset, "classes", []) or []), "views": views, "flip": flip, "source": str(source),
        "paths": files if len(files) <= MAX_PATHS_IN_META else [], "encode": encode_kwargs,
    }
    lengths = torch.cat(lengths)
    write_token_file(out, ids, lengths, torch.cat(labels), torch.cat(sources), meta)
    counts = sorted(set(lengths.tolist()))
    span = f"{counts[0]} tokens" if len(counts) == 1 else f"{counts[0]}..{counts[-1]} tokens"
    return {"rows": ids.shape[0], "images": n - len(skipped), "lengths": span, "skipped": len(skipped),
            "seconds": time.perf_counter() - start, "out": str(out)}


def _check_encode_kwargs(tokenizer, kwargs: dict) -> None:
    import inspect

    if not kwargs:
        return
    params = inspect.signature(tokenizer.encode).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ConfigError(f"this tokenizer's encode takes no {', '.join(unknown)} (it takes: "
                          f"{', '.join(p for p in params if p != 'images') or 'images only'})")


class _Views(Dataset):
    """(image index, view) -> the view's image; view 0 = center crop, 1 = its mirror, >= 2 = a
    seeded random crop + flip. ``ok`` is False when the file was unreadable (the dataset then
    served another image, which is dropped here)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item) -> dict:
        index, view = item
        if view >= 2:
            sample = self.dataset[(index, index * 1_000_003 + view)]
        else:
            sample = self.dataset[index]
            if view == 1:
                sample["image"] = sample["image"].flip(-1)
        label = sample.get("label", -1)
        return {"image": sample["image"], "label": torch.tensor(-1 if label is None else int(label)),
                "wanted": torch.tensor(index), "ok": torch.tensor(int(sample["index"]) == index)}
