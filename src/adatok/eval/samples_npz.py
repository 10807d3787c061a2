"""Sample sets as ``.npz`` files in the ADM evaluator's format (Dhariwal & Nichol, "Diffusion
Models Beat GANs on Image Synthesis", NeurIPS 2021, its ``evaluations/``): ``arr_0`` uint8
``N x H x W x 3`` (and ``arr_1`` int64 ``N`` class labels), stored uncompressed like ``np.savez``.

Both directions stream: :func:`write_samples_npz` writes the array batch by batch into the zip
member (one batch in memory, never the 50k images), into a temp file renamed over the target
(``adatok.atomic``); :func:`iter_npz_images` reads ``arr_0`` batch by batch from the member.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np
import torch

from ..atomic import atomic_write
from ..errors import InputError, OutputError

__all__ = ["iter_npz_images", "npz_sample_shape", "write_samples_npz"]


def write_samples_npz(path, batches: Iterable[torch.Tensor], total: int, labels: Optional[torch.Tensor] = None,
                      overwrite: bool = False) -> Path:
    """Write ``total`` images, given as batches of uint8 (or [0, 1] float) ``B x 3 x H x W``
    tensors, as ``arr_0`` uint8 ``total x H x W x 3`` (+ ``arr_1`` = ``labels``). An existing
    file is kept (``OutputError``) unless ``overwrite``; a run that fails writes nothing."""
    from ..data.images import to_uint8

    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError(f"--npz {path}: exists; pass --overwrite to replace it, or pick another file name")

    def write(f) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
            written = 0
            member = None
            try:
                for batch in batches:
                    u8 = batch if batch.dtype == torch.uint8 else to_uint8(batch)
                    if u8.dim() != 4 or u8.shape[1] != 3:
                        raise InputError(f"samples must be B x 3 x H x W, got {tuple(u8.shape)}")
                    nhwc = u8.permute(0, 2, 3, 1).contiguous().cpu().numpy()
                    if member is None:
                        shape = (total, *nhwc.shape[1:])
                        member = z.open("arr_0.npy", "w", force_zip64=True)
                        np.lib.format.write_array_header_1_0(
                            member, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                                     "fortran_order": False, "shape": shape})
                    elif nhwc.shape[1:] != shape[1:]:
                        raise InputError(f"samples changed size from {shape[1:]} to {nhwc.shape[1:]}")
                    if written + len(nhwc) > total:
                        raise InputError(f"more than the announced {total} samples")
                    member.write(nhwc.tobytes())
                    written += len(nhwc)
            finally:
                if member is not None:
                    member.close()
            if written != total:
                raise InputError(f"expected {total} samples, got {written}")
            if labels is not None:
                with z.open("arr_1.npy", "w", force_zip64=True) as m:
                    np.lib.format.write_array(m, np.asarray(labels.cpu(), dtype=np.int64))

    return atomic_write(path, write)


def _open_member(z: zipfile.ZipFile, path: Path, key: str):
    name = f"{key}.npy"
    if name not in z.namelist():
        raise InputError(f"{path}: holds no '{key}' array (found {sorted(n[:-4] for n in z.namelist())}); "
                         "expected samples in the ADM format (arr_0: uint8 N x H x W x 3) or FID statistics "
                         "(mu, sigma)")
    member = z.open(name)
    version = np.lib.format.read_magic(member)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(member)
    if dtype != np.uint8 or fortran or len(shape) != 4 or shape[3] != 3:
        member.close()
        raise InputError(f"{path}: '{key}' is {dtype} {shape}{' (Fortran order)' if fortran else ''}; expected "
                         "uint8 N x H x W x 3 images (the ADM evaluator's format)")
    return member, shape


def npz_sample_shape(path) -> tuple[int, int, int, int]:
    """``(N, H, W, 3)`` of the ``arr_0`` samples of ``path`` (header only)."""
    path = Path(path)
    with zipfile.ZipFile(path) as z:
        member, shape = _open_member(z, path, "arr_0")
        member.close()
    return tuple(shape)


def iter_npz_images(path, batch_size: int, rank: int = 0, world: int = 1,
                    key: str = "arr_0") -> Iterator[torch.Tensor]:
    """uint8 ``B x 3 x H x W`` batches of the samples ``path[key]``, read ``batch_size`` rows at a
    time; with ``world > 1`` only the rows ``i`` with ``i % world == rank`` (each rank its share)."""
    path = Path(path)
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(f"{path}: not a readable .npz file ({e})") from None
    with z:
        member, (n, h, w, c) = _open_member(z, path, key)
        row = h * w * c
        with member:
            for start in range(0, n, batch_size):
                count = min(batch_size, n - start)
                data = member.read(count * row)
                if len(data) != count * row:
                    raise InputError(f"{path}: '{key}' is truncated at row {start + len(data) // row} of {n}")
                rows = np.frombuffer(data, np.uint8).reshape(count, h, w, c)
                if world > 1:
                    rows = rows[(np.arange(start, start + count) % world) == rank]
                if len(rows):
                    yield torch.from_numpy(rows.copy()).permute(0, 3, 1, 2).contiguous()
