"""Which trial is best so far, as the runs show it: a ``best`` tag on that trial's run (moved when
another wins), ``automl.best_trial``/``automl.best_value`` on the parent, and its ``best_so_far`` curve.

The winner follows :func:`automl.trials.outcome.winner_key` (value, then earlier best epoch, then lower
number), the rule the controller and ``automl best`` use. ``best_so_far`` is logged when a trial
finishes, at step = trials finished so far (and that moment's wall time), as the running best of the
completed trials' values: a curve that never gets worse, the one ``optimization_history.png`` draws."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from automl.reporting import clean_float
from automl.tracking.mlflow.names import SEARCH, run_key
from automl.trials.outcome import winner_key


class BestTrial:
    """Decides the best trial itself until the controller names one: the controller knows its own rule
    (rungs of multi-fidelity searches, multi-objective ranking), so from its first answer on it wins."""

    def __init__(self, submit: Callable[..., None]):
        self._submit = submit
        self.mode = "max"
        self.current: tuple[int, float] | None = None
        self._current_key: tuple | None = None
        #: trials finished so far (the curve's step) and the best completed value among them
        self.finished = 0
        self.curve_best: float | None = None
        self._from_controller = False
        self._mutex = threading.Lock()

    def trial_finished(self, number: int, state: str, value: float | None, best_epoch: int | None = None) -> None:
        if state == "paused":  # waits at a rung and finishes later: counted then
            return
        self.finished += 1
        if state == "complete" and clean_float(value) is not None:
            value = float(value)
            if self.curve_best is None or winner_key(self.mode, value) < winner_key(self.mode, self.curve_best):
                self.curve_best = value
            key = winner_key(self.mode, value, best_epoch, number)
            if not self._from_controller and (self._current_key is None or key < self._current_key):
                self._move(number, value, key)
        self.log_so_far()

    def controller_says(self, best: dict[str, Any], step: int | None = None) -> None:
        self._from_controller = True
        if best.get("number") is not None and clean_float(best.get("value")) is not None:
            number = int(best["number"])
            if self.current is None or self.current[0] != number:
                self._move(number, float(best["value"]), None)

    def restore(self, run_dir: Path, monitor: str | None) -> None:
        """A resumed search starts from the best of the trials it already has, and counts them."""
        from automl.tracking.plots import collect_trials

        for row in collect_trials(run_dir, monitor):
            if row.state not in ("complete", "pruned", "failed"):
                continue
            self.finished += 1
            if row.state == "complete" and row.value is not None:
                key = winner_key(self.mode, row.value, row.result.get("best_epoch"), row.number)
                if self._current_key is None or key < self._current_key:
                    self.current, self._current_key = (row.number, row.value), key
                if self.curve_best is None or self.mode_better(row.value, self.curve_best):
                    self.curve_best = row.value

    def log_so_far(self) -> None:
        if self.curve_best is not None and self.finished:
            self._submit("metrics", key=SEARCH, step=self.finished, metrics={"best_so_far": self.curve_best})

    def mode_better(self, a: float, b: float) -> bool:
        return winner_key(self.mode, a) < winner_key(self.mode, b)

    def _move(self, number: int, value: float, key: tuple | None) -> None:
        with self._mutex:
            previous = self.current
            self.current, self._current_key = (number, value), key
        if previous is not None and previous[0] != number:
            self._submit("untag", key=run_key(previous[0]), tag="best")
        self._submit("tags", key=run_key(number), tags={"best": "true"})
        self._submit("tags", key=SEARCH, tags={"automl.best_trial": number, "automl.best_value": value})
