"""Experiment tracking: what a search tells the outside world, one hook per event.

The controller (either backend) calls these hooks from the driver process only; trial processes
never talk to a tracking server. Per-epoch metrics reach the tracker from each trial's
``metrics.jsonl`` (see :mod:`automl.reporting`), so a trial killed mid-epoch loses nothing it wrote.

Implementations live side by side: :class:`NullTracker` here, the MLflow one in
:mod:`automl.tracking.mlflow_tracker`.
"""

from __future__ import annotations

import os
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

    def search_progress(self, trials: list[dict[str, Any]], best: dict[str, Any] | None) -> None:
        """Called after each finished trial with all trials so far (for best-so-far and plots)."""

    def promoted(self, best: dict[str, Any], best_dir: Path) -> None:
        """The best trial was promoted into ``best_dir`` (checkpoint, evaluation, ONNX, TensorRT)."""

    def end_search(self, summary: dict[str, Any]) -> None:
        """The search ended (finished, stopped, or failed); ``summary`` is what ``--json`` prints."""


class NullTracker(Tracker):
    """Records nothing."""


def create_tracker(run_dir: Path, tracking_uri: str | None = None, enabled: bool = True) -> Tracker:
    """The tracker a search or a plain training run uses.

    Default: MLflow with an embedded store inside ``run_dir``; ``tracking_uri`` points at a team server.
    """
    if not tracking_enabled(enabled):
        return NullTracker()
    from automl.tracking.mlflow_tracker import MlflowTracker

    return MlflowTracker(Path(run_dir), resolve_tracking_uri(tracking_uri))


def tracking_enabled(enabled: bool = True) -> bool:
    """``AUTOML_TRACKING=off`` turns tracking off everywhere (e.g. in test suites of other components)."""
    return enabled and os.environ.get("AUTOML_TRACKING", "on").lower() not in ("off", "0", "false", "no")


def resolve_tracking_uri(tracking_uri: str | None) -> str | None:
    """An explicit URI wins; else ``AUTOML_TRACKING_URI`` (a team server for every run); else None: the
    embedded store in the run folder. Not ``MLFLOW_TRACKING_URI``: ``mlflow.set_tracking_uri`` sets it
    process-wide as a side effect, which would silently redirect runs started from that process."""
    return tracking_uri or os.environ.get("AUTOML_TRACKING_URI") or None


def start_training_run(results_dir: Path, *, model: str, spec: dict[str, Any] | None = None,
                       tracking_uri: str | None = None, enabled: bool = True, **kwargs: Any):
    """Plain training (``automl train``): open its MLflow run now, ``finish(result)`` when it ends.
    Returns None when tracking is off. See :class:`automl.tracking.mlflow_tracker.TrainingRun`."""
    if not tracking_enabled(enabled):
        return None
    from automl.tracking.mlflow_tracker import start_training_run as _start

    return _start(Path(results_dir), model=model, spec=spec, tracking_uri=resolve_tracking_uri(tracking_uri),
                  **kwargs)


def track_training_run(results_dir: Path, **kwargs: Any) -> str | None:
    """Log one plain training run (``automl train``); see
    :func:`automl.tracking.mlflow_tracker.track_training_run` for the arguments."""
    from automl.tracking.mlflow_tracker import track_training_run as _track

    kwargs["enabled"] = tracking_enabled(kwargs.get("enabled", True))
    kwargs["tracking_uri"] = resolve_tracking_uri(kwargs.get("tracking_uri"))
    return _track(Path(results_dir), **kwargs)
