"""Files that must survive a kill: atomic writes, their stale temporaries, exclusive file locks.

A leaf module: it imports nothing from ``automl``, so every layer (the trials' run folder, the
tracking spool and store, the Optuna storage) uses the same helpers. It also holds the names of files
that two modules which cannot import each other both spell.

Atomic writes: a killed writer leaves the old file or none, never half a file. Every JSON, YAML and
CSV file of a run folder is written through :func:`write_text`, the toy trainer's checkpoints and
the Ray backend's resume checkpoint through :func:`write_with` (Lightning's own checkpoint IO writes
its temporary file in the system's temporary folder and moves it into place). A writer killed between
its write and its rename leaves ``<name>.<pid>-<thread>.tmp`` beside the file:
:func:`remove_temporaries` clears them (a trial's ``checkpoints/`` when the trial runs again).

Locks: ``flock`` on a file, dropped by the kernel when the holder dies (see automl.trials.runlock
for what it is worth on NFS).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

#: one JSON object per epoch: written by automl.reporting, read by automl.trials (a trial folder's file)
METRICS = "metrics.jsonl"

#: the temporary names :func:`write_text`, :func:`write_with` and :func:`create_with` use, and only those
_TEMPORARY = re.compile(r".+\.\d+-\d+\.tmp")


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temporary name beside ``path``, then ``os.replace`` it into place."""
    def write(tmp: Path) -> None:
        try:
            tmp.write_text(text)
        except FileNotFoundError:  # the folder is made only when missing: one syscall less per write
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text)

    return write_with(path, write)


def write_with(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` writes the file under a temporary name; it then replaces ``path`` in one rename.
    For files another library serializes (``torch.save`` of the toy trainer's checkpoints: importing
    Lightning's atomic checkpoint IO would cost a light trial process seconds)."""
    path = Path(path)
    tmp = _temporary(path)
    write(tmp)
    os.replace(tmp, path)
    return path


def create_with(path: str | Path, write: Callable[[Path], object]) -> bool:
    """:func:`write_with` for a file made once and never replaced (a database others may have open):
    False, and nothing changed, when another process put ``path`` in place while ``write`` ran."""
    path = Path(path)
    tmp = _temporary(path)
    tmp.unlink(missing_ok=True)  # a killed earlier writer of the same process id: start afresh
    try:
        write(tmp)
        if path.exists():
            return False
        os.replace(tmp, path)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _temporary(path: Path) -> Path:
    # one temporary name per writer: two processes may write the same file (the Ray driver and a
    # trial both write result.json when Tune stops a trial), and a shared name makes one rename fail
    return path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Delete what a writer killed between its write and its rename left in ``folder`` (only names
    :func:`_temporary` makes); call it only when no writer of that folder can be running."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    removed = []
    for name in names:
        if _TEMPORARY.fullmatch(name):
            path = Path(folder) / name
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def lock_file(path: str | Path, *, blocking: bool = True) -> int | None:
    """Take an exclusive ``flock`` on ``path`` (made, with its folder, when missing) and return the
    descriptor that holds it; ``blocking=False``: None at once when another process holds it. Closing
    the descriptor (:func:`unlock`) drops the lock, and the kernel drops it when the process dies,
    ``kill -9`` included. The descriptor is not inherited by child processes (``O_CLOEXEC``)."""
    path = Path(path)
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, flags, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def unlock(fd: int) -> None:
    """Drop a lock :func:`lock_file` took."""
    os.close(fd)


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[int]:
    """``with locked(path):`` holds an exclusive lock on ``path``, waiting for it if another holds it."""
    fd = lock_file(path)
    assert fd is not None  # a blocking lock is taken or raises
    try:
        yield fd
    finally:
        unlock(fd)
