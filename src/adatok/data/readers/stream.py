"""WebDataset shards read as streams (the ``webdataset`` library), with exact-resume bookkeeping.

:class:`StreamShards` reads shards that cannot be read with random access — ``pipe:CMD`` URLs
(``"pipe:cat data/shard-000.tar"``, ``"pipe:aws s3 cp s3://b/s-{000..009}.tar -"``), compressed
``.tar.gz`` / ``.tgz`` shards, ``http(s)://`` URLs — through webdataset's
``tariterators.tarfile_samples`` (opening, decompressing, grouping members by key) and expands
shard lists with webdataset's ``shardlists.expand_urls`` (braces, ``::``). Images are decoded by
adatok's ``read_image``, as for :class:`~adatok.data.readers.ShardDataset`.

webdataset itself has no resume position: a restarted pipeline starts at the top of its shards.
So the position is adatok's (:class:`StreamBatches`): an epoch is a deterministic stream (shard
order and a shuffle buffer seeded by (seed, epoch)); batch ``b`` of rank ``r`` of ``W`` holds
stream positions ``b*B*W + r + k*W`` (``k < B``) — the slots of ``ResumableBatchSampler`` — and
each sample's augmentation seed is ``sample_seed(seed, epoch, position)``. Resuming at batch ``s``
replays the epoch's stream up to there without decoding, then yields exactly what the
uninterrupted run would have. Every rank and DataLoader worker reads the whole stream and decodes
only its own samples (worker ``w`` of ``n`` takes every ``n``-th batch; DataLoader returns them in
order). Construction makes one counting pass over the shards (tar headers and bytes, no image
decoding): the epoch length, the labels check, and a one-line error naming a missing or corrupt
shard before training starts. A sample whose image cannot be decoded is a one-line error naming
``SHARD:KEY.FIELD`` (a stream cannot substitute the next sample without moving every later slot).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch.utils.data import IterableDataset, default_collate, get_worker_info

from ...errors import AdatokError, ConfigError, ImageLoadError
from ..images import read_image
from ..sampler import sample_seed
from ..transforms import ImageTransform
from .shards import SHARD_IMAGE_FIELDS

logger = logging.getLogger("adatok.data")

#: Sources that ``create_dataset`` reads as streams (format ``auto``).
STREAM_PREFIXES = ("pipe:", "http://", "https://", "gs://", "s3://")
STREAM_SUFFIXES = (".tar.gz", ".tgz")


def is_stream(source: str) -> bool:
    """Whether ``source`` must be streamed: a ``pipe:``/URL source or compressed ``.tar.gz`` shards."""
    parts = str(source).split("::")
    return any(p.startswith(STREAM_PREFIXES) or p.endswith(STREAM_SUFFIXES) for p in parts)


def _webdataset():
    try:
        import webdataset
        from webdataset.tariterators import tarfile_samples
    except ImportError:
        raise ConfigError("streaming shards (pipe:, .tar.gz, URLs) needs webdataset: "
                          "pip install 'adatok[train]'") from None
    return webdataset, tarfile_samples


def expand_stream_urls(shards: str | Path | Sequence[str | Path]) -> list[str]:
    """Shard URLs from a pattern (webdataset's brace and ``::`` expansion) or a list."""
    webdataset, _ = _webdataset()
    items = [str(s) for s in shards] if isinstance(shards, (list, tuple)) else [str(shards)]
    urls = [url for item in items for url in webdataset.shardlists.expand_urls(item)]
    if not urls:
        raise AdatokError("no shards given — pass a pattern, a pipe:CMD or a list of shards")
    return urls


def _reason(err: Exception) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    first = err.args[0] if err.args else err
    return str(first).strip().splitlines()[0] if str(first).strip() else type(err).__name__


class StreamShards:
    """The samples of streamed WebDataset shards, in shard order (see the module doc).

    ``shards``: a pattern (``"data/s-{000..009}.tar.gz"``, ``"pipe:cat a.tar::pipe:cat b.tar"``)
    or a list of URLs. ``len()`` is the number of samples with an image field; ``has_labels``
    whether all have ``.cls``.
    """

    def __init__(self, shards: str | Path | Sequence[str | Path], transform: ImageTransform):
        self.urls = expand_stream_urls(shards)
        self.transform = transform
        self.counts, labelled = [], True
        for shard in range(len(self.urls)):
            n = 0
            for _, _, _, _, cls in self.raw(shard):
                n += 1
                labelled &= cls is not None
            self.counts.append(n)
        if not sum(self.counts):
            raise AdatokError(f"{self.urls[0]}{' ...' if len(self.urls) > 1 else ''}: no samples with an image "
                              f"field ({', '.join(SHARD_IMAGE_FIELDS[:4])}, ...) in the shards")
        self.has_labels = labelled

    def __len__(self) -> int:
        return sum(self.counts)

    def __repr__(self) -> str:
        return f"StreamShards({len(self.urls)} shards, {len(self)} samples, {self.transform})"

    def raw(self, shard: int) -> Iterator[tuple[int, str, str, bytes, bytes | None]]:
        """``(shard, key, image field, image bytes, cls bytes or None)`` per sample of one shard.

        A shard that cannot be opened or read to its end is an AdatokError naming it."""
        _, tarfile_samples = _webdataset()
        url = self.urls[shard]
        try:
            for sample in tarfile_samples([{"url": url}]):
                field = next((f for f in SHARD_IMAGE_FIELDS if f in sample), None)
                if field is not None:
                    yield shard, sample["__key__"], field, sample[field], sample.get("cls")
        except AdatokError:
            raise
        except Exception as err:  # webdataset raises tarfile/gzip/OSError/pipe-status errors
            raise AdatokError(f"{url}: cannot read this shard ({_reason(err)}) — check that it exists, is a "
                              "complete tar (or .tar.gz) and that a pipe: command succeeds") from None

    def epoch(self, seed: int, epoch: int, shuffle: bool, buffer: int) -> Iterator[tuple]:
        """One pass over the samples: shards in a seeded order, then a seeded shuffle buffer
        (deterministic given ``(seed, epoch)``); in file order when ``shuffle`` is False."""
        order = list(range(len(self.urls)))
        if not shuffle:
            for shard in order:
                yield from self.raw(shard)
            return
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(order), generator=gen).tolist()
        pool: list[tuple] = []
        for shard in order:
            for sample in self.raw(shard):
                pool.append(sample)
                if len(pool) >= buffer:
                    yield pool.pop(int(torch.randint(len(pool), (1,), generator=gen)))
        while pool:
            yield pool.pop(int(torch.randint(len(pool), (1,), generator=gen)))

    def decode(self, sample: tuple, seed: int | None) -> dict:
        """The item dict of ``readers/base.py`` for one raw sample (``index`` is -1: streams have none)."""
        shard, key, field, data, cls = sample
        name = f"{self.urls[shard]}:{key}.{field}"
        try:
            image = read_image(data, name=name)
        except ImageLoadError as err:
            raise AdatokError(f"{err} — a streamed shard cannot skip a sample; re-write the shard") from None
        label = -1
        if cls is not None:
            try:
                label = int(cls.decode("utf-8").strip())
            except (UnicodeDecodeError, ValueError):
                raise AdatokError(f"{self.urls[shard]}:{key}.cls: label is not an int ({cls[:20]!r})") from None
        return {"image": self.transform.apply(self.transform.prepare(image), seed), "label": label, "index": -1}


class StreamBatches(IterableDataset):
    """Per-rank training batches from :class:`StreamShards`, starting at batch ``start``.

    Same contract as ``ResumableBatchSampler`` (``batches_per_epoch``, ``repeat`` views per image,
    slots, seeds); each item is an already collated batch (use ``DataLoader(batch_size=None)``).
    ``buffer``: shuffle-buffer size in samples.
    """

    def __init__(self, shards: StreamShards, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, start: int = 0, repeat: int = 1, buffer: int = 1000):
        if repeat < 1:
            raise ConfigError(f"data.repeat must be a whole number >= 1, got {repeat}")
        self.shards, self.batch_size, self.seed, self.repeat, self.buffer = shards, batch_size, seed, repeat, buffer
        self.rank, self.world_size, self.shuffle, self.start = rank, world_size, shuffle, start
        self.batches_per_epoch = (len(shards) * repeat // world_size) // batch_size
        if self.batches_per_epoch < 1:
            raise ConfigError(
                f"the shards hold {len(shards)} images (x{repeat} per epoch): too few for batch size {batch_size} "
                f"on {world_size} process(es); add images, raise data.repeat or lower train.batch_size")

    def _stream(self, epoch: int) -> Iterator[tuple]:
        for view in range(self.repeat):
            yield from self.shards.epoch(self.seed, epoch * self.repeat + view, self.shuffle, self.buffer)

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        per_batch = self.batch_size * self.world_size
        position = self.start
        while True:
            epoch, first_batch = divmod(position, self.batches_per_epoch)
            items: list[dict] = []
            for p, sample in enumerate(self._stream(epoch)):
                batch, slot = divmod(p, per_batch)
                if batch >= self.batches_per_epoch:
                    break
                mine = (batch >= first_batch and slot % self.world_size == self.rank
                        and (epoch * self.batches_per_epoch + batch - self.start) % workers == worker)
                if mine:
                    items.append(self.shards.decode(sample, sample_seed(self.seed, epoch, p)))
                    if len(items) == self.batch_size:
                        yield default_collate(items)
                        items = []
            position = (epoch + 1) * self.batches_per_epoch
