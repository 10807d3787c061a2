#!/usr/bin/env python
"""Fashion-MNIST -> ImageFolder of PNGs (DST/train/<class>/*.png, DST/test/<class>/*.png).

The data come from the Debian package ``dataset-fashion-mnist`` (Zalando Research, MIT licence):
70,000 grayscale 28 x 28 product photos in 10 classes, 60k train / 10k test, as idx.gz files. With
no ``--source``, the package is fetched with ``apt-get download`` into a temporary folder and
unpacked with ``dpkg-deb -x`` (nothing is installed system-wide; run ``apt-get update`` first if
apt has no package lists). Class folders are named ``<label>_<name>`` so that their sorted order
is the label order.

    python scripts/fashion_mnist.py data/fashion_mnist                     # fetch + convert (~1 min)
    python scripts/fashion_mnist.py data/fmnist --source /tmp/x/usr/share/datasets/fashion-mnist
    python scripts/fashion_mnist.py data/fmnist_small --train-limit 6000 --test-limit 1000
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot"]
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
LICENSE = """# Fashion-MNIST

Images from Fashion-MNIST (https://github.com/zalandoresearch/fashion-mnist), Copyright 2017
Zalando SE, released under the MIT licence (Expat), as packaged by Debian (`dataset-fashion-mnist`).
Converted to PNG by adatok's scripts/fashion_mnist.py; labels are the class folder names.
"""


def read_idx(path: Path) -> np.ndarray:
    """An idx(.gz) file as a numpy array (uint8 data; big-endian header of dims)."""
    data = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise SystemExit(f"{path}: not an unsigned-byte idx file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fetch(tmp: Path) -> Path:
    """apt-get download + dpkg-deb -x the Debian package; returns the folder of the idx.gz files."""
    try:
        subprocess.run(["apt-get", "download", "dataset-fashion-mnist"], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"apt-get download dataset-fashion-mnist failed ({e}); run `apt-get update`, or pass "
                         "--source with a folder holding the idx.gz files") from None
    deb = next(tmp.glob("dataset-fashion-mnist*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp / "x")], check=True)
    return tmp / "x" / "usr" / "share" / "datasets" / "fashion-mnist"


def convert(source: Path, dst: Path, limits: dict) -> dict:
    counts = {}
    for split, (images_name, labels_name) in FILES.items():
        images, labels = read_idx(source / images_name), read_idx(source / labels_name)
        if len(images) != len(labels):
            raise SystemExit(f"{source}: {split} has {len(images)} images but {len(labels)} labels")
        n = min(len(images), limits.get(split) or len(images))
        for c, name in enumerate(CLASSES):
            (dst / split / f"{c}_{name}").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            label = int(labels[i])
            Image.fromarray(images[i], mode="L").save(dst / split / f"{label}_{CLASSES[label]}" / f"{i:05d}.png")
        counts[split] = n
    (dst / "LICENSE.md").write_text(LICENSE)
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dst", type=Path, help="output folder")
    p.add_argument("--source", type=Path, help="folder with the four idx.gz files, or the .deb (default: fetch it)")
    p.add_argument("--train-limit", type=int, default=0, help="first N training images only (default: all 60k)")
    p.add_argument("--test-limit", type=int, default=0, help="first N test images only (default: all 10k)")
    args = p.parse_args(argv)
    limits = {"train": args.train_limit, "test": args.test_limit}
    with tempfile.TemporaryDirectory() as tmp:
        source = args.source
        if source is None:
            source = fetch(Path(tmp))
        elif source.suffix == ".deb":
            subprocess.run(["dpkg-deb", "-x", str(source), str(Path(tmp) / "x")], check=True)
            source = Path(tmp) / "x" / "usr" / "share" / "datasets" / "fashion-mnist"
        counts = convert(source, args.dst, limits)
    print(f"wrote {counts['train']} train and {counts['test']} test PNGs to {args.dst} ({len(CLASSES)} classes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
