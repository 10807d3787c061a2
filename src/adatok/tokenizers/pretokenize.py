"""Pretokenize: run a tokenizer once over a dataset and write a token file (``adatok.data.token_files``).

Each image gives rows: its center crop (the evaluation transform), optionally its mirror and extra
random crops (``views``; the official TiTok pre-tokenisation offers ten-crop), so that generator
training never runs the tokenizer. Only the tokenizer interface (``adatok.interface``) is used: a
continuous tokenizer is refused before any work; an adaptive one may pick lengths per image with a
criterion (``AdaptiveTokenizer.select``). Under ``torchrun`` each rank encodes its share of the rows
(parts written as they finish, so an interrupted call resumes) and rank 0 merges them into one file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader, Dataset

from ..atomic import atomic_write_path
from ..data.factory import create_dataset
from ..data.token_files import MAX_PATHS_IN_META, TOKEN_SUFFIXES, write_token_file
from ..errors import AdatokError, ConfigError
from ..interface import PAD_ID, AdaptiveTokenizer, Tokenizer


def pretokenize(source: str, out, tokenizer: Tokenizer, tokenizer_name: str = "", weights: str = "",
                labelled: bool = False, views: int = 1, flip: bool = False, batch_size: int = 32,
                workers: int = 0, autocast_dtype: Optional[torch.dtype] = None, progress: bool = True,
                encode_kwargs: Optional[dict] = None, part_size: int = 1024, rank: int = 0,
                world_size: int = 1) -> dict:
    """Tokenize every image of ``source`` into the token file ``out``.

    Rows per image: the center crop, its mirror (``flip``), and ``views - 1`` random crops with
    random flips (seeded by image and view: the same call writes the same file). Unreadable images
    are reported once and skipped. ``encode_kwargs`` (``criterion``, ``threshold``, ``max_tokens``)
    pick an adaptive tokenizer's lengths.

    Parts and ranks: the rows are cut into parts of ``part_size`` rows, each written whole to
    ``OUT.parts/part-NNNNNN.safetensors`` as soon as it is encoded; rank ``r`` of ``world_size``
    (``torchrun``: a process group must be initialised) encodes parts ``r, r + W, ...``. A part
    already there from an interrupted call with the same settings is skipped (resume: run the same
    command again); parts of other settings are a one-line error. After a barrier, rank 0 merges
    the parts in order into ``out`` — the same file one process writes — and removes ``OUT.parts``.
    Returns a summary (rows, images, skipped, seconds, parts encoded and reused; ``rows``/``images``
    cover the whole file on rank 0, this rank's parts elsewhere)."""
    out = Path(out)
    if out.suffix not in TOKEN_SUFFIXES:
        raise ConfigError(f"--out {out}: use a .safetensors or .npz file name")
    if views < 1 or batch_size < 1 or part_size < 1:
        raise ConfigError("views, batch size and part size must be >= 1")
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is not in [0, world size {world_size})")
    encode = _encoder(tokenizer, dict(encode_kwargs or {}))
    size = int(tokenizer.image_size)
    dataset = create_dataset(str(source), size, labelled=labelled, train=True, crop="random", flip=True)
    if not hasattr(dataset, "__getitem__"):
        raise ConfigError(f"{source}: pretokenize reads images by index; streamed shards (pipe:, .tar.gz) are not "
                          "supported — use local .tar shards or an image folder")
    n = len(dataset)
    items = [(i, 0) for i in range(n)]  # view 0: the center crop (seed None below)
    items += [(i, 1) for i in range(n)] if flip else []
    items += [(i, 1 + v) for v in range(1, views) for i in range(n)]
    settings = {"source": str(source), "tokenizer": tokenizer_name, "weights": weights or "", "labelled": labelled,
                "views": views, "flip": flip, "encode": dict(encode_kwargs or {}), "items": len(items),
                "part_size": part_size, "image_size": size, "num_tokens": int(tokenizer.max_tokens)}
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    parts_dir = parts_folder(out)
    num_parts = -(-len(items) // part_size)
    mine = range(rank, num_parts, world_size)
    device = next(tokenizer.parameters()).device
    start = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(total=len(mine), desc="pretokenize", unit="part",
               disable=not progress or rank != 0 or not sys.stderr.isatty())
    encoded = reused = 0
    for k in mine:
        path = parts_dir / f"part-{k:06d}.safetensors"
        if _read_part(path, fingerprint) is not None:
            reused += 1
        else:
            chunk = items[k * part_size:(k + 1) * part_size]
            loader = DataLoader(_Views(dataset), batch_size=batch_size, sampler=chunk, num_workers=workers)
            _write_part(path, fingerprint, k, *_encode_items(loader, encode, device, autocast_dtype))
            encoded += 1
        bar.update(1)
    bar.close()
    if world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()  # every part is written before rank 0 reads them
    summary = {"parts": num_parts, "encoded": encoded, "reused": reused, "out": str(out)}
    if rank != 0:
        return {**summary, "rows": 0, "images": 0, "lengths": "", "skipped": 0,
                "seconds": time.perf_counter() - start}
    parts = [_read_part(parts_dir / f"part-{k:06d}.safetensors", fingerprint) for k in range(num_parts)]
    missing = [k for k, part in enumerate(parts) if part is None]
    if missing:
        raise AdatokError(f"{parts_dir}: parts {missing[:5]} are missing after every rank finished — run the same "
                          "command again (written parts are kept)")
    ids = [part["ids"] for part in parts if part["ids"].shape[0]]
    if not ids:
        raise AdatokError(f"{source}: no image could be read")
    skipped = set(i for part in parts for i in part["skipped"])
    width = max(t.shape[1] for t in ids)
    ids = torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1]), value=PAD_ID) for t in ids])
    files = [str(p) for p in getattr(dataset, "files", [])]  # folders list their files; shards do not
    meta = {
        "tokenizer": tokenizer_name, "weights": weights or "", "image_size": size,
        "codebook_size": tokenizer.codebook_size, "num_tokens": int(tokenizer.max_tokens),
        "classes": list(getattr(dataset, "classes", []) or []), "views": views, "flip": flip, "source": str(source),
        "paths": files if len(files) <= MAX_PATHS_IN_META else [], "encode": dict(encode_kwargs or {}),
    }
    lengths = torch.cat([part["lengths"] for part in parts])
    write_token_file(out, ids, lengths, torch.cat([part["labels"] for part in parts]),
                     torch.cat([part["source"] for part in parts]), meta)
    shutil.rmtree(parts_dir, ignore_errors=True)
    counts = sorted(set(lengths.tolist()))
    span = f"{counts[0]} tokens" if len(counts) == 1 else f"{counts[0]}..{counts[-1]} tokens"
    return {**summary, "rows": ids.shape[0], "images": n - len(skipped), "lengths": span, "skipped": len(skipped),
            "seconds": time.perf_counter() - start}


def parts_folder(out) -> Path:
    """Where :func:`pretokenize` keeps the parts of ``out`` until it merges them: ``OUT.parts/``."""
    out = Path(out)
    return out.with_name(out.name + ".parts")


def _encode_items(loader, encode, device, autocast_dtype):
    """Encode one part's views: ``(ids, lengths, labels, source, skipped image indices)``."""
    ids, lengths, labels, sources, skipped = [], [], [], [], set()
    with torch.inference_mode(), torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                                                enabled=autocast_dtype is not None):
        for batch in loader:
            ok = batch["ok"]
            skipped.update(batch["wanted"][~ok].tolist())
            if not bool(ok.any()):
                continue
            tokens = encode(batch["image"][ok].to(device))
            ids.append(tokens.ids.cpu())
            lengths.append(tokens.lengths.cpu())
            labels.append(batch["label"][ok])
            sources.append(batch["wanted"][ok])
    if not ids:
        empty = torch.zeros(0, dtype=torch.long)
        return torch.zeros(0, 0, dtype=torch.long), empty, empty, empty, sorted(skipped)
    width = max(t.shape[1] for t in ids)
    ids = torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1]), value=PAD_ID) for t in ids])
    return ids.long(), torch.cat(lengths).long(), torch.cat(labels).long(), torch.cat(sources).long(), sorted(skipped)


def _write_part(path: Path, fingerprint: str, index: int, ids, lengths, labels, source, skipped) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"ids": ids.contiguous(), "lengths": lengths, "labels": labels, "source": source}
    meta = {"fingerprint": fingerprint, "part": str(index), "skipped": json.dumps(skipped)}
    atomic_write_path(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def _read_part(path: Path, fingerprint: str) -> Optional[dict]:
    """A written part (tensors + ``skipped``), or None if absent or unreadable (it is then encoded
    again); a part of other settings is a one-line error (it would mix two runs' rows)."""
    if not path.is_file():
        return None
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (OSError, ValueError, RuntimeError):
        return None
    if meta.get("fingerprint") != fingerprint:
        raise ConfigError(f"{path}: a part of an interrupted pretokenize with other settings (source, tokenizer, "
                          f"views, ...) — delete {path.parent} or rerun with that call's settings")
    return {**tensors, "skipped": json.loads(meta.get("skipped", "[]"))}


_SELECT_ARGS = ("criterion", "threshold", "max_tokens")


def _encoder(tokenizer, kwargs: dict):
    """images -> ``Tokens``: ``encode``, or ``select`` with ``kwargs`` for an adaptive tokenizer.
    One-line errors (before any work) for a model that is not a discrete tokenizer or for length
    options given to a fixed-length one."""
    if not isinstance(tokenizer, Tokenizer):
        raise ConfigError(f"pretokenize needs an image tokenizer, got a {type(tokenizer).__name__}")
    if not tokenizer.discrete:
        raise ConfigError("this tokenizer has continuous tokens (no codebook ids): pretokenize needs a discrete "
                          "(VQ) tokenizer")
    unknown = sorted(set(kwargs) - set(_SELECT_ARGS))
    if unknown:
        raise ConfigError(f"pretokenize takes no {', '.join(unknown)} (length options: {', '.join(_SELECT_ARGS)})")
    if not kwargs:
        return tokenizer.encode
    if not isinstance(tokenizer, AdaptiveTokenizer):
        raise ConfigError(f"{', '.join(sorted(kwargs))}: length options need an adaptive tokenizer (ALIT, a prefix "
                          f"tokenizer); this one gives every image {tokenizer.max_tokens} tokens")
    criterion = kwargs.pop("criterion", "budget")  # a threshold alone is a token budget, as encode reads it
    return lambda images: tokenizer.select(images, criterion, return_images=False, **kwargs).tokens


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
