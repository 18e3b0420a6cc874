"""Rules about trial outcomes that every backend applies the same way.

* :class:`FailureStreak`: ``--max-failures K`` failed trials in a row stop the search; any other
  outcome (complete, pruned, or paused at a rung: the trial trained fine) ends the streak. One message
  for both backends.
* :func:`loss`, :func:`winner_key`, :func:`ranked`, :func:`best_so_far`: comparing values whatever the
  monitor's mode (lower loss is better). The one rule for the winner, used by the controller, the
  tracker and ``automl best``: best value, then the earlier best epoch, then the lower trial number
  (the earlier trial, the baseline first).
* :func:`folder_record`: a trial's record from its folder (``metrics.jsonl``, checkpoints, the
  totals of earlier stretches), what the worker writes as ``result.json`` and what a backend writes
  for a trial that could not (stopped, crashed, killed with the driver).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from automl.plugins import Monitor
from automl.reporting import clean_float, read_metrics
from automl.trials import rundir
from automl.trials.records import TrialRecord, TrialState

#: the key that marks a metrics.jsonl record copied from another trial (a pbt segment's history)
INHERITED = "inherited"

T = TypeVar("T")


def loss(mode: str, value: float) -> float:
    """``value`` turned into something to minimise: negated for a metric to maximise."""
    return -value if mode == "max" else value


def winner_key(mode: str, value: float, best_epoch: int | None = None, number: int | None = None) -> tuple:
    """Sort key of the winner rule (smallest wins): best value, then earlier best epoch, then lower trial
    number; an unknown epoch or number comes last among equals."""
    inf = float("inf")
    return (loss(mode, value), inf if best_epoch is None else int(best_epoch), inf if number is None else int(number))


def ranked(items: Iterable[T], monitor: Monitor, value: Callable[[T], float] = lambda r: r.value) -> list[T]:
    """``items`` best first by ``value(item)``, ties by :func:`winner_key` (items without ``best_epoch``
    or ``number`` keep their order: a stable sort)."""
    return sorted(items, key=lambda item: winner_key(monitor.mode, value(item), getattr(item, "best_epoch", None),
                                                     getattr(item, "number", None)))


def best_so_far(records: Iterable[TrialRecord], monitor: Monitor) -> TrialRecord | None:
    """The best trial with a value that did not fail (a paused or pruned one counts: its value was
    measured); ties by :func:`winner_key`."""
    done = sorted((r for r in records if r.state != TrialState.FAILED and r.value is not None), key=lambda r: r.number)
    return ranked(done, monitor)[0] if done else None


class BestSoFar:
    """The best trial so far, kept as finished trials are announced (both backends' ``search_progress``).
    Only the announced trial's record changes between two announcements, so the best is kept, not
    recomputed: that scan, at every trial's end, took ~9 ms per trial at 1,500 trials (benchmarks/scale.py)."""

    def __init__(self, monitor: Monitor):
        self.monitor, self.best = monitor, None

    def after(self, record: TrialRecord, records: Iterable[TrialRecord]) -> TrialRecord | None:
        """The best once ``record`` (one of ``records``, every finished trial) is in."""
        if self.best is None or self.best.number == record.number:  # none yet, or the best itself changed
            self.best = best_so_far(records, self.monitor)
        else:
            self.best = best_so_far([self.best, record], self.monitor)
        return self.best


class FailureStreak:
    """Counts failed trials in a row; :meth:`add` returns the stop reason once the limit is reached."""

    def __init__(self, limit: int):
        self.limit, self.count = int(limit or 0), 0

    def add(self, record: TrialRecord) -> str | None:
        # a paused trial counts as a success: it trained to its rung, so trials do run
        self.count = self.count + 1 if record.state == TrialState.FAILED else 0
        if self.limit and self.count >= self.limit:
            return stop_message(self.count, record)
        return None


def stop_message(count: int, last: TrialRecord) -> str:
    return f"stopped: {count} trials failed in a row (last: trial {last.number}: {last.reason or 'failed'})"


def stopped_by_failures(stop_reason: str | None) -> bool:
    """The search ended because of ``--max-failures`` (the reason :func:`stop_message` wrote)."""
    return bool(stop_reason) and stop_reason.startswith("stopped: ") and " failed in a row " in stop_reason


def search_exit(best: TrialRecord | None, stop_reason: str | None,
                promotion: Mapping[str, Any] | None) -> tuple[int, str | None]:
    """``(exit status, why)`` of a finished search (:mod:`automl.errors`' ``EXIT_*``): no value or a
    ``--max-failures`` stop is a failed search, a failed promotion step (a skipped one is fine) is a
    failed promotion."""
    from automl.errors import EXIT_OK, EXIT_PROMOTION_FAILED, EXIT_SEARCH_FAILED

    if best is None:
        return EXIT_SEARCH_FAILED, "no trial produced a value" + (f" ({stop_reason})" if stop_reason else "")
    if stopped_by_failures(stop_reason):
        return EXIT_SEARCH_FAILED, stop_reason
    failed = [f"{step}: {info.get('reason') or 'failed'}" for step, info in (promotion or {}).items()
              if isinstance(info, Mapping) and info.get("status") == "failed"]
    if failed:
        return EXIT_PROMOTION_FAILED, "promotion failed: " + "; ".join(failed)
    return EXIT_OK, None


def epoch_metrics(trial_dir: Path) -> dict[int, dict[str, float]]:
    """Epoch -> metrics from ``metrics.jsonl``; an epoch re-run after a resume keeps its last record."""
    return {int(r["epoch"]): r.get("metrics", {}) for r in read_metrics(trial_dir)}


def best_epoch(epochs: Mapping[int, Mapping[str, float]], monitor: Monitor, upto: int | None = None):
    """(epoch, value) of the best finite monitor value among epochs ``< upto``; (None, None) if none."""
    best = (None, None)
    for epoch in sorted(epochs):
        if upto is not None and epoch >= upto:
            continue
        value = clean_float(epochs[epoch].get(monitor.metric))
        if value is None:
            continue
        if best[1] is None or monitor.better(value, best[1]):
            best = (epoch, value)
    return best


def own_epochs(records: list[dict]) -> int:
    """Epoch records this trial trained itself (a pbt segment starts with its source's history,
    marked :data:`INHERITED`). Every stretch appends the epochs it trained, so this counts an epoch
    trained twice (in flight at a kill, run again from the last checkpoint) twice."""
    return sum(1 for r in records if not r.get(INHERITED))


def folder_record(folder: str | Path, number: int, state: str, objectives: list[Monitor], *,
                  previous: Mapping[str, Any] | None = None, epochs_now: int | None = None, reason: str | None = None,
                  duration_s: float = 0.0, gpus: float = 0.0, params: Mapping[str, Any] | None = None,
                  extra: Mapping[str, Any] | None = None, trainer_output: Mapping[str, Any] | None = None,
                  records: list[dict] | None = None) -> TrialRecord:
    """The record of trial ``number`` from its folder.

    ``value``/``best_epoch``: the best epoch of the first objective in ``metrics.jsonl``; ``values``:
    every objective at the last epoch. ``epochs_run``: the earlier stretches' total (``previous``, the
    ``result.prev.json``), or, when a cut-off stretch left no result, the records before this
    stretch's ``epochs_now``, plus ``epochs_now``; with ``epochs_now`` None, every record. Durations and GPU seconds add
    to ``previous``'s. ``trainer_output`` (``TrainerPlugin.train``'s return) names the checkpoints when
    it agrees with ``metrics.jsonl`` on the best epoch.
    """
    folder = Path(folder)
    previous = previous or {}
    records = read_metrics(folder) if records is None else records
    epochs = {int(r["epoch"]): r.get("metrics", {}) for r in records}
    epoch, value = best_epoch(epochs, objectives[0]) if objectives else (None, None)
    values = None
    if len(objectives) > 1 and epochs:
        last = epochs[max(epochs)]
        values = [clean_float(last.get(m.metric)) for m in objectives]
    own = own_epochs(records)
    if epochs_now is None:  # no count of this stretch: every record is an epoch trained
        epochs_run = own
    else:
        before = int(previous["epochs_run"]) if "epochs_run" in previous else max(0, own - int(epochs_now))
        epochs_run = before + int(epochs_now)
    output = trainer_output or {}
    last_ckpt = output.get("last_checkpoint") or (rundir.checkpoint(folder) if rundir.checkpoint(folder).exists() else None)
    return TrialRecord(
        number=number, state=TrialState(state), params=dict(params or {}), value=value, values=values,
        best_epoch=epoch, best_checkpoint=_best_checkpoint(folder, records, epoch, output),
        last_checkpoint=str(last_ckpt) if last_ckpt else None, epochs_run=epochs_run,
        epochs_done=(max(epochs) + 1) if epochs else 0,
        reason=reason if reason or state != TrialState.FAILED else "failed",
        duration_s=float(previous.get("duration_s", 0.0)) + duration_s,
        gpu_seconds=float(previous.get("gpu_seconds", 0.0)) + duration_s * gpus, trial_dir=str(folder),
        extra={**previous.get("extra", {}), **(extra or {})})


def _best_checkpoint(folder: Path, records: list[dict], epoch: int | None, output: Mapping[str, Any]) -> str | None:
    """The checkpoint of the best epoch: the trainer's own when it agrees on that epoch; else the one
    ``metrics.jsonl`` recorded for it (``best.ckpt`` when that record says ``last.ckpt``, which has
    moved on since), e.g. after a resumed run that forgot the earlier best."""
    trainer_best = output.get("best_checkpoint")
    if trainer_best and (output.get("best_epoch") is None or epoch is None or int(output["best_epoch"]) == epoch):
        return str(trainer_best)
    if epoch is None:
        return None
    recorded = [r["checkpoint"] for r in records if int(r["epoch"]) == epoch and r.get("checkpoint")]
    ckpt = recorded[-1] if recorded and Path(recorded[-1]).exists() else None
    best_file = rundir.checkpoint(folder, "best")
    if ckpt and Path(ckpt).name == rundir.checkpoint(folder).name and best_file.exists():
        return str(best_file)
    return str(ckpt or trainer_best) if (ckpt or trainer_best) else None
