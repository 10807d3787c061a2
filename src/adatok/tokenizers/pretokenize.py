"""Pretokenize: run a tokenizer once over a dataset and write a token file (``adatok.data.token_files``).

Each image gives rows: its center crop (the evaluation transform), optionally its mirror and extra
random crops (``views``; the official TiTok pre-tokenisation offers ten-crop), so that generator
training never runs the tokenizer. Only the tokenizer interface (``adatok.interface``) is used: a
continuous tokenizer is refused before any work; an adaptive one may pick lengths per image with a
criterion (``AdaptiveTokenizer.select``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader, Dataset

from ..data.factory import create_dataset
from ..data.token_files import MAX_PATHS_IN_META, TOKEN_SUFFIXES, write_token_file
from ..errors import AdatokError, ConfigError
from ..interface import PAD_ID, AdaptiveTokenizer, Tokenizer


def pretokenize(source: str, out, tokenizer: Tokenizer, tokenizer_name: str = "", weights: str = "",
                labelled: bool = False, views: int = 1, flip: bool = False, batch_size: int = 32,
                workers: int = 0, autocast_dtype: Optional[torch.dtype] = None, progress: bool = True,
                encode_kwargs: Optional[dict] = None) -> dict:
    """Tokenize every image of ``source`` into the token file ``out``.

    Rows per image: the center crop, its mirror (``flip``), and ``views - 1`` random crops with
    random flips (seeded by image and view: the same call writes the same file). Unreadable images
    are reported once and skipped. ``encode_kwargs`` (``criterion``, ``threshold``, ``max_tokens``)
    pick an adaptive tokenizer's lengths. Returns a summary (rows, images, skipped, seconds)."""
    out = Path(out)
    if out.suffix not in TOKEN_SUFFIXES:
        raise ConfigError(f"--out {out}: use a .safetensors or .npz file name")
    if views < 1 or batch_size < 1:
        raise ConfigError("views and batch size must be >= 1")
    encode = _encoder(tokenizer, dict(encode_kwargs or {}))
    size = int(tokenizer.image_size)
    dataset = create_dataset(str(source), size, labelled=labelled, train=True, crop="random", flip=True)
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
            tokens = encode(batch["image"][ok].to(device))
            ids.append(tokens.ids.cpu())
            lengths.append(tokens.lengths.cpu())
            labels.append(batch["label"][ok])
            sources.append(batch["wanted"][ok])
    bar.close()
    if not ids:
        raise AdatokError(f"{source}: no image could be read")
    width = max(t.shape[1] for t in ids)
    ids = torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1]), value=PAD_ID) for t in ids])
    files = [str(p) for p in getattr(dataset, "files", [])]  # folders list their files; shards do not
    meta = {
        "tokenizer": tokenizer_name, "weights": weights or "", "image_size": size,
        "codebook_size": tokenizer.codebook_size, "num_tokens": int(tokenizer.max_tokens),
        "classes": list(getattr(dataset, "classes", []) or []), "views": views, "flip": flip, "source": str(source),
        "paths": files if len(files) <= MAX_PATHS_IN_META else [], "encode": dict(encode_kwargs or {}),
    }
    lengths = torch.cat(lengths)
    write_token_file(out, ids, lengths, torch.cat(labels), torch.cat(sources), meta)
    counts = sorted(set(lengths.tolist()))
    span = f"{counts[0]} tokens" if len(counts) == 1 else f"{counts[0]}..{counts[-1]} tokens"
    return {"rows": ids.shape[0], "images": n - len(skipped), "lengths": span, "skipped": len(skipped),
            "seconds": time.perf_counter() - start, "out": str(out)}


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
