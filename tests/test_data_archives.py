"""Safe .tar.gz extraction: escaping entries and outside links are refused, nothing is written."""

import io
import tarfile

import pytest

from automl.data.archives import resolve_dataset, safe_extract
from automl.errors import AutomlError


def make_tar(path, entries):
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = payload.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind in ("sym", "hard"):
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = payload
                tar.addfile(info)
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)
    return path


def test_good_archive_extracts_and_resolves_through_its_top_folder(tmp_path):
    archive = make_tar(tmp_path / "train.tar.gz", [("train/a/1.png", "file", "x"), ("train/b/2.png", "file", "y"),
                                                   ("train/a/link.png", "sym", "1.png")])
    root = resolve_dataset(archive, "dataset.train_dataset", cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in root.iterdir()) == ["a", "b"]
    assert (root / "a" / "1.png").read_text() == "x"
    assert resolve_dataset(archive, "dataset.train_dataset", cache_dir=tmp_path / "cache") == root  # cached


@pytest.mark.parametrize("entries, message", [
    ([("../evil.txt", "file", "x")], "escapes the target folder"),
    ([("a/../../evil.txt", "file", "x")], "escapes the target folder"),
    ([("/etc/evil.txt", "file", "x")], "absolute path"),
    ([("a/link", "sym", "../../outside")], "pointing outside"),
    ([("a/link", "sym", "/etc/passwd")], "absolute target"),
    ([("a/hard", "hard", "../outside")], "pointing outside"),
    ([("a/pipe", "fifo", "")], "special entry"),
])
def test_unsafe_entries_are_refused_and_nothing_is_written(tmp_path, entries, message):
    archive = make_tar(tmp_path / "bad.tar.gz", [("ok/file.txt", "file", "fine"), *entries])
    dest = tmp_path / "out" / "dest"
    with pytest.raises(AutomlError, match=message) as err:
        safe_extract(archive, dest)
    assert str(archive) in str(err.value) and "\n" not in str(err.value)
    assert not dest.exists()
    assert not (tmp_path / "out" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_missing_and_corrupt_archives(tmp_path):
    with pytest.raises(AutomlError, match="dataset not found"):
        resolve_dataset(tmp_path / "nope.tar.gz", "dataset.train_dataset")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar")
    with pytest.raises(AutomlError, match="not a readable tar archive"):
        safe_extract(junk, tmp_path / "x")
    with pytest.raises(AutomlError, match="dataset.val_dataset.query: no dataset path set"):
        resolve_dataset("", "dataset.val_dataset.query")
