"""Image datasets laid out as class folders (``root/<class>/<image>``), TAO's ``classification_folder``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from automl.errors import AutomlError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


def list_class_folder(root: str | Path, key: str = "dataset") -> tuple[list[Path], list[str], list[str]]:
    """``(image paths, class name per image, sorted class names)`` of a class-folder dataset."""
    root = Path(root)
    if not root.is_dir():
        raise AutomlError(f"{key}: folder not found: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths, names = [], []
    for name in classes:
        for p in sorted((root / name).iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
                paths.append(p)
                names.append(name)
    if not paths:
        raise AutomlError(f"{key}: no images in class folders under {root}")
    return paths, names, classes


def list_images(root: str | Path, key: str = "input_path") -> list[Path]:
    """Every image under ``root`` (a file, a flat folder or class folders), sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise AutomlError(f"{key}: not found: {root}")
    images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise AutomlError(f"{key}: no images under {root}")
    return images


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


class ClassFolderDataset(Dataset):
    """``(image, label)`` pairs. ``class_to_label`` fixes the numbering (e.g. shared by reference and
    query sets); by default classes are numbered in sorted order.

    ``cache=True`` keeps decoded images in memory (worth it for small generated sets on few cores:
    decoding PNGs otherwise dominates a tiny model's step).
    """

    def __init__(self, root: str | Path, transform: Callable | None = None, *, key: str = "dataset",
                 class_to_label: dict[str, int] | None = None, cache: bool = False):
        self.root = Path(root)
        self.paths, names, self.classes = list_class_folder(root, key)
        if class_to_label is None:
            class_to_label = {c: i for i, c in enumerate(self.classes)}
        self.class_to_label = dict(class_to_label)
        for name in self.classes:
            if name not in self.class_to_label:
                self.class_to_label[name] = len(self.class_to_label)
        self.class_names = names
        self.labels = [self.class_to_label[n] for n in names]
        self.transform = transform
        self._cache: list[Image.Image] | None = [load_rgb(p) for p in self.paths] if cache else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        img = self._cache[index] if self._cache is not None else load_rgb(self.paths[index])
        if self.transform is not None:
            img = self.transform(img)
        return img, self.labels[index]


class ImageListDataset(Dataset):
    """``(image, index)`` for a flat list of images (inference inputs)."""

    def __init__(self, paths: Sequence[Path], transform: Callable | None = None):
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        img = load_rgb(self.paths[index])
        return (self.transform(img) if self.transform else img), index
