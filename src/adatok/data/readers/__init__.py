"""Readers: one dataset class per kind of source, all with the item protocol of ``base.py``
(``dataset[(index, seed)]``). ``adatok.data.create_dataset`` picks the reader for a path."""

from .base import SampleDataset
from .folder import ImageDataset, scan_image_folder
from .shards import SHARD_IMAGE_FIELDS, ShardDataset, split_member_name
from .stream import StreamBatches, StreamShards, is_stream
from .tokens import TokenDataset

__all__ = ["SHARD_IMAGE_FIELDS", "ImageDataset", "SampleDataset", "ShardDataset", "StreamBatches", "StreamShards", "TokenDataset",
           "is_stream", "scan_image_folder", "split_member_name"]
