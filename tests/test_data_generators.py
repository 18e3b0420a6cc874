"""Generated datasets: the TAO retail layout, reproducibility, look-alike classes, Fashion-MNIST."""

import hashlib
from pathlib import Path

import pytest

from automl.data.fashion_mnist import find_fashion_mnist, make_fashion_mnist_dataset
from automl.data.glyphs import character_classes, make_glyph_dataset
from automl.errors import AutomlError

SPLITS = ["known_classes/train", "known_classes/reference", "known_classes/val",
          "unknown_classes/reference", "unknown_classes/test"]


def digest(root: Path) -> str:
    h = hashlib.sha1()
    for p in sorted(root.rglob("*.png")):
        h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def test_glyph_dataset_layout_and_reproducibility(tmp_path):
    paths = make_glyph_dataset(tmp_path / "a", classes=9, per_class=4, size=24, seed=3)
    assert sorted(paths) == sorted(SPLITS)
    known = {p.name for p in (tmp_path / "a/known_classes/train").iterdir()}
    unknown = {p.name for p in (tmp_path / "a/unknown_classes/test").iterdir()}
    assert len(known) == 6 and len(unknown) == 3 and not known & unknown
    assert {p.name for p in (tmp_path / "a/known_classes/val").iterdir()} == known
    assert len(list((tmp_path / "a/known_classes/train").rglob("*.png"))) == 6 * 4
    make_glyph_dataset(tmp_path / "b", classes=9, per_class=4, size=24, seed=3)
    make_glyph_dataset(tmp_path / "c", classes=9, per_class=4, size=24, seed=4)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")


def test_character_pool_has_look_alikes_but_no_identical_drawings():
    chars = character_classes()
    assert len(chars) >= 100
    assert {"e", "é", "ê", "ё"} <= set(chars) and {"O", "0", "Q"} <= set(chars)
    assert len(set(chars)) == len(chars)


def test_glyph_errors_are_one_line():
    with pytest.raises(AutomlError, match="--classes must be between 4 and"):
        make_glyph_dataset("/tmp/never", classes=2)


def test_fashion_mnist_known_unknown_split(tmp_path):
    try:
        find_fashion_mnist()
    except AutomlError as exc:
        pytest.skip(f"Debian package dataset-fashion-mnist not installed: {exc}")
    make_fashion_mnist_dataset(tmp_path, per_class=8, size=28, seed=0)
    known = {p.name for p in (tmp_path / "known_classes/train").iterdir()}
    unknown = {p.name for p in (tmp_path / "unknown_classes/test").iterdir()}
    assert len(known) == 6 and len(unknown) == 4 and "sandal" in unknown and "trouser" in known
    assert len(list((tmp_path / "known_classes/train/trouser").glob("*.png"))) == 8
