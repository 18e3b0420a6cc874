"""Market-1501 names and folders, the num_classes check, and the reid data generator."""

from __future__ import annotations

import logging

import tarfile
from pathlib import Path

import pytest
from PIL import Image

from automl.errors import AutomlError
from trainers.reid import plugin
from trainers.reid.market1501 import load_train_set, parse_name, scan_folder


@pytest.mark.parametrize("name, expected", [
    ("0002_c1s1_000451_03.jpg", (2, 1)),
    ("-1_c3s2_000100_01.jpg", (-1, 3)),       # junk
    ("0000_c6s1_000001_01.jpg", (0, 6)),      # distractor
    ("0012_c12s3_000001_01.jpg", (12, 12)),   # two-digit camera
    ("1501_c6s4_001902_01.png", (1501, 6)),
    ("0001_c2_f0046182.jpg", (1, 2)),         # DukeMTMC-reID
])
def test_parse_name(name, expected):
    assert parse_name(name) == expected


@pytest.mark.parametrize("name", ["foo.jpg", "0001_c1.jpg", "0001_cAs1_000001_01.jpg", "-2_c1s1_000001_01.jpg",
                                  "0001_c1s1_000001.jpg", "x0001_c1s1_000001_01.jpg"])
def test_bad_names_are_rejected_with_the_expected_pattern(name):
    with pytest.raises(AutomlError, match="PPPP_cCsS_FFFFFF_NN"):
        parse_name(name)


def _touch(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (8, 16)).save(folder / name) if name.endswith((".jpg", ".png")) else (folder / name).write_text("x")
    return folder


def test_scan_skips_non_images_and_names_the_key_for_bad_files(tmp_path):
    folder = _touch(tmp_path / "q", ["0001_c1s1_000001_01.jpg", "Thumbs.db", "readme.txt"])
    assert [im.pid for im in scan_folder(folder, "dataset.query_dataset_dir")] == [1]
    _touch(folder, ["holiday.jpg"])
    with pytest.raises(AutomlError, match=r"^dataset.query_dataset_dir: holiday.jpg"):
        scan_folder(folder, "dataset.query_dataset_dir")
    loose = scan_folder(folder, "inference.query_dataset", strict=False)
    assert {im.pid for im in loose} == {1, -2}
    with pytest.raises(AutomlError, match="dataset.test_dataset_dir"):
        scan_folder(tmp_path / "missing", "dataset.test_dataset_dir")
    with pytest.raises(AutomlError, match="is not set"):
        scan_folder("", "dataset.test_dataset_dir")


def test_train_set_counts_identities_without_junk_and_distractors(tmp_path, caplog):
    folder = _touch(tmp_path / "train", ["0002_c1s1_000001_01.jpg", "0002_c2s1_000002_01.jpg", "0007_c1s1_000003_01.jpg",
                                         "-1_c1s1_000004_01.jpg", "0000_c2s1_000005_01.jpg"])
    train = load_train_set(folder, 2)
    assert train.num_classes == 2 and train.pids == [2, 7] and train.labels == [0, 0, 1]
    # TAO users keep Market-1501's 751: the data's identity count wins, and the warning says so
    with caplog.at_level(logging.WARNING, logger="automl.trainers.reid"):
        assert load_train_set(folder, 751).num_classes == 2
    assert [r.getMessage() for r in caplog.records if "num_classes" in r.getMessage()] == [
        f"reid: dataset.num_classes is 751 but dataset.train_dataset_dir ('{folder}') holds 2 identities; using 2"]


def test_tar_archives_are_read_like_folders(tmp_path):
    folder = _touch(tmp_path / "sample_query", ["0003_c1s1_000001_01.jpg", "0004_c2s1_000001_01.jpg"])
    archive = tmp_path / "sample_query.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="sample_query")
    assert [im.pid for im in scan_folder(archive, "dataset.query_dataset_dir")] == [3, 4]


def test_generator_writes_market1501_with_junk_distractors_and_disjoint_ids(tmp_path):
    keys = plugin.make_dataset(tmp_path, seed=3, classes=6, per_class=4, size=32, cameras=12)
    train = scan_folder(keys["dataset.train_dataset_dir"], "train")
    query = scan_folder(keys["dataset.query_dataset_dir"], "query")
    gallery = scan_folder(keys["dataset.test_dataset_dir"], "gallery")
    train_ids = {im.pid for im in train}
    assert keys["dataset.num_classes"] == len(train_ids) == 6
    assert train_ids.isdisjoint({im.pid for im in query + gallery if im.pid > 0})
    assert any(im.is_junk for im in gallery) and any(im.is_distractor for im in gallery)
    assert not any(im.pid <= 0 for im in query)
    assert max(im.camid for im in train + query + gallery) >= 10  # c10, c11, c12 written and parsed
    # every query has a true match in another camera
    for q in query:
        assert any(g.pid == q.pid and g.camid != q.camid for g in gallery)
    # each training identity is seen by at least two cameras
    for pid in train_ids:
        assert len({im.camid for im in train if im.pid == pid}) >= 2
    with Image.open(train[0].path) as img:
        assert img.size == (16, 32)
    assert plugin.data_keys(tmp_path) == keys
    with pytest.raises(AutomlError, match="unknown option"):
        plugin.make_dataset(tmp_path / "x", seed=0, colour=3)
