"""How a running trainer talks to whoever launched it.

A trainer calls :meth:`Reporter.report` once per validation epoch and stops early when
:meth:`Reporter.should_stop` says so. The controller hands in a reporter that feeds its pruner (Optuna)
or Ray Tune; plain training uses :class:`FileReporter`, which only records.

Every reporter also appends to ``<results_dir>/metrics.jsonl`` (one JSON object per epoch), which is
the durable record the tracker and ``automl status`` read: it survives a killed process.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from automl.fsutil import METRICS


@runtime_checkable
class Reporter(Protocol):
    def report(self, epoch: int, metrics: Mapping[str, float], checkpoint: Path | None = None) -> None:
        """Record the metrics of a finished epoch (0-based) and the checkpoint written for it, if any."""

    def should_stop(self) -> bool:
        """True when the trial must stop now (pruned, paused at a rung, or out of time)."""


def clean_float(value: object) -> float | None:
    """``float(value)`` when it is a finite number, else None (JSON has no NaN or infinity)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def clean_metrics(metrics: Mapping[str, object]) -> dict[str, float | None]:
    """Numeric entries of ``metrics`` with non-finite values as None; non-numeric entries dropped."""
    out: dict[str, float | None] = {}
    for key, value in metrics.items():
        try:
            float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        out[key] = clean_float(value)
    return out


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        out[key] = number if math.isfinite(number) else float("nan")
    return out


class FileReporter:
    """Appends each epoch to ``metrics.jsonl``; never asks to stop."""

    def __init__(self, results_dir: str | Path):
        self.path = Path(results_dir) / METRICS

    def report(self, epoch: int, metrics: Mapping[str, float], checkpoint: Path | None = None) -> None:
        record = {"epoch": int(epoch), "time": time.time(), "metrics": _finite(metrics)}
        if checkpoint is not None:
            record["checkpoint"] = str(checkpoint)
        line = json.dumps(record) + "\n"
        try:
            fh = self.path.open("a")
        except FileNotFoundError:  # the folder is made on the first report only when missing
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = self.path.open("a")
        with fh:
            fh.write(line)

    def should_stop(self) -> bool:
        return False


def read_metrics(results_dir: str | Path) -> list[dict]:
    """Read ``metrics.jsonl``; a line cut short by a kill is ignored."""
    path = Path(results_dir) / METRICS
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
