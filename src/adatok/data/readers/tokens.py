"""Rows of a token file (``adatok.data.token_files``) as a dataset, for generator training."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from ..token_files import read_token_file


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
