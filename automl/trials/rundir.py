"""The run folder (ARCHITECTURE.md), written and read the same way by every backend.

    <output>/<name>/search.json, search.lock, base_spec.yaml, space.json, journal|study.db,
    trials/<number:04d>/{config.json, spec.yaml, metrics.jsonl, result.json, train.log, checkpoints/},
    best/, summary.csv

Each trial folder is self-describing: ``result.json`` is written last and atomically, so a folder
without it is a trial that was interrupted (its ``metrics.jsonl`` and ``checkpoints/last.ckpt`` say how
far it got).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from automl import fsutil
from automl.fsutil import write_text
from automl.trials.records import TrialRecord, TrialState
from automl.errors import AutomlError

# the run folder's files (ARCHITECTURE.md); no other module spells them
SEARCH_JSON = "search.json"
#: the controller's exclusive lock (automl.trials.runlock)
LOCK_FILE = "search.lock"
BASE_SPEC = "base_spec.yaml"
SPACE_JSON = "space.json"
SUMMARY_CSV = "summary.csv"
TRIALS = "trials"
BEST = "best"
REEVAL = "reeval"
# a trial folder's files
CONFIG = "config.json"
SPEC = "spec.yaml"
#: one JSON object per epoch, appended by the reporters of automl.reporting (the name lives in
#: automl.fsutil, which automl.reporting can import without a circle)
METRICS = fsutil.METRICS
RESULT = "result.json"
#: an earlier stretch's result.json, kept while a paused or interrupted trial goes on
PREVIOUS_RESULT = "result.prev.json"
LOG = "train.log"
#: the job a worker ran: what ``--once`` runs and what a resume reads back
JOB_FILE = "job.json"
CHECKPOINTS = "checkpoints"


def trials_root(run_dir: Path) -> Path:
    return Path(run_dir) / TRIALS


def trial_dir(run_dir: Path, number: int) -> Path:
    return trials_root(run_dir) / f"{number:04d}"


def checkpoint(trial_dir: str | Path, name: str = "last") -> Path:
    """A trial's ``checkpoints/<name>.ckpt`` (``last``: the latest epoch, ``best``: the best one)."""
    return Path(trial_dir) / CHECKPOINTS / f"{name}.ckpt"


def reeval_dir(run_dir: Path, number: int, seed_index: int) -> Path:
    return Path(run_dir) / REEVAL / f"{number:04d}-seed{seed_index}"


def write_json(path: Path, data: Any, indent: int | None = 2) -> Path:
    """Write JSON atomically (:func:`write_text`). ``indent=None`` for files only programs read
    (several times faster to encode)."""
    return write_text(path, json.dumps(data, indent=indent, default=_default, allow_nan=False))


def _default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def read_json_or(path: Path, default: Any = None) -> Any:
    """The file's JSON, or ``default`` when it is missing or unreadable (files that may not exist
    yet, or that another process may be replacing)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return default


def read_search(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / SEARCH_JSON
    if not path.is_file():
        raise AutomlError(f"{run_dir}: not a search run folder (no {SEARCH_JSON})")
    return read_json(path)


def find_run(name_or_path: str, output: str | Path = "runs") -> Path:
    """A run folder from a name under ``output`` or a path."""
    for candidate in (Path(name_or_path), Path(output) / name_or_path):
        if (candidate / SEARCH_JSON).is_file():
            return candidate.resolve()
    raise AutomlError(f"no search named '{name_or_path}' under {output} (looked for {Path(output) / name_or_path / SEARCH_JSON})")


def read_trial(run_dir: Path, number: int) -> TrialRecord | None:
    """The trial's record from ``result.json`` (None if the trial never finished)."""
    path = trial_dir(run_dir, number) / RESULT
    if not path.is_file():
        return None
    try:
        return TrialRecord.from_json(read_json(path))
    except (json.JSONDecodeError, TypeError):
        return None


def read_trials(run_dir: Path) -> list[TrialRecord]:
    """Every trial folder of a run, by number; unfinished ones come back as ``running``."""
    from automl.reporting import read_metrics

    out = []
    root = trials_root(run_dir)
    if not root.is_dir():
        return out
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit()):
        number = int(folder.name)
        record = read_trial(run_dir, number)
        if record is None:
            params = read_json(folder / CONFIG) if (folder / CONFIG).is_file() else {}
            record = TrialRecord(number=number, state=TrialState.RUNNING, params=params, trial_dir=str(folder),
                                 epochs_done=len({m["epoch"] for m in read_metrics(folder)}))
        out.append(record)
    return out


def write_summary_csv(run_dir: Path, records: list[TrialRecord]) -> Path:
    names = sorted({k for r in records for k in r.params})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["number", "state", "value", "best_epoch", "epochs_run", "duration_s", "gpu_seconds", "reason", *names])
    for r in sorted(records, key=lambda r: r.number):
        writer.writerow([r.number, r.state, r.value, r.best_epoch, r.epochs_run, round(r.duration_s, 3),
                         round(r.gpu_seconds, 3), r.reason or "", *[r.params.get(n, "") for n in names]])
    return write_text(Path(run_dir) / SUMMARY_CSV, out.getvalue())
