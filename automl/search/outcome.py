"""Rules about trial outcomes that every backend applies the same way.

* :class:`FailureStreak`: ``--max-failures K`` failed trials in a row stop the search; any other
  outcome (complete, pruned, or paused at a rung: the trial trained fine) ends the streak. One message
  for both backends.
"""

from __future__ import annotations

from automl.backends.base import FAILED, TrialRecord


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
