"""Rules about trial outcomes that every backend applies the same way.

* :class:`FailureStreak`: ``--max-failures K`` failed trials in a row stop the search; any other
  outcome (complete, pruned, or paused at a rung: the trial trained fine) ends the streak. One message
  for both backends.
* :func:`loss`, :func:`ranked`, :func:`best_so_far`: comparing values whatever the monitor's mode
  (lower loss is better); ties go to the lower trial number (the earlier trial, the baseline first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from automl.backends.base import FAILED, TrialRecord
from automl.plugins import Monitor

T = TypeVar("T")


def loss(mode: str, value: float) -> float:
    """``value`` turned into something to minimise: negated for a metric to maximise."""
    return -value if mode == "max" else value


def ranked(items: Iterable[T], monitor: Monitor, value: Callable[[T], float] = lambda r: r.value) -> list[T]:
    """``items`` best first by ``value(item)``; a stable sort, so ties keep their order (by number)."""
    return sorted(items, key=lambda item: loss(monitor.mode, value(item)))


def best_so_far(records: Iterable[TrialRecord], monitor: Monitor) -> TrialRecord | None:
    """The best trial with a value that did not fail (a paused or pruned one counts: its value was
    measured); ties go to the lower trial number."""
    done = sorted((r for r in records if r.state != FAILED and r.value is not None), key=lambda r: r.number)
    return ranked(done, monitor)[0] if done else None


class FailureStreak:
    """Counts failed trials in a row; :meth:`add` returns the stop reason once the limit is reached."""

    def __init__(self, limit: int):
        self.limit, self.count = int(limit or 0), 0

    def add(self, record: TrialRecord) -> str | None:
        # a paused trial counts as a success: it trained to its rung, so trials do run
        self.count = self.count + 1 if record.state == FAILED else 0
        if self.limit and self.count >= self.limit:
            return stop_message(self.count, record)
        return None


def stop_message(count: int, last: TrialRecord) -> str:
    return f"stopped: {count} trials failed in a row (last: trial {last.number}: {last.reason or 'failed'})"
