"""Data: reading and writing images, shards and token files; no model runs here.

Shaped as timm's ``data/``: ``readers/`` holds one dataset class per kind of source (image folder,
tar shards, token file) with one item protocol, and :func:`create_dataset` picks the reader for a
path. Beside them: image loading (``images.py``), seeded transforms, the resumable sampler, shard
paths and the shard writer, and the token-file format.
"""

from adatok.data.images import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    MIN_SIDE,
    iter_image_batches,
    list_image_files,
    load_image,
    load_images,
    make_strip,
    save_image,
    to_uint8,
    read_image,
)
from adatok.data.factory import create_dataset
from adatok.data.readers import (ImageDataset, SampleDataset, ShardDataset, StreamBatches, StreamShards, TokenDataset,
                                 is_stream, split_member_name)
from adatok.data.sampler import ResumableBatchSampler
from adatok.data.shard_paths import expand_braces, expand_shards
from adatok.data.shard_writer import ShardWriteResult, write_shards
from adatok.data.token_files import TokenFile, is_token_file, read_token_file, write_token_file
from adatok.data.transforms import ImageTransform

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "MIN_SIDE",
    "iter_image_batches",
    "list_image_files",
    "load_image",
    "load_images",
    "make_strip",
    "save_image",
    "to_uint8",
    "read_image",
    "create_dataset",
    "ImageDataset",
    "SampleDataset",
    "ShardDataset",
    "StreamBatches",
    "StreamShards",
    "is_stream",
    "TokenDataset",
    "split_member_name",
    "expand_braces",
    "expand_shards",
    "ShardWriteResult",
    "write_shards",
    "TokenFile",
    "is_token_file",
    "read_token_file",
    "write_token_file",
    "ResumableBatchSampler",
    "ImageTransform",
]
