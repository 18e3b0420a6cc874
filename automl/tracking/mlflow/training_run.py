"""A plain training run (``automl train``) logged the way a search logs a trial."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

from automl.reporting import clean_metrics, read_metrics
from automl.tracking.mlflow.names import STATUS, TRAIN, flatten, ms
from automl.tracking.mlflow.records import numbers, outcome_tags
from automl.tracking.mlflow.tracker import MlflowTracker

FINAL_METRICS = ("best_value", "best_epoch", "epochs_run", "duration_s", "gpu_seconds")


class TrainingRun:
    """One plain training run (``automl train``) logged the way a search logs a trial.

    ``start()`` opens the run at once (it shows as running in the UI); a timer reads
    ``<results_dir>/metrics.jsonl`` every ``poll_s`` seconds, so curves grow while the model trains;
    ``finish(result)`` logs the rest and closes the run (``failed=True`` for a run that raised). Each
    epoch carries the time ``metrics.jsonl`` recorded, so reading it again never duplicates a point.
    """

    def __init__(self, results_dir: Path, *, model: str, spec: dict[str, Any] | None = None,
                 spec_path: Path | None = None, tracking_uri: str | None = None, command: str | None = None,
                 poll_s: float = 10.0, flush_timeout_s: float = 60.0):
        self.results_dir = Path(results_dir).resolve()
        self.model = model
        self.spec = spec or {}
        self.spec_path = Path(spec_path) if spec_path else None
        self.command = command or " ".join(sys.argv)
        self.poll_s = poll_s
        self.tracker = MlflowTracker(self.results_dir, tracking_uri, experiment=f"automl-{model}-train",
                                     flush_timeout_s=flush_timeout_s)
        self.tracker.info = {"name": self.results_dir.name, "model": model}
        self._sent: set[tuple[int, int]] = set()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._mutex = threading.Lock()

    @property
    def run_id(self) -> str | None:
        return self.tracker.state.run_id(TRAIN)

    def start(self) -> TrainingRun:
        tags = {"automl.kind": "train", "automl.model": self.model, "automl.run_dir": str(self.results_dir),
                "automl.command": self.command, "mlflow.source.name": "automl train", "automl.state": "running"}
        self.tracker.submit("open", key=TRAIN, name=self.results_dir.name, tags=tags,
                            params=flatten(self.spec) if self.spec else {})
        if self.poll_s > 0:
            self._poller = threading.Thread(target=self._poll_loop, name="automl-train-tracking", daemon=True)
            self._poller.start()
        return self

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()

    def poll(self) -> None:
        """Send the epochs ``metrics.jsonl`` holds that were not sent yet."""
        with self._mutex:
            for record in read_metrics(self.results_dir):
                ts = ms(record.get("time"))
                mark = (int(record["epoch"]), ts)
                if mark in self._sent:
                    continue
                self._sent.add(mark)
                self.tracker.submit("metrics", key=TRAIN, step=mark[0], ts=ts,
                                    metrics=clean_metrics(record.get("metrics", {})))

    def finish(self, result: dict[str, Any] | None = None, failed: bool = False, reason: str | None = None) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=10)
        self.poll()
        result = result or {}
        state = "failed" if failed else str(result.get("state") or "complete")
        final = numbers(result, FINAL_METRICS)
        if final:
            self.tracker.submit("metrics", key=TRAIN, step=0, metrics=final)
        # a relative checkpoint path is the trainer's, relative to where it ran: this process's folder
        self.tracker.submit("tags", key=TRAIN, tags=outcome_tags(state, result, Path.cwd(), reason))
        self.tracker.artifact(TRAIN, self.spec_path or self.results_dir / "spec.yaml", "spec")
        self.tracker.artifact(TRAIN, self.results_dir / "train.json")
        self.tracker.submit("close", key=TRAIN, status=STATUS.get(state, "FAILED"))
        self.tracker.close()


def start_training_run(results_dir: Path, *, model: str, spec: dict[str, Any] | None = None,
                       tracking_uri: str | None = None, **kwargs: Any) -> TrainingRun:
    """Open the MLflow run of a plain training run; call ``finish(result)`` (or ``finish({}, failed=True)``)
    when training ends."""
    return TrainingRun(results_dir, model=model, spec=spec, tracking_uri=tracking_uri, **kwargs).start()


def track_training_run(results_dir: Path, *, model: str, spec: dict[str, Any] | None = None,
                       spec_path: Path | None = None, result: dict[str, Any] | None = None,
                       state: str = "complete", reason: str | None = None, tracking_uri: str | None = None,
                       command: str | None = None, enabled: bool = True,
                       flush_timeout_s: float = 60.0) -> str | None:
    """Log a plain training run that already ended, in one call (epochs from ``metrics.jsonl``).

    Returns the MLflow run id, or None when tracking is off. When the store was unreachable the events
    stay in ``<results_dir>/tracking_spool.jsonl`` (``automl sync``).
    """
    if not enabled:
        return None
    run = TrainingRun(results_dir, model=model, spec=spec, spec_path=spec_path, tracking_uri=tracking_uri,
                      command=command, poll_s=0, flush_timeout_s=flush_timeout_s).start()
    run.finish({**(result or {}), "state": state}, failed=state == "failed", reason=reason)
    return run.run_id
