"""WebDataset tar shards, read with random access.

Shards follow the WebDataset conventions: uncompressed tar files; the members of a sample
share a key (the member name up to the first dot of its base name) and the rest of the name
is the field (``jpg``, ``png``, ``webp``, ... for the image, ``cls`` for a text int label,
``json`` for metadata). :class:`ShardDataset` indexes member offsets once (tar headers only)
and reads each sample with one ``pread`` — random access, so the same sampler drives folders and
shards. ``adatok.data.shard_writer`` writes such shards; ``adatok.data.shard_paths`` expands
shard patterns.
"""

from __future__ import annotations

import os
import tarfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import AdatokError, ImageLoadError
from ..images import IMAGE_EXTENSIONS, read_image
from ..shard_paths import expand_shards
from ..transforms import ImageTransform
from .base import SampleDataset

#: Image fields looked for in a shard sample, in order of preference.
SHARD_IMAGE_FIELDS = ("jpg", "jpeg", "png", "webp") + tuple(
    sorted(e[1:] for e in IMAGE_EXTENSIONS if e[1:] not in ("jpg", "jpeg", "png", "webp"))
)
_MAX_OPEN_SHARDS = 16


class ShardDataset(SampleDataset):
    """Random access to the samples of WebDataset-style tar shards (see the module doc).

    ``shards``: a folder (its ``*.tar`` files, sorted), a list of paths, or a pattern with
    braces and/or glob characters (``"data/shard-{000000..000009}.tar"``, ``"data/*.tar"``;
    several patterns may be joined with ``::``). Samples are numbered in shard order, then in
    order of appearance. A sample without an image field is ignored; ``.cls`` gives the
    label (-1 without one). Open file handles are kept per process (re-opened after a fork)
    and dropped when the dataset is pickled, so DataLoader workers of any start method work.
    """

    def __init__(self, shards: str | Path | Sequence[str | Path], transform: ImageTransform,
                 cache_prepared: bool = False):
        super().__init__(transform, cache_prepared)
        self.shards = expand_shards(shards)
        shard_ids, keys, fields, spans = [], [], [], []
        for shard_id, path in enumerate(self.shards):
            for key, field, image_span, cls_span in _index_shard(path):
                shard_ids.append(shard_id)
                keys.append(key)
                fields.append(field)
                spans.append(image_span + cls_span)
        if not keys:
            raise AdatokError(f"{self.shards[0]}{' ...' if len(self.shards) > 1 else ''}: no "
                              f"samples with an image field ({', '.join(SHARD_IMAGE_FIELDS[:4])}, "
                              "...) in the shards")
        self.keys = keys
        self._fields = fields
        self._shard_ids = np.asarray(shard_ids, dtype=np.int32)
        # Columns: image offset, image size, cls offset, cls size (-1 when there is no cls).
        self._spans = np.asarray(spans, dtype=np.int64)
        self._reset_handles()

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def has_labels(self) -> bool:
        """Whether every sample has a ``.cls`` member."""
        return bool((self._spans[:, 3] >= 0).all())

    def _describe(self) -> str:
        return f"shards {self.shards[0]}{' ...' if len(self.shards) > 1 else ''}"

    def __repr__(self) -> str:
        return f"ShardDataset({len(self.shards)} shards, {len(self)} samples, {self.transform})"

    def sample_name(self, index: int) -> str:
        """``"SHARD.tar:KEY.FIELD"``: where sample ``index`` lives (for messages)."""
        return f"{self.shards[self._shard_ids[index]]}:{self.keys[index]}.{self._fields[index]}"

    def _load(self, index: int) -> tuple[Image.Image, int]:
        name = self.sample_name(index)
        shard = int(self._shard_ids[index])
        offset, size, cls_offset, cls_size = (int(v) for v in self._spans[index])
        image = read_image(self._read(shard, offset, size, name), name=name)
        if cls_size < 0:
            return image, -1
        text = self._read(shard, cls_offset, cls_size, name)
        try:
            return image, int(text.decode("utf-8").strip())
        except (UnicodeDecodeError, ValueError):
            raise ImageLoadError(f"{self.shards[shard]}:{self.keys[index]}.cls",
                                 f"label is not an int ({text[:20]!r})",
                                 "a .cls member holds a decimal class id") from None

    # ------------------------------------------------------------------ file handles

    def _reset_handles(self) -> None:
        self._pid = os.getpid()
        self._handles: OrderedDict[int, object] = OrderedDict()
        self._lock = threading.Lock()

    def _read(self, shard: int, offset: int, size: int, name: str) -> bytes:
        if self._pid != os.getpid():  # forked into a worker: never share the parent's files
            self._reset_handles()
        try:
            with self._lock:
                handle = self._handles.get(shard)
                if handle is None:
                    handle = open(self.shards[shard], "rb", buffering=0)  # noqa: SIM115
                    self._handles[shard] = handle
                    if len(self._handles) > _MAX_OPEN_SHARDS:
                        self._handles.popitem(last=False)[1].close()
                else:
                    self._handles.move_to_end(shard)
            data = _pread(handle, size, offset)
        except OSError as err:
            raise ImageLoadError(name, f"cannot read the shard ({err.strerror or err})",
                                 "check that the shard file is still there") from None
        if len(data) != size:
            raise ImageLoadError(name, f"shard is truncated (got {len(data)} of {size} bytes)",
                                 "re-write or re-copy the shard")
        return data

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        for key in ("_handles", "_lock", "_pid"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset_handles()

    def __del__(self) -> None:
        for handle in getattr(self, "_handles", {}).values():
            try:
                handle.close()
            except Exception:
                pass


def _pread(handle, size: int, offset: int) -> bytes:
    if hasattr(os, "pread"):  # no shared file position: safe across threads
        return os.pread(handle.fileno(), size, offset)
    handle.seek(offset)
    return handle.read(size)


def split_member_name(name: str) -> tuple[str, str] | None:
    """WebDataset's split of a member name into ``(key, field)``: the key runs up to the
    first dot of the base name (directories kept), the field is the rest, lower-cased."""
    folder, _, base = name.rpartition("/")
    stem, dot, field = base.partition(".")
    if not dot or not stem or not field:
        return None
    return (f"{folder}/{stem}" if folder else stem), field.lower()


def _index_shard(path: Path):
    """Yield ``(key, image field, (offset, size), (cls offset, cls size))`` per sample."""
    samples: dict[str, dict[str, tuple[int, int]]] = {}
    try:
        with tarfile.open(path, mode="r:") as tar:  # "r:" = no compression: offsets are real
            for member in tar:
                if not member.isreg():
                    continue
                split = split_member_name(member.name)
                if split is not None:
                    samples.setdefault(split[0], {})[split[1]] = (member.offset_data, member.size)
    except tarfile.ReadError as err:
        raise AdatokError(f"{path}: not an uncompressed tar shard ({err}) — shards must be "
                          "plain .tar files (decompress .tar.gz first)") from None
    except OSError as err:
        raise AdatokError(f"{path}: cannot read shard ({err.strerror or err})") from None
    for key, members in samples.items():
        field = next((f for f in SHARD_IMAGE_FIELDS if f in members), None)
        if field is None:
            continue
        yield key, field, members[field], members.get("cls", (-1, -1))
