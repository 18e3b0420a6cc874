"""One controller per run folder: an exclusive ``fcntl.flock`` on ``<run>/search.lock``, held for the
controller's whole life (resolve -> trials -> promotion -> tracking flush).

The kernel drops the lock when the holding process dies, ``kill -9`` included, so a crashed search
never leaves a stale lock behind. The holder writes its PID and host into the file so that a refused
second controller can say who holds it; readers (``automl status``) never take the lock.

NFS: ``flock`` on NFSv4 is emulated with byte-range locks by the Linux client and works between
machines; on NFSv3 without ``lockd`` or on filesystems mounted ``nolock`` it is only local to one
machine, so two controllers on two hosts would both get it. Keep run folders on a local disk or a
lock-capable NFSv4 mount.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from automl.errors import AutomlError
from automl.fsutil import lock_file, unlock
from automl.trials.rundir import LOCK_FILE


class RunLock:
    """``with RunLock(run_dir):`` holds the run folder's lock (made with the folder if missing)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        # not inherited (O_CLOEXEC): worker processes cannot hold the lock past the controller
        fd = lock_file(self.path, blocking=False)
        if fd is None:
            raise AutomlError(f"search '{self.run_dir.name}' is in use by another controller "
                              f"({holder(self.run_dir)}); wait for it to end or stop it first")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            unlock(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(run_dir: Path) -> str:
    """``pid N on HOST`` of the controller holding the lock (as it wrote it)."""
    try:
        info = json.loads((Path(run_dir) / LOCK_FILE).read_text())
        return f"pid {info['pid']} on {info['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown: it has just started"
