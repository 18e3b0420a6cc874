"""``automl data make --task mae``: a large unlabelled image pool plus a small labelled set.

That is the situation MAE pretraining is for: learn from the unlabelled pool, then finetune on few
labels. Layout (TAO's archive names, extracted)::

    <out>/images_train/            unlabelled pool (flat; pretrain's dataset.train_data_sources)
    <out>/labeled_train/<class>/   the small labelled set (finetune's dataset.train_data_sources)
    <out>/images_val/<class>/      labelled validation (finetune accuracy, pretrain k-NN accuracy)
    <out>/images_test/             unlabelled images to classify (inference)

Three sources: ``shapes`` (default; ten geometric shape classes drawn in random colours, sizes,
positions and rotations: global structure a small ViT can learn on a CPU in minutes), ``glyphs``
(characters rendered from the DejaVu fonts, via :mod:`automl.data.glyphs`; harder) and
``fashion_mnist`` (the real Fashion-MNIST images from Debian's ``dataset-fashion-mnist``, via
:mod:`automl.data.fashion_mnist`). Pool, labelled, val and
test images are all distinct images.
"""

from __future__ import annotations

import colorsys
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from automl.errors import AutomlError

SOURCES = ("shapes", "glyphs", "fashion_mnist")
SHAPES = ("circle", "square", "triangle", "cross", "ring", "hbars", "vbars", "diamond", "star", "checker")


def _shape_colour(rng: np.random.Generator, light: bool) -> tuple[int, int, int]:
    value = rng.uniform(0.7, 1.0) if light else rng.uniform(0.05, 0.4)
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.2, 0.9), value))


def render_shape(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One ``size`` x ``size`` image of a shape class, light on dark or dark on light."""
    big = size * 4  # drawn large, then downsampled: anti-aliased edges
    dark = rng.random() < 0.5
    img = Image.new("RGB", (big, big), _shape_colour(rng, dark))
    draw = ImageDraw.Draw(img)
    fg = _shape_colour(rng, not dark)
    r = big * rng.uniform(0.28, 0.42)
    cx, cy = big / 2 + rng.uniform(-0.1, 0.1) * big, big / 2 + rng.uniform(-0.1, 0.1) * big
    box, width = [cx - r, cy - r, cx + r, cy + r], max(2, int(r * 0.35))
    if kind == "circle":
        draw.ellipse(box, fill=fg)
    elif kind == "square":
        draw.rectangle(box, fill=fg)
    elif kind == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fg)
    elif kind == "cross":
        draw.rectangle([cx - r, cy - width / 2, cx + r, cy + width / 2], fill=fg)
        draw.rectangle([cx - width / 2, cy - r, cx + width / 2, cy + r], fill=fg)
    elif kind == "ring":
        draw.ellipse(box, outline=fg, width=width)
    elif kind == "hbars":
        for k in range(3):
            draw.rectangle([cx - r, cy - r + k * r * 0.8, cx + r, cy - r + k * r * 0.8 + r * 0.4], fill=fg)
    elif kind == "vbars":
        for k in range(3):
            draw.rectangle([cx - r + k * r * 0.8, cy - r, cx - r + k * r * 0.8 + r * 0.4, cy + r], fill=fg)
    elif kind == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fg)
    elif kind == "star":
        angles = np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, r * 0.4)
        draw.polygon(list(zip(cx + radii * np.cos(angles), cy - radii * np.sin(angles))), fill=fg)
    elif kind == "checker":
        step = r / 2
        for i in range(4):
            for j in range(4):
                if (i + j) % 2:
                    draw.rectangle([cx - r + i * step, cy - r + j * step, cx - r + (i + 1) * step, cy - r + (j + 1) * step], fill=fg)
    img = img.rotate(rng.uniform(-20, 20), resample=Image.BILINEAR, fillcolor=img.getpixel((0, 0)))
    arr = np.asarray(img.resize((size, size), Image.LANCZOS), dtype=np.float32) + rng.normal(0, 8, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _save(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, compress_level=1)


def _shape_images(classes: int, counts: dict[str, int], size: int, rng: np.random.Generator):
    if not 2 <= classes <= len(SHAPES):
        raise AutomlError(f"mae data generator: shapes has {len(SHAPES)} classes; classes must be 2..{len(SHAPES)}, got {classes}")
    for kind in SHAPES[:classes]:
        yield kind, {split: [render_shape(kind, size, rng) for _ in range(n)] for split, n in counts.items()}


def _glyph_images(classes: int, counts: dict[str, int], size: int, rng: np.random.Generator):
    from automl.data.glyphs import _fonts_and_coverage, character_classes, class_folder_name, render_glyph

    pool = character_classes()
    if not 2 <= classes <= len(pool):
        raise AutomlError(f"mae data generator: classes must be between 2 and {len(pool)}, got {classes}")
    chars = [pool[i] for i in sorted(rng.choice(len(pool), size=classes, replace=False))]
    fonts = _fonts_and_coverage()[0]
    for ch in chars:
        yield class_folder_name(ch), {split: [render_glyph(ch, size, rng, fonts) for _ in range(n)]
                                      for split, n in counts.items()}


def _fashion_images(classes: int, counts: dict[str, int], size: int, rng: np.random.Generator):
    from automl.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist

    if not 2 <= classes <= 10:
        raise AutomlError(f"mae data generator: Fashion-MNIST has 10 classes; classes must be 2..10, got {classes}")
    train_x, train_y = load_fashion_mnist("train")
    test_x, test_y = load_fashion_mnist("test")
    for label in range(classes):
        train_idx = rng.permutation(np.flatnonzero(train_y == label))
        test_idx = rng.permutation(np.flatnonzero(test_y == label))
        need_train = counts["pool"] + counts["labeled"]
        if need_train > len(train_idx) or counts["val"] + counts["test"] > len(test_idx):
            raise AutomlError("mae data generator: not enough Fashion-MNIST images for those counts")

        def img(arr):
            return Image.fromarray(arr).convert("RGB").resize((size, size), Image.BILINEAR)

        yield CLASS_NAMES[label], {
            "pool": [img(train_x[i]) for i in train_idx[: counts["pool"]]],
            "labeled": [img(train_x[i]) for i in train_idx[counts["pool"]: need_train]],
            "val": [img(test_x[i]) for i in test_idx[: counts["val"]]],
            "test": [img(test_x[i]) for i in test_idx[counts["val"]: counts["val"] + counts["test"]]],
        }


def generate(out_dir: Path, *, seed: int = 0, classes: int = 10, per_class: int = 20, unlabeled_per_class: int = 60,
             val_per_class: int = 30, test_per_class: int = 2, size: int = 32, source: str = "shapes") -> dict[str, Path]:
    """Write the four folders; ``per_class`` is the labelled training images per class. The default
    300 validation images make one image 0.0033 of the accuracy and give the leave-one-out k-NN 29
    same-class candidates for its k=20 neighbours."""
    source = source.replace("-", "_")  # the CLI spells it fashion-mnist
    if source not in SOURCES:
        raise AutomlError(f"mae data generator: source '{source}' is not known; allowed: {', '.join(SOURCES)}")
    if size < 16 or size > 512:
        raise AutomlError(f"mae data generator: size must be 16..512 pixels, got {size}")
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    folders = {"pool": out / "images_train", "labeled": out / "labeled_train", "val": out / "images_val",
               "test": out / "images_test"}
    counts = {"pool": unlabeled_per_class, "labeled": per_class, "val": val_per_class, "test": test_per_class}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    images = {"shapes": _shape_images, "glyphs": _glyph_images, "fashion_mnist": _fashion_images}[source]
    pool_index = 0
    for name, splits in images(classes, counts, size, rng):
        for i, img in enumerate(splits["labeled"]):
            _save(img, folders["labeled"] / name / f"{i:05d}.png")
        for i, img in enumerate(splits["val"]):
            _save(img, folders["val"] / name / f"{i:05d}.png")
        for img in splits["pool"]:
            # unlabelled files are numbered across classes so their names give the class away to no one
            _save(img, folders["pool"] / f"{pool_index:06d}.png")
            pool_index += 1
        for i, img in enumerate(splits["test"]):
            _save(img, folders["test"] / f"{name}_{i:03d}.png")
    # shuffle the pool's order on disk: file order must not encode the class either
    files = sorted(folders["pool"].glob("*.png"))
    order = rng.permutation(len(files))
    for src, dst in zip(files, order):
        src.rename(src.with_name(f"tmp_{dst:06d}.png"))
    for f in folders["pool"].glob("tmp_*.png"):
        f.rename(f.with_name(f.name[4:]))
    (out / "dataset.json").write_text(json.dumps({
        "task": "mae", "source": source, "seed": seed, "classes": classes, "per_class": per_class,
        "unlabeled_per_class": unlabeled_per_class, "val_per_class": val_per_class, "size": size,
        "finetune_keys": {"dataset.train_data_sources": str(folders["labeled"]),
                          "dataset.val_data_sources": str(folders["val"]), "model.num_classes": classes},
    }, indent=2))
    return folders
