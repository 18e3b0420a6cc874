"""Experiment tracking: what a search tells the outside world, one hook per event.

The controller (either backend) calls these hooks from the driver process only; trial processes
never talk to a tracking server. Per-epoch metrics reach the tracker from each trial's
``metrics.jsonl`` (see :mod:`automl.reporting`), so a trial killed mid-epoch loses nothing it wrote.

The hooks and :class:`NullTracker` are in :mod:`automl.tracking.hooks`, the MLflow tracker in
:mod:`automl.tracking.mlflow`; this module picks one (:func:`create_tracker`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from automl.tracking.hooks import NullTracker, Tracker

__all__ = ["NullTracker", "Tracker", "create_tracker", "resolve_tracking_uri", "start_training_run",
           "track_training_run", "tracking_enabled"]


def create_tracker(run_dir: Path, tracking_uri: str | None = None, enabled: bool = True,
                   force_champion: bool = False) -> Tracker:
    """The tracker a search or a plain training run uses.

    Default: MLflow with an embedded store inside ``run_dir``; ``tracking_uri`` points at a team server.
    ``force_champion``: the promoted model takes the registry alias ``champion`` even when it does not
    beat the current one.
    """
    if not tracking_enabled(enabled):
        return NullTracker()
    from automl.tracking.mlflow import MlflowTracker

    return MlflowTracker(Path(run_dir), resolve_tracking_uri(tracking_uri), force_champion=force_champion)


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
    Returns None when tracking is off. See :class:`automl.tracking.mlflow.TrainingRun`."""
    if not tracking_enabled(enabled):
        return None
    from automl.tracking.mlflow import start_training_run as _start

    return _start(Path(results_dir), model=model, spec=spec, tracking_uri=resolve_tracking_uri(tracking_uri),
                  **kwargs)


def track_training_run(results_dir: Path, **kwargs: Any) -> str | None:
    """Log one plain training run (``automl train``); see
    :func:`automl.tracking.mlflow.track_training_run` for the arguments."""
    from automl.tracking.mlflow import track_training_run as _track

    kwargs["enabled"] = tracking_enabled(kwargs.get("enabled", True))
    kwargs["tracking_uri"] = resolve_tracking_uri(kwargs.get("tracking_uri"))
    return _track(Path(results_dir), **kwargs)
