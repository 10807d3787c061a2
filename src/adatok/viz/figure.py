"""Figures people can read: small images enlarged (nearest neighbour, whole pixels) so labels fit
under them, and one image of a strip marked with a coloured border (e.g. the length an adaptive
tokenizer chose). Used by ``make demo``, ``adatok reconstruct`` and ``adatok viz merges``."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from ..data.images import make_strip

MARK = (0.85, 0.1, 0.1)  # the border of a marked image: red


def enlarge(image: Tensor, min_side: int) -> Tensor:
    """``image`` (3 x H x W) repeated by the smallest integer factor that makes its shorter side at
    least ``min_side`` (nearest neighbour: every pixel stays a visible square, nothing is smoothed)."""
    factor = max(1, -(-min_side // min(image.shape[-2:])))
    if factor == 1:
        return image
    return image.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def mark(image: Tensor, width: int = 3, colour: Sequence[float] = MARK) -> Tensor:
    """A copy of ``image`` (3 x H x W) with a ``width``-pixel border in ``colour`` drawn over its edge."""
    out = image.detach().float().clone()
    c = torch.tensor(colour, dtype=out.dtype, device=out.device).view(3, 1, 1)
    out[:, :width], out[:, -width:] = c, c
    out[:, :, :width], out[:, :, -width:] = c, c
    return out


def labelled_strip(images: Sequence[Tensor], labels: Sequence[str], min_side: int = 128,
                   marked: Optional[int] = None) -> Tensor:
    """Images side by side, each enlarged to at least ``min_side`` pixels, labels wrapped under them
    (never cut), the ``marked``-th image (if any) framed in red. Returns 3 x H' x W' in [0, 1]."""
    tiles = [enlarge(img.detach().float().cpu().clamp(0, 1), min_side) for img in images]
    if marked is not None:
        tiles[marked] = mark(tiles[marked])
    return make_strip(tiles, list(labels))


def stack_rows(rows: Sequence[Tensor], gap: int = 4) -> Tensor:
    """Strips one under the other, padded with white on the right to the widest."""
    width = max(r.shape[2] for r in rows)
    padded = [torch.nn.functional.pad(r, (0, width - r.shape[2], 0, gap), value=1.0) for r in rows]
    return torch.cat(padded, dim=1)


def compare_figure(original: torch.Tensor, recon: torch.Tensor, length: int, value: float) -> torch.Tensor:
    """original | reconstruction, enlarged so the labels fit: what ``<name>_compare.png`` holds."""
    return labelled_strip([original.float(), recon.float()], ["original", f"{length} tokens, {value:.2f} dB"])


def length_figure(original: torch.Tensor, images, lengths, chosen: int | None = None, psnrs=None) -> torch.Tensor:
    """original | the reconstruction at each token count (``images[t]`` at ``lengths[t]``), the chosen
    length framed in red and labelled "chosen": what ``<name>_lengths.png`` holds."""
    labels = ["original"] + [f"{n} tokens" + (f", {p:.1f} dB" if psnrs is not None else "")
                             + (" (chosen)" if n == chosen else "") for n, p in zip(lengths, psnrs or lengths)]
    marked = 1 + list(lengths).index(chosen) if chosen in lengths else None
    return labelled_strip([original.float()] + [img.float() for img in images], labels, marked=marked)
