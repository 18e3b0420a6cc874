"""What the benchmark and its peers share: JSON-lines child processes, the last-line JSON of a CLI
command, best-so-far curves from run folders, and the held-out evaluation of one checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from automl.reporting import clean_float, read_metrics

REPO = Path(__file__).resolve().parents[2]
HELDOUT_METRIC = "Precision at Rank 1"


class ChildDied(RuntimeError):
    """A JSON-lines child process exited (or answered garbage) instead of replying."""


class JsonLinesProcess:
    """A child process that answers one JSON line per JSON line it is sent; its stderr goes to a file."""

    def __init__(self, cmd: list[str], *, stderr_path: Path, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None, name: str = "child"):
        self.name, self.stderr_path = name, Path(stderr_path)
        self.stderr_path.parent.mkdir(parents=True, exist_ok=True)
        self._stderr = open(self.stderr_path, "a")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                     text=True, bufsize=1, env=dict(env) if env is not None else None,
                                     cwd=str(cwd) if cwd else None)

    def send(self, obj: Mapping[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            rc = self.proc.wait()
            raise ChildDied(f"{self.name} exited with status {rc} ({tail_line(self.stderr_path) or 'no output'}; "
                            f"log: {self.stderr_path})")
        try:
            return json.loads(line)
        except json.JSONDecodeError as exc:
            raise ChildDied(f"{self.name} answered a line that is not JSON: {line[:200]!r}") from exc

    def request(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        try:
            self.send(obj)
        except (BrokenPipeError, OSError) as exc:
            rc = self.proc.poll()
            raise ChildDied(f"{self.name} is gone (status {rc}; {tail_line(self.stderr_path)}; "
                            f"log: {self.stderr_path})") from exc
        return self.receive()

    def close(self, goodbye: Mapping[str, Any] | None = None, timeout: float = 30) -> None:
        try:
            if goodbye is not None and self.proc.poll() is None:
                self.send(goodbye)
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=timeout)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            self._stderr.close()


def tail_line(path: Path | str) -> str:
    """The last non-empty line of a text file (``""`` when there is none or it cannot be read)."""
    try:
        return tail_line_text(Path(path).read_text(errors="replace"))
    except OSError:
        return ""


def tail_line_text(text: str) -> str:
    """The last non-empty line of ``text``."""
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()
    return ""


def last_json_line(text: str) -> dict[str, Any] | None:
    """The JSON object on the last non-empty stdout line (what ``--json`` prints), else None."""
    for line in reversed(text.splitlines()):
        if line.strip():
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                return None
            return value if isinstance(value, dict) else None
    return None


def automl_command(*args: str) -> list[str]:
    """``automl ARGS`` with this interpreter (the project venv's)."""
    return [sys.executable, "-m", "automl", *args]


def child_env(tracking: bool = False, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if not tracking:
        env["AUTOML_TRACKING"] = "off"
    env.update(extra or {})
    return env


# -- best-so-far curves ----------------------------------------------------------------------------
def epoch_events(dirs: Iterable[Path], metric: str) -> list[tuple[float, float | None]]:
    """``(time, value)`` for every epoch recorded in ``<dir>/metrics.jsonl`` of the given folders, in
    time order (one line = one trained epoch; a NaN or missing value counts as an epoch without value)."""
    events = [(float(record.get("time") or 0.0), clean_float((record.get("metrics") or {}).get(metric)))
              for folder in dirs for record in read_metrics(folder)]
    events.sort(key=lambda e: e[0])
    return events


def best_so_far_curve(dirs: Iterable[Path], metric: str, mode: str = "max") -> list[list[float]]:
    """``[[epochs consumed, best value so far], ...]``, one point per epoch that had a value."""
    curve: list[list[float]] = []
    best = None
    for n, (_, value) in enumerate(epoch_events(dirs, metric), start=1):
        if value is not None and (best is None or (value > best if mode == "max" else value < best)):
            best = value
        if best is not None:
            curve.append([n, best])
    return curve


# -- held-out evaluation ---------------------------------------------------------------------------
def evaluate_checkpoint(checkpoint: Path | str, data_dir: Path | str, *, model: str = "ml_recog",
                        log_path: Path | None = None, timeout: float = 1800) -> dict[str, Any]:
    """``automl evaluate --model M --data DIR evaluate.checkpoint=CKPT --json`` (the unknown classes
    of a generated folder). Returns ``{"value": P@1 or None, "metrics": {...}, "error": str|None}``."""
    cmd = automl_command("evaluate", "--model", model, "--data", str(data_dir), f"evaluate.checkpoint={checkpoint}",
                         "--json")
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd += ["--results-dir", str(log_path.parent / "evaluate")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env(False), cwd=REPO)
    if log_path is not None:
        log_path.write_text(f"$ {' '.join(cmd)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    result = last_json_line(proc.stdout) if proc.returncode == 0 else None
    if result is None:
        error = tail_line_text(proc.stderr) or f"exit status {proc.returncode}"
        return {"value": None, "metrics": {}, "error": f"automl evaluate failed: {error}"}
    metrics = result.get("metrics") or {}
    return {"value": metrics.get(HELDOUT_METRIC), "metrics": metrics, "error": None}
