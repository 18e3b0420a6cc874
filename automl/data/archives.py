"""Safe extraction of the ``.tar.gz`` datasets TAO users hand over.

Refused (one :class:`~automl.errors.AutomlError` line, nothing extracted): absolute paths, entries
whose path escapes the target (``..``), symlinks/hardlinks pointing outside it, and device or FIFO
entries. Python's ``tarfile`` ``filter="data"`` does most of this too; we check explicitly first so the
error names the archive and the entry, and so the behaviour does not depend on the Python patch level.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

from automl.errors import AutomlError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def is_archive(path: str | Path) -> bool:
    return str(path).endswith(ARCHIVE_SUFFIXES)


def _inside(root: Path, target: Path) -> bool:
    try:
        target.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def check_members(archive: Path, members: list[tarfile.TarInfo], dest: Path) -> None:
    """Raise if any member would write or point outside ``dest``."""
    for m in members:
        name = m.name
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
            raise AutomlError(f"{archive}: refusing entry with an absolute path: {name}")
        target = dest / name
        if not _inside(dest, target):
            raise AutomlError(f"{archive}: refusing entry that escapes the target folder: {name}")
        if m.issym() or m.islnk():
            link = m.linkname
            if os.path.isabs(link):
                raise AutomlError(f"{archive}: refusing link {name} -> {link} (absolute target)")
            # symlinks resolve relative to their folder, hardlinks relative to the archive root
            base = target.parent if m.issym() else dest
            if not _inside(dest, base / link):
                raise AutomlError(f"{archive}: refusing link {name} -> {link} pointing outside the target folder")
        elif not (m.isfile() or m.isdir()):
            raise AutomlError(f"{archive}: refusing special entry (device/FIFO): {name}")


def safe_extract(archive: str | Path, dest: str | Path) -> Path:
    """Extract ``archive`` into ``dest`` after checking every entry; return ``dest``."""
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise AutomlError(f"dataset archive not found: {archive}")
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            check_members(archive, members, dest)
            dest.mkdir(parents=True, exist_ok=True)
            tar.extractall(dest, members=members, filter="data")
    except tarfile.TarError as exc:
        raise AutomlError(f"{archive}: not a readable tar archive ({exc})") from None
    return dest


def _single_root(folder: Path) -> Path:
    """``x.tar.gz`` usually holds ``x/<class>/...``: descend through a lone top-level folder."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        inner = [p for p in entries[0].iterdir() if not p.name.startswith(".")]
        if inner and all(p.is_dir() for p in inner):
            return entries[0]
    return folder


def resolve_dataset(path: str | Path, key: str, cache_dir: str | Path | None = None) -> Path:
    """A dataset folder for a spec value: a folder as is, or an archive extracted once into
    ``cache_dir`` (default: next to the archive, ``.<name>.extracted-<hash>``)."""
    if path is None or str(path).strip() in ("", "???", "<required>"):
        raise AutomlError(f"{key}: no dataset path set")
    path = Path(str(path))
    if path.is_dir():
        return path
    if is_archive(path) and path.is_file():
        stat = path.stat()
        tag = hashlib.sha1(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]
        base = Path(cache_dir) if cache_dir else path.parent
        dest = base / f".{path.name.split('.')[0]}.extracted-{tag}"
        marker = dest / ".complete"
        if not marker.exists():
            safe_extract(path, dest)
            marker.write_text("ok")
        return _single_root(dest)
    raise AutomlError(f"{key}: dataset not found (expected a folder or a .tar.gz): {path}")
