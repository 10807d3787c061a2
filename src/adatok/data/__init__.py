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
)

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
]
