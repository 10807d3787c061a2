"""One factory for every data source (as timm's ``data/reader_factory.py``): a path -> a dataset.

``create_dataset(source, ...)`` reads ``source`` as a token file (``.safetensors``/``.npz``: a
:class:`TokenDataset`), WebDataset tar shards (a ``.tar``, a brace pattern, or a folder holding
``*.tar``: a :class:`ShardDataset`; ``pipe:CMD``, URLs and ``.tar.gz`` shards, or ``format="stream"``:
:class:`StreamShards`, read by the webdataset library), an ImageFolder tree (``labelled``) or a plain image folder
(an :class:`ImageDataset`). Every image dataset follows the item protocol of ``readers/base.py``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .token_files import TOKEN_SUFFIXES

FORMATS = ("auto", "folder", "imagefolder", "shards", "stream")


def is_shards(source: str) -> bool:
    """Whether ``source`` names tar shards (a ``.tar``, a brace pattern, or a folder of ``*.tar``)."""
    p = Path(source)
    return ".tar" in source or "{" in source or (p.is_dir() and any(p.glob("*.tar")))


def create_dataset(source: str, image_size: int, *, labelled: bool = False, train: bool = False,
                   format: str = "auto", crop: str = "random", flip: bool = True, scale=(0.08, 1.0),
                   cache: bool = False, transform=None):
    """The dataset of ``source``. ``train=True`` uses the training transform (``crop``, ``flip``,
    ``scale``), else the evaluation one (center crop, no flip); ``labelled`` asks for class labels
    (an ImageFolder tree or labelled shards); ``cache`` keeps prepared images in memory;
    ``transform`` replaces the image transform (e.g. timm's ``create_transform``)."""
    from .readers import ImageDataset, ShardDataset, StreamShards, TokenDataset, is_stream
    from .transforms import ImageTransform

    if not source:
        raise ConfigError("no training data: set data.train=FOLDER (images, ImageFolder tree, or shards)")
    if source.endswith(TOKEN_SUFFIXES):  # a token file (generator training)
        return TokenDataset(source)
    if transform is None:
        transform = ImageTransform(image_size, crop=crop if train else "center", flip=flip and train,
                                   scale=tuple(scale))
    if format == "auto":
        format = ("stream" if is_stream(source) else "shards" if is_shards(source)
                  else ("imagefolder" if labelled else "folder"))
    if format in ("shards", "stream"):
        shards = (StreamShards(source, transform) if format == "stream"
                  else ShardDataset(source, transform, cache_prepared=cache))
        if labelled and not shards.has_labels:
            raise ConfigError(f"{source}: these shards carry no .cls labels and this task needs them — write them "
                              "from an ImageFolder tree: adatok data shard SRC DST --labelled")
        return shards
    if labelled and format != "imagefolder":
        raise ConfigError(f"this task needs labels: data.format must be imagefolder or shards, got {format}")
    return ImageDataset(source, transform, labelled=format == "imagefolder", cache_prepared=cache)
