"""The hooks a search's tracker implements, one per event, and the tracker that records nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Tracker:
    """Base class: every hook is a no-op, so a tracker overrides only what it records."""

    def start_search(self, run_dir: Path, info: dict[str, Any]) -> None:
        """A search starts or resumes. ``info`` holds at least name, model, algorithm, budget, backend,
        seed, command, monitor, mode, resumed (bool), base_spec (path) and space (path to space.json)."""

    def trial_started(self, number: int, params: dict[str, Any], trial_dir: Path) -> None:
        """Trial ``number`` starts (or restarts after a crash or a promotion)."""

    def trial_epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        """One epoch of trial ``number`` finished; ``epoch`` is 0-based."""

    def trial_finished(self, number: int, state: str, value: float | None, result: dict[str, Any],
                       trial_dir: Path) -> None:
        """Trial ``number`` ended. ``state`` is complete, pruned, paused or failed; ``result`` carries
        reason, duration_s, gpu_seconds, best_epoch, best_checkpoint and spec (path)."""

    def search_progress(self, best: dict[str, Any] | None) -> None:
        """Called after each finished trial with the best trial so far (its record), None while no trial
        has a value. (Not every trial so far: handing those over at every trial's end made a search of
        n trials cost O(n²) in the controller; the trial folders hold them.)"""

    def promoted(self, best: dict[str, Any], best_dir: Path) -> None:
        """The best trial was promoted into ``best_dir`` (checkpoint, evaluation, ONNX, TensorRT)."""

    def end_search(self, summary: dict[str, Any]) -> None:
        """The search ended (finished, stopped, or failed); ``summary`` is what ``--json`` prints."""

    def describe(self) -> dict[str, Any] | None:
        """Where the search is recorded (tracking URI, run ids), for the summary; None: nowhere."""
        return None


class NullTracker(Tracker):
    """Records nothing."""
