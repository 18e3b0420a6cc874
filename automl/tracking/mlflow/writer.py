"""Applying spooled operations to an MLflow store, with explicit run ids only (``MlflowClient``; no
fluent active-run state, since the controller is multi-threaded). Every operation can be applied twice
without changing the result (see :mod:`automl.tracking.mlflow`)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from automl.tracking.mlflow.failures import HTTP_ENV_DEFAULTS, is_transient, short_reason
from automl.tracking.mlflow.names import key_name, ms, param_value, tag_value
from automl.tracking.mlflow.registry import register_champion
from automl.tracking.mlflow.view import experiment_tags
from automl.tracking.spool import Batch, TransientError
from automl.tracking.store import TrackingState, ensure_embedded_store

log = logging.getLogger(__name__)

PARAMS_PER_BATCH = 100  # MLflow's limit for params in one log_batch


class MlflowWriter:
    """Applies spooled operations to an MLflow store. Used by the delivery thread and ``automl sync``."""

    def __init__(self, state: TrackingState, plot_interval_s: float = 30.0):
        for key, value in HTTP_ENV_DEFAULTS.items():
            os.environ.setdefault(key, value)
        self.state = state
        self.plot_interval_s = plot_interval_s
        self._client = None
        self._last_plot = 0.0

    def prepare(self) -> None:
        """Import MLflow and build the client in the caller's thread (no network): done from the driver
        at start, so the delivery thread can still work while the interpreter shuts down."""
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
        import requests  # noqa: F401

        self._make_client()

    @property
    def client(self):
        if self._client is None:
            self._make_client()
        return self._client

    def _make_client(self) -> None:
        if self._client is None:
            from mlflow import MlflowClient

            # "Creating initial MLflow database tables..." on every new run folder is noise to users.
            for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
                logging.getLogger(name).setLevel(logging.WARNING)

            # MlflowClient builds a missing SQLite store's tables itself, in place: build it atomically first
            ensure_embedded_store(self.state.tracking_uri)
            self._client = MlflowClient(tracking_uri=self.state.tracking_uri, registry_uri=self.state.tracking_uri)

    # -- delivery entry point -------------------------------------------------------------------------
    def send(self, batch: Batch) -> None:
        try:
            ensure_embedded_store(self.state.tracking_uri)  # once per folder; at once when it exists
            if batch[0]["op"] == "metrics":
                self._metrics(batch)
            else:
                for entry in batch:
                    getattr(self, "_op_" + entry["op"])(entry)
        except TransientError:
            raise
        except Exception as exc:
            if is_transient(exc):
                raise TransientError(short_reason(exc)) from exc
            raise

    # -- runs -----------------------------------------------------------------------------------------
    def _experiment_id(self) -> str:
        if self.state.experiment_id:
            return self.state.experiment_id
        client = self.client
        experiment = client.get_experiment_by_name(self.state.experiment)
        if experiment is None:
            from mlflow.exceptions import MlflowException

            try:
                experiment_id = client.create_experiment(self.state.experiment,
                                                         artifact_location=self.state.artifact_location)
            except MlflowException as exc:  # created meanwhile by someone else
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment_id = client.get_experiment_by_name(self.state.experiment).experiment_id
        else:
            experiment_id = experiment.experiment_id
        self.state.set_experiment(experiment_id)
        return experiment_id

    def _run_id(self, key: str) -> str:
        run_id = self.state.run_id(key)
        if run_id is None:
            raise ValueError(f"no run opened for '{key}'")
        return run_id

    def _op_open(self, e: dict[str, Any]) -> None:
        client = self.client
        experiment_id = self._experiment_id()
        unique = f"{self.state.search_uid}/{e['key']}"
        run_id = self.state.run_id(e["key"])
        if run_id is None:
            found = client.search_runs([experiment_id], filter_string=f"tags.`automl.run_key` = '{unique}'",
                                       max_results=1)
            run_id = found[0].info.run_id if found else None
        tags = {k: tag_value(v) for k, v in e.get("tags", {}).items()}
        if e.get("parent"):
            tags["mlflow.parentRunId"] = self._run_id(e["parent"])
        if run_id is None:
            tags["automl.run_key"] = unique
            run = client.create_run(experiment_id, start_time=e.get("ts"), tags=tags, run_name=e.get("name"))
            run_id = run.info.run_id
        else:  # resumed, or a retried trial: the same run again
            client.update_run(run_id, status="RUNNING")
            self._tags(run_id, tags)
        self.state.set_run(e["key"], run_id)
        if e.get("params"):
            self._params(run_id, e["params"])
        if e.get("view"):
            for key, value in experiment_tags(e["view"], self.state.search_uid).items():
                client.set_experiment_tag(experiment_id, key, value)

    def _op_close(self, e: dict[str, Any]) -> None:
        self.client.set_terminated(self._run_id(e["key"]), status=e["status"], end_time=e.get("ts"))

    def _op_tags(self, e: dict[str, Any]) -> None:
        self._tags(self._run_id(e["key"]), e["tags"])

    def _op_untag(self, e: dict[str, Any]) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.delete_tag(self._run_id(e["key"]), e["tag"])
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":  # already moved (replay)
                raise

    def _op_params(self, e: dict[str, Any]) -> None:
        self._params(self._run_id(e["key"]), e["params"])

    # -- files ----------------------------------------------------------------------------------------
    def _op_artifact(self, e: dict[str, Any]) -> None:
        path = Path(e["path"])
        if not path.exists():
            log.debug("tracking: artifact %s is gone, skipped", path)
            return
        run_id = self._run_id(e["key"])
        if path.is_dir():
            self.client.log_artifacts(run_id, str(path), e.get("dir"))
        else:
            self.client.log_artifact(run_id, str(path), e.get("dir"))

    def _op_plots(self, e: dict[str, Any]) -> None:
        # Coalescing: the delivery queue may hold several refreshes; drawing is the slow part, so draw at
        # most every plot_interval_s unless this is the final one.
        if not e.get("force") and time.monotonic() - self._last_plot < self.plot_interval_s:
            return
        from automl.tracking import plots

        out = Path(e["out"])
        plots.render(Path(e["run_dir"]), out, e.get("monitor"), e.get("mode", "max"), html=bool(e.get("force")))
        run_id = self._run_id(e["key"])
        for file in sorted(out.iterdir()):
            self.client.log_artifact(run_id, str(file), "plots" if file.suffix != ".csv" else None)
        self._last_plot = time.monotonic()  # only once uploaded: a failed upload is redrawn on retry

    def _op_register(self, e: dict[str, Any]) -> None:
        register_champion(self.client, self.state, e, self._run_id(e["key"]), self._experiment_id())

    # -- values ---------------------------------------------------------------------------------------
    def _metrics(self, batch: Batch) -> None:
        from mlflow.entities import Metric

        run_id = self._run_id(batch[0]["key"])
        metrics = [Metric(key_name(k), float(v) if v is not None else float("nan"), int(e.get("ts") or ms()),
                          int(e.get("step", 0)))
                   for e in batch for k, v in e["metrics"].items()]
        self.client.log_batch(run_id, metrics=metrics)

    def _tags(self, run_id: str, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        if tags:
            self.client.log_batch(run_id, tags=[RunTag(k, tag_value(v)) for k, v in tags.items()])

    def _params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        items = [Param(key_name(k), param_value(v)) for k, v in params.items()]
        for start in range(0, len(items), PARAMS_PER_BATCH):
            chunk = items[start:start + PARAMS_PER_BATCH]
            try:
                self.client.log_batch(run_id, params=chunk)
            except MlflowException as exc:
                if exc.error_code != "INVALID_PARAMETER_VALUE":
                    raise
                # A param logged before with another value (a PBT-mutated trial): keep the first value,
                # record the rest.
                for param in chunk:
                    try:
                        self.client.log_param(run_id, param.key, param.value)
                    except MlflowException as inner:
                        if inner.error_code != "INVALID_PARAMETER_VALUE":
                            raise
