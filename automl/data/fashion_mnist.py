"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``).

A second, real retrieval dataset: the 10 clothing classes are split into known classes (train,
reference, val) and unknown ones (reference, test) in the TAO retail layout. Nothing is downloaded;
without the package :func:`find_fashion_mnist` raises an :class:`~automl.errors.AutomlError` that says
what to install.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from automl.errors import AutomlError

DEFAULT_DIRS = ("/usr/share/datasets/fashion-mnist",)
CLASS_NAMES = ("t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot")
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def find_fashion_mnist(root: str | Path | None = None) -> Path:
    for d in ([Path(root)] if root else [Path(p) for p in DEFAULT_DIRS]):
        if all((d / f).is_file() for pair in FILES.values() for f in pair):
            return d
    raise AutomlError("Fashion-MNIST not found: install Debian's package (apt-get install -y dataset-fashion-mnist) "
                      f"or pass its folder (looked in {root or ', '.join(DEFAULT_DIRS)})")


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise AutomlError(f"{path}: not an IDX file of unsigned bytes")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(split: str = "train", root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [N, 28, 28], labels uint8 [N])`` for ``split`` in ``train`` / ``test``."""
    if split not in FILES:
        raise AutomlError(f"Fashion-MNIST split must be one of {', '.join(FILES)}, got '{split}'")
    d = find_fashion_mnist(root)
    images, labels = (_read_idx(d / f) for f in FILES[split])
    if len(images) != len(labels):
        raise AutomlError(f"{d}: {split} images and labels differ in length")
    return images, labels


def make_fashion_mnist_dataset(out_dir: str | Path, *, per_class: int = 100, size: int = 32, seed: int = 0,
                               unknown_classes: tuple[int, ...] = (5, 7, 9, 8), root: str | Path | None = None) -> dict[str, Path]:
    """Write the TAO retail layout from Fashion-MNIST; ``unknown_classes`` (default: sandal, sneaker,
    ankle boot, bag) are held out. Training images come from the train split, every
    reference/val/test image from the test split, so no image is in two splits."""
    from automl.data.glyphs import split_sizes

    sizes = split_sizes(per_class, 10 - len(unknown_classes), len(unknown_classes))
    train_x, train_y = load_fashion_mnist("train", root)
    test_x, test_y = load_fashion_mnist("test", root)
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    paths: dict[str, Path] = {}

    def save(split: str, label: int, images: np.ndarray) -> None:
        folder = out / split / CLASS_NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        for i, arr in enumerate(images):
            img = Image.fromarray(arr).convert("RGB")
            if size != 28:
                img = img.resize((size, size), Image.BILINEAR)
            img.save(folder / f"{i:05d}.png", compress_level=1)

    for label in range(10):
        known = label not in unknown_classes
        test_idx = rng.permutation(np.flatnonzero(test_y == label))
        if known:
            train_idx = rng.permutation(np.flatnonzero(train_y == label))[: sizes["known_classes/train"]]
            save("known_classes/train", label, train_x[train_idx])
            n_ref, n_val = sizes["known_classes/reference"], sizes["known_classes/val"]
            save("known_classes/reference", label, test_x[test_idx[:n_ref]])
            save("known_classes/val", label, test_x[test_idx[n_ref:n_ref + n_val]])
        else:
            n_ref, n_test = sizes["unknown_classes/reference"], sizes["unknown_classes/test"]
            save("unknown_classes/reference", label, test_x[test_idx[:n_ref]])
            save("unknown_classes/test", label, test_x[test_idx[n_ref:n_ref + n_test]])
    for split in sizes:
        paths[split] = out / split
    return paths
