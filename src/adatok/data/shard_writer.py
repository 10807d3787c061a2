"""Writing WebDataset tar shards from a folder or a list of images (original bytes, never re-encoded)."""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from ..atomic import atomic_write
from ..errors import AdatokError, ImageLoadError, InputError
from .images import read_image
from .readers.folder import ImageDataset, scan_image_folder

logger = logging.getLogger("adatok.data")


class ShardWriteResult(NamedTuple):
    """What :func:`write_shards` wrote: shard paths, and how many files it skipped."""

    paths: list[Path]
    skipped: int


def write_shards(
    source: str | Path | ImageDataset | Sequence[str | Path],
    out_dir: str | Path,
    samples_per_shard: int = 1000,
    labelled: bool | None = None,
    overwrite: bool = False,
) -> ShardWriteResult:
    """Convert images into WebDataset tar shards ``out_dir/shard-000000.tar``, ...

    ``source``: a folder (scanned as :class:`ImageDataset` does), an :class:`ImageDataset`
    (its files, labels and ``labelled``), or a list of image files. Sample ``i`` (counting
    written samples) gets key ``%08d`` and the members ``KEY.<ext>`` (the original encoded
    bytes, never re-encoded; ``ext`` is the lower-cased suffix), ``KEY.cls`` (class id, when
    labelled) and ``KEY.json`` (``{"path": relative path[, "class": name]}``). Every image
    is decoded first; unreadable ones are skipped with one warning each and counted. Each
    shard is written to a temporary name and renamed when complete. Existing
    ``shard-*.tar`` files in ``out_dir`` are an error unless ``overwrite=True`` (then
    higher-numbered stale shards are removed after the new ones are in place).

    Returns ``ShardWriteResult(paths, skipped)`` (a tuple).
    """
    if not isinstance(samples_per_shard, int) or samples_per_shard < 1:
        raise InputError(f"samples_per_shard must be a positive int, got {samples_per_shard!r}")
    entries = _shard_entries(source, labelled)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    old = sorted(out_dir.glob("shard-*.tar"))
    if old and not overwrite:
        raise AdatokError(f"{out_dir}: already holds {len(old)} shard(s) — choose an empty "
                          "folder or pass overwrite=True (--overwrite)")
    paths, skipped, batch = [], 0, []
    for path, rel, label, class_name in entries:
        try:
            data = Path(path).read_bytes()
            read_image(data, name=path)  # verify it decodes; the bytes are stored as they are
        except (ImageLoadError, OSError) as err:
            skipped += 1
            logger.warning("skipping unreadable image %s", _one_line_error(path, err))
            continue
        batch.append((data, rel, label, class_name, Path(path).suffix.lower().lstrip(".")))
        if len(batch) == samples_per_shard:
            paths.append(_write_one_shard(out_dir, len(paths), batch, len(paths) * samples_per_shard))
            batch = []
    if batch:
        paths.append(_write_one_shard(out_dir, len(paths), batch, len(paths) * samples_per_shard))
    if not paths:
        raise AdatokError(f"{source}: no readable image to write ({skipped} skipped)")
    for stale in set(old) - set(paths):
        stale.unlink()
    return ShardWriteResult(paths, skipped)


def _shard_entries(source, labelled):
    """``[(path, relative name, label or None, class name or None)]`` in writing order."""
    if isinstance(source, ImageDataset):
        files, labels, classes, root = source.files, source.labels, source.classes, source.root
        labelled = source.labelled if labelled is None else labelled
        if labelled and not source.labelled:
            raise InputError("write_shards(labelled=True) needs a labelled ImageDataset")
    elif isinstance(source, (str, Path)) and Path(source).is_dir():
        root = Path(source)
        files, labels, classes = scan_image_folder(root, bool(labelled))
    elif isinstance(source, (str, Path)):
        raise AdatokError(f"{source}: no such folder — pass a folder of images or a list of files")
    else:
        if labelled:
            raise InputError("write_shards(labelled=True) needs a folder or an ImageDataset, "
                             "not a list of files")
        files = [Path(p) for p in source]
        if not files:
            raise AdatokError("write_shards got an empty list of files")
        root = Path(os.path.commonpath([str(p.absolute().parent) for p in files]))
        labels, classes = [-1] * len(files), []
    out = []
    for path, label in zip(files, labels):
        rel = Path(path).absolute().relative_to(Path(root).absolute()).as_posix()
        named = bool(labelled) and label >= 0
        out.append((Path(path), rel, label if named else None, classes[label] if named else None))
    return out


def _write_one_shard(out_dir: Path, number: int, batch, first_key: int) -> Path:
    def write(f) -> None:
        with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for i, (data, rel, label, class_name, ext) in enumerate(batch):
                key = f"{first_key + i:08d}"
                _add_member(tar, f"{key}.{ext}", data)
                if label is not None:
                    _add_member(tar, f"{key}.cls", str(label).encode())
                meta = {"path": rel} if class_name is None else {"path": rel, "class": class_name}
                _add_member(tar, f"{key}.json", json.dumps(meta, ensure_ascii=False).encode())

    return atomic_write(out_dir / f"shard-{number:06d}.tar", write)


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # fixed: same input, same bytes
    tar.addfile(info, io.BytesIO(data))


def _one_line_error(path, err: BaseException) -> str:
    if isinstance(err, ImageLoadError):
        return str(err)
    return f"{path}: {getattr(err, 'strerror', None) or err}"
