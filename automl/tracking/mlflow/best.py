"""Which trial is best so far, as the runs show it: a ``best`` tag on that trial's run (moved when
another wins), ``automl.best_trial``/``automl.best_value`` on the parent, and its ``best_so_far`` curve."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from automl.reporting import clean_float
from automl.tracking.mlflow.names import SEARCH, run_key


class BestTrial:
    """Decides the best trial itself until the controller names one: the controller knows its own rule
    (rungs of multi-fidelity searches, multi-objective ranking), so from its first answer on it wins."""

    def __init__(self, submit: Callable[..., None]):
        self._submit = submit
        self.mode = "max"
        self.current: tuple[int, float] | None = None
        self._logged: tuple[int, float] | None = None
        self._from_controller = False
        self._mutex = threading.Lock()

    def trial_finished(self, number: int, state: str, value: float | None) -> None:
        if self._from_controller:
            return
        if state == "complete" and clean_float(value) is not None:
            if self.current is None or self._better(float(value), self.current[1]):
                self._move(number, float(value))
        self.log_so_far(number)

    def controller_says(self, best: dict[str, Any], step: int | None) -> None:
        self._from_controller = True
        if best.get("number") is not None and clean_float(best.get("value")) is not None:
            number = int(best["number"])
            if self.current is None or self.current[0] != number:
                self._move(number, float(best["value"]))
        self.log_so_far(step)

    def restore(self, run_dir: Path, monitor: str | None) -> None:
        """A resumed search starts from the best of the trials it already has."""
        from automl.tracking.plots import collect_trials

        for row in collect_trials(run_dir, monitor):
            if row.state == "complete" and row.value is not None and (
                    self.current is None or self._better(row.value, self.current[1])):
                self.current = (row.number, row.value)

    def log_so_far(self, step: int | None) -> None:
        if self.current is None or step is None or self._logged == (step, self.current[1]):
            return
        self._logged = (step, self.current[1])
        self._submit("metrics", key=SEARCH, step=step, metrics={"best_so_far": self.current[1]})

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b

    def _move(self, number: int, value: float) -> None:
        with self._mutex:
            previous = self.current
            self.current = (number, value)
        if previous is not None and previous[0] != number:
            self._submit("untag", key=run_key(previous[0]), tag="best")
        self._submit("tags", key=run_key(number), tags={"best": "true"})
        self._submit("tags", key=SEARCH, tags={"automl.best_trial": number, "automl.best_value": value})
