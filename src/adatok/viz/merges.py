"""Merge maps: which input patches ended up in which token, which were pruned, and (ImagePiece)
which were in the non-semantic pool — one panel per reducing block, like ToMe's visualisation.

Everything works from a source map (N x N0, 0/1: token t contains input token j; input token 0 is
[CLS]) recorded by ``adatok.reduction.apply(..., trace=True)``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.images import make_strip
from .figure import enlarge

TINT = torch.tensor([0.1, 0.35, 1.0])  # non-semantic patches are tinted with this blue


def patch_groups(source: Tensor, prefix: int = 1) -> Tensor:
    """Token index each input patch belongs to (-1 if pruned). ``source`` N x N0 -> (N0 - prefix,)."""
    patches = source[:, prefix:] > 0
    owner = patches.float().argmax(dim=0)
    return torch.where(patches.any(dim=0), owner, torch.full_like(owner, -1))


def merge_map(image: Tensor, source: Tensor, grid: tuple[int, int], prefix: int = 1,
              boundaries: bool = True) -> Tensor:
    """Each token's patches filled with their mean colour, borders between tokens in white, pruned
    patches as a grey checkerboard. ``image`` 3 x H x W in [0, 1] (H, W multiples of the grid) -> 3 x H x W."""
    gh, gw = grid
    _, h, w = image.shape
    ph, pw = h // gh, w // gw
    groups = patch_groups(source, prefix)  # (gh*gw,)
    patch_mean = F.avg_pool2d(image[None].float(), (ph, pw))[0].flatten(1)  # 3 x P
    ids = groups.clamp(min=0)
    count = torch.zeros(source.shape[0]).index_add_(0, ids, torch.ones_like(ids, dtype=torch.float32))
    colour = torch.zeros(3, source.shape[0]).index_add_(1, ids, patch_mean) / count.clamp(min=1)
    fill = colour[:, ids]  # 3 x P
    out = fill.reshape(3, gh, gw).repeat_interleave(ph, 1).repeat_interleave(pw, 2)
    pruned = (groups < 0).reshape(1, gh, gw).repeat_interleave(ph, 1).repeat_interleave(pw, 2)
    out = torch.where(pruned, _checker(h, w), out)  # pruned: a grey checkerboard, unlike any content
    if boundaries:
        g = groups.reshape(gh, gw)
        edge_v = g[:, 1:] != g[:, :-1]  # border between columns c and c+1
        edge_h = g[1:, :] != g[:-1, :]
        for r, c in edge_v.nonzero().tolist():
            out[:, r * ph:(r + 1) * ph, (c + 1) * pw - 1:(c + 1) * pw + 1] = 1.0
        for r, c in edge_h.nonzero().tolist():
            out[:, (r + 1) * ph - 1:(r + 1) * ph + 1, c * pw:(c + 1) * pw] = 1.0
    return out


def _checker(h: int, w: int, cell: int = 4) -> Tensor:
    yy, xx = torch.meshgrid(torch.arange(h) // cell, torch.arange(w) // cell, indexing="ij")
    return (0.3 + 0.25 * ((yy + xx) % 2).float())[None].expand(3, h, w)


def split_map(image: Tensor, nonsemantic: Tensor, grid: tuple[int, int], prefix: int = 1,
              alive: Optional[Tensor] = None) -> Tensor:
    """ImagePiece's split at a block: non-semantic (candidate) patches tinted blue, patches pruned
    before the block (not ``alive``) as a grey checkerboard, semantic ones as they are. ``nonsemantic`` / ``alive``
    (N0,) bool."""
    gh, gw = grid
    _, h, w = image.shape

    def upsample(m):
        m = m[prefix:].reshape(1, gh, gw).float()
        return m.repeat_interleave(h // gh, 1).repeat_interleave(w // gw, 2)

    mask = upsample(nonsemantic)
    tinted = 0.45 * image + 0.55 * TINT[:, None, None]
    out = image * (1 - mask) + tinted * mask
    if alive is not None:
        out = torch.where(upsample(alive) < 0.5, _checker(h, w), out)
    return out


def merge_figure(image: Tensor, blocks: Sequence, grid: tuple[int, int], sample: int = 0,
                 prefix: int = 1, title: Optional[str] = None, per_row: int = 6, min_side: int = 160) -> Tensor:
    """The picture ``adatok viz merges`` writes: the image, then the merge map after every block
    that changed the tokens, ``per_row`` panels a row; under each row (when the method records it,
    i.e. ImagePiece) the semantic / non-semantic split at those blocks; blocks are numbered from 1.
    Images smaller than ``min_side`` are enlarged (whole pixels) first. ``blocks``:
    :class:`adatok.reduction.BlockTrace` list. Returns 3 x H' x W' in [0, 1]."""
    gh, gw = grid
    image = image.float().cpu()
    image = image[:, : image.shape[1] - image.shape[1] % gh, : image.shape[2] - image.shape[2] % gw]
    # panels of small models (e.g. 32 px) are enlarged to >= min_side so every patch and label is readable
    image = enlarge(image, min_side)
    shown = [b for b in blocks if b.tokens_out != b.tokens_in or b.nonsemantic is not None]
    blank = torch.ones_like(image)
    columns = [(image, title or "input", None, "blue: non-semantic")]
    for j, b in enumerate(shown):
        panel = merge_map(image, b.source[sample].cpu(), grid, prefix)
        label = f"block {b.block + 1}: {b.tokens_in}->{b.tokens_out}"  # blocks counted from 1, as in the docs
        split = None
        if b.nonsemantic is not None:
            alive = shown[j - 1].source[sample].cpu().amax(dim=0) > 0 if j else None
            split = split_map(image, b.nonsemantic[sample].cpu(), grid, prefix, alive)
        columns.append((panel, label, split, f"block {b.block + 1} pool" if split is not None else ""))
    with_split = any(c[2] is not None for c in columns)
    rows = []
    for start in range(0, len(columns), per_row):
        chunk = columns[start:start + per_row]
        rows.append(make_strip([c[0] for c in chunk], [c[1] for c in chunk]))
        if with_split:
            rows.append(make_strip([blank if c[2] is None else c[2] for c in chunk], [c[3] for c in chunk]))
    width = max(r.shape[2] for r in rows)
    rows = [F.pad(r, (0, width - r.shape[2], 0, 4), value=1.0) for r in rows]
    return torch.cat(rows, dim=1)
