"""One slot's long-lived worker process (``python -m automl.trials.worker --serve``), driven over a
pipe; replaced when it dies or is killed.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from automl.trials.slots import slot_env


WORKER_START_TIMEOUT_S = 300.0


class WorkerDied(Exception):
    pass


class SlotWorker:
    """One slot's long-lived worker process (replaced when it dies or is killed)."""

    def __init__(self, slot: dict, log_path: Path, preload: str | None = None):
        self.slot = slot
        self.log_path = log_path
        self.preload = preload
        self.proc: subprocess.Popen | None = None
        self._buffer = b""

    def ensure(self) -> None:
        if self.alive():
            return
        env = slot_env(self.slot)
        if self.preload:
            env["AUTOML_WORKER_PRELOAD"] = self.preload
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "automl.trials.worker", "--serve"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env)
        self._buffer = b""
        msg = self.receive(time.monotonic() + WORKER_START_TIMEOUT_S)
        if msg is None or msg.get("op") != "ready":
            self.kill()
            raise WorkerDied(f"worker process for slot {self.slot['index']} did not start (see {self.log_path})")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, msg: dict) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(msg, default=str) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerDied("worker pipe closed") from None

    def receive(self, deadline: float | None) -> dict | None:
        """Next message, None on timeout; raises WorkerDied when the process ends."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise WorkerDied(self.exit_reason())
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def exit_reason(self) -> str:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.returncode
        self.proc = None
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = {"SIGKILL": " (killed: out of memory?)", "SIGSEGV": " (segmentation fault)",
                    "SIGABRT": " (aborted)", "SIGBUS": " (bus error)"}.get(name, "")
            return f"worker killed by {name}{hint}"
        return f"worker exited with status {code}"

    def kill(self) -> None:
        if self.proc is not None:
            try:
                self.proc.kill()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
            self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.send({"op": "exit"})
                self.proc.wait(timeout=10)
            except (WorkerDied, subprocess.TimeoutExpired):
                self.kill()
        self.proc = None
