"""The offline spool: every tracking operation is written to disk first, then delivered in order.

``<run_dir>/tracking_spool.jsonl`` holds one operation per line with a sequence number;
``<run_dir>/tracking_spool.cursor`` holds the last sequence number the store acknowledged. A
:class:`Delivery` thread sends what lies past the cursor, so hooks return at once, a dead or slow
server never stalls training, and a crash or an outage loses nothing: the next tracker on the folder
(or ``automl sync``) picks up where the cursor stopped. Operations are written so that sending one
twice does no harm (see :mod:`automl.tracking.mlflow`), which makes a crash between delivery
and the cursor update harmless too.

Why not MLflow's own async logging: it keeps its queue in memory only and has no replay after an
outage or a crash, and it covers metrics/params/tags but not run creation, artifacts or the registry.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from automl.fsutil import lock_file, unlock, write_text

SPOOL_FILE = "tracking_spool.jsonl"
CURSOR_FILE = "tracking_spool.cursor"
LOCK_FILE = "tracking.lock"

log = logging.getLogger(__name__)


class TransientError(Exception):
    """The store could not be reached (or answered 5xx): keep the operation and retry later."""


class Spool:
    """Append-only operation log plus the delivered cursor."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / SPOOL_FILE
        self.cursor_path = Path(run_dir) / CURSOR_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        entries = self.read()
        self._next_seq = (entries[-1]["seq"] + 1) if entries else 1

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            if isinstance(entry, dict) and "seq" in entry:
                out.append(entry)
        return out

    def append(self, op: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            entry = {"seq": self._next_seq, **op}
            self._next_seq += 1
            with self.path.open("a") as fh:
                fh.write(json.dumps(entry) + "\n")
        return entry

    def cursor(self) -> int:
        try:
            return int(self.cursor_path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def set_cursor(self, seq: int) -> None:
        write_text(self.cursor_path, str(seq))

    def pending(self) -> list[dict[str, Any]]:
        done = self.cursor()
        return [e for e in self.read() if e["seq"] > done]


class DeliveryLock:
    """One deliverer per run folder (a live search, or ``automl sync``), so no operation is sent twice
    concurrently. An OS file lock: it goes away with the process that held it."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        try:
            self._fd = lock_file(self.path, blocking=False)
        except OSError as exc:
            if exc.filename is not None:  # the file could not be opened (flock's own errors name none)
                raise
            self._fd = None  # a filesystem without locks: deliver nothing rather than twice
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            unlock(self._fd)
            self._fd = None


Batch = list[dict[str, Any]]


def take_batch(queue: collections.deque, max_metrics: int = 500) -> Batch:
    """The next operations to send together: one operation, or a run of metric operations for the same
    run (one ``log_batch`` request instead of one per epoch when catching up after an outage)."""
    first = queue[0]
    batch = [first]
    if first.get("op") != "metrics":
        return batch
    count = len(first.get("metrics", {}))
    for entry in list(queue)[1:]:
        if entry.get("op") != "metrics" or entry.get("key") != first.get("key"):
            break
        count += len(entry.get("metrics", {}))
        if count > max_metrics:
            break
        batch.append(entry)
    return batch


class Delivery:
    """Background thread that sends spooled operations in order through ``send(batch)``.

    ``send`` raises :class:`TransientError` to have the batch retried later (with backoff); any other
    exception drops the batch with a log line (a malformed operation must not block the queue).
    ``on_offline(reason)`` is called once, the first time the store is unreachable.
    """

    def __init__(self, spool: Spool, send: Callable[[Batch], None], on_offline: Callable[[str], None],
                 max_backoff_s: float = 15.0, on_orphaned: Callable[[], None] | None = None,
                 exit_grace_s: float = 10.0):
        self.spool = spool
        self._on_orphaned = on_orphaned
        self._exit_grace = exit_grace_s
        self._exit_deadline: float | None = None
        self._send = send
        self._on_offline = on_offline
        self._max_backoff = max_backoff_s
        self._queue: collections.deque = collections.deque(spool.pending())
        self._cond = threading.Condition()
        self._stop = False
        self._wake = False
        self._told = False
        self.offline = False
        self.last_error: str | None = None
        # Not a daemon: when the program ends without close() (Ctrl-C, an exception in the driver), the
        # thread notices, lets the tracker mark open runs as killed, and delivers for exit_grace_s more
        # seconds before the interpreter exits (a daemon thread would die mid-request, and atexit
        # handlers run too late to start MLflow's own worker threads).
        self._thread = threading.Thread(target=self._loop, name="automl-tracking", daemon=False)

    def start(self) -> None:
        self._thread.start()

    def submit(self, op: dict[str, Any]) -> None:
        with self._cond:  # spool order == queue order, whichever thread calls
            self._queue.append(self.spool.append(op))
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything is delivered (True) or ``timeout`` passes (False). Retries at once
        instead of waiting out the backoff."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._wake = True
            self._cond.notify_all()
            while self._queue and self._thread.is_alive():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(timeout=0.2 if left is None else min(0.2, left))
            return not self._queue

    def close(self, timeout: float | None = 30.0) -> bool:
        delivered = self.flush(timeout)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=5.0)
        return delivered

    def _orphaned(self) -> bool:
        """True once the main thread has ended without close(); starts the exit grace period."""
        if self._exit_deadline is None and not threading.main_thread().is_alive():
            self._exit_deadline = time.monotonic() + self._exit_grace
            if self._on_orphaned is not None:
                try:
                    self._on_orphaned()
                except Exception as exc:  # noqa: BLE001 - exiting anyway
                    log.debug("tracking: on_orphaned failed: %s", exc)
        return self._exit_deadline is not None

    def _loop(self) -> None:
        backoff = 0.5
        while True:
            self._orphaned()
            with self._cond:
                while not self._queue and not self._stop and self._exit_deadline is None:
                    self._cond.wait(timeout=0.5)
                    if not threading.main_thread().is_alive():
                        break
                if self._exit_deadline is None and not threading.main_thread().is_alive():
                    continue  # run the orphan hook outside the lock (it submits operations)
                if not self._queue:  # stopped, or the program ended, and everything is delivered
                    return
                if self._stop:  # close() gave up waiting: leave the rest in the spool
                    return
                if self._exit_deadline is not None and time.monotonic() > self._exit_deadline:
                    return  # the program ended; the rest waits in the spool
                batch = take_batch(self._queue)
            try:
                self._send(batch)
            except TransientError as exc:
                self.last_error = str(exc)
                if not self.offline:
                    self.offline = True
                    if not self._told:
                        self._told = True
                        self._on_offline(str(exc))
                self._sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            except Exception as exc:  # noqa: BLE001 - see the class docstring
                if self._exit_deadline is not None:
                    # The interpreter is going away and refuses new threads/handlers (MLflow starts
                    # some): keep this and the rest in the spool for the next run or `automl sync`.
                    log.debug("tracking: stopped at exit: %s", exc)
                    return
                log.warning("tracking: dropped %s operation(s) %s: %s", len(batch),
                            [e.get("op") for e in batch], exc)
            if self.offline:
                self.offline = False
                log.info("tracking: store reachable again, catching up")
            backoff = 0.5
            with self._cond:
                for _ in batch:
                    self._queue.popleft()
                self.spool.set_cursor(batch[-1]["seq"])
                self._cond.notify_all()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        if self._exit_deadline is not None:
            deadline = min(deadline, self._exit_deadline)
        with self._cond:
            while not self._stop and not self._wake:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(timeout=left)
            self._wake = False


def replay(spool: Spool, send: Callable[[Batch], None]) -> int:
    """Send every pending operation now, in the caller's thread (``automl sync``). Returns how many
    were delivered; raises :class:`TransientError` when the store is still unreachable."""
    queue = collections.deque(spool.pending())
    sent = 0
    while queue:
        batch = take_batch(queue)
        try:
            send(batch)
        except TransientError:
            raise
        except Exception as exc:  # noqa: BLE001 - same policy as Delivery
            log.warning("tracking: dropped %s operation(s): %s", len(batch), exc)
        for _ in batch:
            queue.popleft()
        spool.set_cursor(batch[-1]["seq"])
        sent += len(batch)
    return sent
