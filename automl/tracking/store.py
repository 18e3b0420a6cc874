"""Where a run's tracking goes, and the ids that tie a run folder to its MLflow runs.

By default a run folder carries its own MLflow store: ``mlflow.db`` (SQLite, so the Model Registry
works without a server) and ``mlartifacts/``. ``--tracking-uri http://host:port`` sends everything to a
team server instead. Either way ``<run_dir>/mlflow.json`` records the store, the experiment and the run
id of every logical run ("search", "trial/0003", "train"), so a resumed search re-attaches to the same
runs instead of creating new ones.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

from automl.fsutil import create_with, write_text

STATE_FILE = "mlflow.json"
DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"


def default_tracking_uri(run_dir: Path) -> str:
    return f"sqlite:///{Path(run_dir).resolve() / DB_FILE}"


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "databricks"))


class TrackingState:
    """``<run_dir>/mlflow.json``: the store, the experiment and the logical-run -> run-id map.

    Written atomically after every change; shared by the tracker and ``automl sync`` (which never run
    at the same time on one folder: see :class:`automl.tracking.spool.DeliveryLock`).
    """

    def __init__(self, run_dir: Path, tracking_uri: str | None = None, experiment: str | None = None):
        self.run_dir = Path(run_dir).resolve()
        self.path = self.run_dir / STATE_FILE
        self._lock = threading.Lock()
        data: dict[str, Any] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except json.JSONDecodeError:
                data = {}
        # A resumed search keeps its store unless the user names another one explicitly.
        self.tracking_uri: str = tracking_uri or data.get("tracking_uri") or default_tracking_uri(self.run_dir)
        moved = data.get("tracking_uri") not in (None, self.tracking_uri)
        self.experiment: str = experiment or data.get("experiment") or "automl"
        self.search_uid: str = data.get("search_uid") or uuid.uuid4().hex
        # Run ids belong to one store; a different store starts from nothing.
        self.experiment_id: str | None = None if moved else data.get("experiment_id")
        self.runs: dict[str, str] = {} if moved else dict(data.get("runs", {}))
        self.registered: dict[str, Any] = {} if moved else dict(data.get("registered", {}))
        self.save()

    @property
    def artifact_location(self) -> str | None:
        """Artifacts of the embedded store stay inside the run folder; a server decides for itself."""
        if is_remote(self.tracking_uri):
            return None
        return (self.run_dir / ARTIFACTS_DIR).as_uri()

    def run_id(self, key: str) -> str | None:
        return self.runs.get(key)

    def set_run(self, key: str, run_id: str) -> None:
        with self._lock:
            self.runs[key] = run_id
        self.save()

    def set_experiment(self, experiment_id: str) -> None:
        self.experiment_id = experiment_id
        self.save()

    def save(self) -> None:
        with self._lock:
            data = {
                "tracking_uri": self.tracking_uri,
                "experiment": self.experiment,
                "experiment_id": self.experiment_id,
                "search_uid": self.search_uid,
                "runs": self.runs,
                "registered": self.registered,
            }
            write_text(self.path, json.dumps(data, indent=2))


def read_state(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def ensure_embedded_store(tracking_uri: str) -> None:
    """Create the embedded SQLite store atomically: MLflow builds its tables with a few dozen migrations,
    and a process killed half way through (a SIGKILLed search) would leave a database no MLflow can
    open again ("table ... already exists"). Build it under a temporary name, then rename it."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return
    path = Path(tracking_uri[len(prefix):])
    if path.exists():
        return
    from mlflow.store.db import utils as db_utils

    def build(tmp: Path) -> None:
        engine = db_utils.create_sqlalchemy_engine_with_retry(f"{prefix}{tmp}")
        try:
            db_utils._initialize_tables(engine)  # what SqlAlchemyStore does on an empty database
        finally:
            engine.dispose()

    create_with(path, build)  # False: another process won the race; its store is as good as ours
