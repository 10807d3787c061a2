"""Data: image files to tensors (float ``B x 3 x H x W`` in [0, 1]) and back."""

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
from adatok.data.datasets import ImageDataset, ShardDataset, write_shards
from adatok.data.photos import assemble_photo_pool
from adatok.data.sampler import ResumableBatchSampler
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
    "ImageDataset",
    "ShardDataset",
    "write_shards",
    "assemble_photo_pool",
    "ResumableBatchSampler",
    "ImageTransform",
]
