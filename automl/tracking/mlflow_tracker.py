"""MLflow tracking: one parent run per search, one nested child run per trial, the champion registered.

The hooks turn events into small operations on *logical* runs ("search", "trial/0003", "train"),
append them to the spool and return; a background thread (:class:`automl.tracking.spool.Delivery`)
applies them through :class:`MlflowWriter`, which talks to MLflow with explicit run ids only
(``MlflowClient``; no fluent active-run state, since the controller is multi-threaded).

Every operation can be applied twice without changing the result, which is what makes replay after an
outage or a crash safe:

* runs are found again by their ``automl.run_key`` tag before one is created;
* metrics carry the time of the epoch from ``metrics.jsonl``, and the store drops a metric whose key,
  step, timestamp and value it already has;
* params, tags, artifacts and aliases are overwritten with the same values;
* a model version is looked up by its run key before one is created.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

from automl.reporting import clean_float, clean_metrics, read_metrics
from automl.tracking import Tracker
from automl.tracking.spool import Batch, Delivery, DeliveryLock, Spool, TransientError
from automl.tracking.store import TrackingState, ensure_embedded_store

log = logging.getLogger(__name__)

SEARCH = "search"
TRAIN = "train"
CHAMPION = "champion"
TRACKING_DIR = "tracking"  # rendered plots and models waiting to be uploaded, inside the run folder

# MLflow's defaults (120 s timeout, 7 retries with exponential backoff) would hold a trial's events
# for many minutes on a dead server; the spool retries for us, so fail fast. A user's setting wins.
HTTP_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    # MLflow prints "View run ... at: URL" on stdout for every run it ends on a server: it would
    # interleave with the search's progress display and break `--json` output.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}

STATUS = {"complete": "FINISHED", "pruned": "KILLED", "paused": "KILLED", "failed": "FAILED"}
SEARCH_STATUS = {"finished": "FINISHED", "complete": "FINISHED", "completed": "FINISHED", "done": "FINISHED",
                 "failed": "FAILED", "error": "FAILED"}

# Error codes that mean "this request is wrong", not "the store is away": retrying cannot help.
_PERMANENT_CODES = {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST",
                    "BAD_REQUEST", "INVALID_STATE", "PERMISSION_DENIED", "UNAUTHENTICATED",
                    "ENDPOINT_NOT_FOUND", "NOT_IMPLEMENTED"}


def run_key(number: int) -> str:
    return f"trial/{number:04d}"


def _key_name(name: str) -> str:
    """MLflow accepts letters, digits, ``_ - . / :`` and spaces in metric and param names."""
    return re.sub(r"[^\w\-./: ]", "_", str(name))[:250]


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]


def _ms(seconds: float | None = None) -> int:
    return int(1000 * (time.time() if seconds is None else seconds))


def _is_transient(exc: BaseException) -> bool:
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError,
                        TimeoutError)):
        return True
    if isinstance(exc, MlflowException):
        return exc.error_code not in _PERMANENT_CODES
    try:
        import sqlalchemy.exc

        if isinstance(exc, sqlalchemy.exc.OperationalError):  # "database is locked"
            return True
    except ImportError:
        pass
    return False


def _short_reason(exc: BaseException) -> str:
    text = str(exc)
    for needle, reason in (("Connection refused", "connection refused"), ("timed out", "timed out"),
                           ("Name or service not known", "unknown host"), ("Max retries exceeded", "no answer")):
        if needle in text:
            return reason
    return f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}"


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
            if _is_transient(exc):
                raise TransientError(_short_reason(exc)) from exc
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
        tags = {k: str(v)[:5000] for k, v in e.get("tags", {}).items()}
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
        plots.render(Path(e["run_dir"]), out, e.get("monitor"), e.get("mode", "max"))
        run_id = self._run_id(e["key"])
        for file in sorted(out.iterdir()):
            self.client.log_artifact(run_id, str(file), "plots" if file.suffix != ".csv" else None)
        self._last_plot = time.monotonic()  # only once uploaded: a failed upload is redrawn on retry

    def _op_register(self, e: dict[str, Any]) -> None:
        from mlflow.exceptions import MlflowException

        client = self.client
        run_id = self._run_id(e["key"])
        run = client.get_run(run_id)
        artifact_path = e.get("artifact_path", "model")
        if e.get("model_dir"):
            client.log_artifacts(run_id, e["model_dir"], artifact_path)
        name = e["name"]
        try:
            client.create_registered_model(name, description=e.get("description"))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        unique = f"{self.state.search_uid}/{e['key']}/{e.get('promotion', 0)}"
        version = None
        for mv in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'"):
            if mv.tags.get("automl.run_key") == unique:
                version = mv.version
        if version is None:
            tags = {k: str(v) for k, v in e.get("tags", {}).items()}
            tags["automl.run_key"] = unique
            tags["automl.parent_run_id"] = self.state.run_id(SEARCH) or ""
            mv = client.create_model_version(name, source=f"{run.info.artifact_uri}/{artifact_path}",
                                             run_id=run_id, tags=tags, description=e.get("description"))
            version = mv.version
        client.set_registered_model_alias(name, e.get("alias", CHAMPION), version)
        self.state.registered = {"name": name, "version": str(version), "alias": e.get("alias", CHAMPION)}
        self.state.save()

    # -- helpers --------------------------------------------------------------------------------------
    def _metrics(self, batch: Batch) -> None:
        from mlflow.entities import Metric

        run_id = self._run_id(batch[0]["key"])
        metrics = [Metric(_key_name(k), float(v) if v is not None else float("nan"), int(e.get("ts") or _ms()),
                          int(e.get("step", 0)))
                   for e in batch for k, v in e["metrics"].items()]
        self.client.log_batch(run_id, metrics=metrics)

    def _tags(self, run_id: str, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        if tags:
            self.client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def _params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        items = [Param(_key_name(k), _param_value(v)) for k, v in params.items()]
        for start in range(0, len(items), 100):
            chunk = items[start:start + 100]
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


def _never_raises(hook):
    """Tracking must not take a search down: a hook that fails (disk full, a model MLflow cannot save)
    warns once per hook and lets the search go on."""

    @functools.wraps(hook)
    def wrapper(self, *args, **kwargs):
        try:
            return hook(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - see above
            if hook.__name__ not in self._failed_hooks:
                self._failed_hooks.add(hook.__name__)
                print(f"warning: MLflow tracking: {hook.__name__} failed ({type(exc).__name__}: {exc}); "
                      f"the search goes on", file=sys.stderr, flush=True)
            log.debug("tracking hook %s failed", hook.__name__, exc_info=True)
            return None

    return wrapper


class MlflowTracker(Tracker):
    """The search's tracker. Hooks never block on the network (see the module docstring).

    ``promoted(best, best_dir)`` reads from ``best``: ``number`` (the trial; ``trial`` also works),
    ``value``, optionally ``torch_module`` (an ``nn.Module`` with the promoted weights loaded: logged
    with MLflow's PyTorch flavour) and ``input_example`` (a numpy array for the model signature).
    Without a module the ONNX file, when there is one, becomes the registered model (ONNX flavour);
    otherwise the version points at the promoted files.
    """

    def __init__(self, run_dir: Path, tracking_uri: str | None = None, *, plot_interval_s: float = 30.0,
                 flush_timeout_s: float = 60.0, experiment: str | None = None, deliver: bool = True):
        self.run_dir = Path(run_dir).resolve()
        self.state = TrackingState(self.run_dir, tracking_uri, experiment)
        self.writer = MlflowWriter(self.state, plot_interval_s)
        self.spool = Spool(self.run_dir)
        self.plot_interval_s = plot_interval_s
        self.flush_timeout_s = flush_timeout_s
        self.writer.prepare()
        self.delivery = Delivery(self.spool, self.writer.send, self._tell_offline, on_orphaned=self._orphaned)
        self._lock = DeliveryLock(self.run_dir)
        self._delivering = deliver and self._lock.acquire()
        if deliver and not self._delivering:
            print(f"warning: another process is delivering tracking events of {self.run_dir}; this one "
                  f"only spools them (run `automl sync` later)", file=sys.stderr)
        if self._delivering:
            self.delivery.start()
        self.info: dict[str, Any] = {}
        self.monitor: str | None = None
        self.mode = "max"
        self.best: tuple[int, float] | None = None
        self._trial_dirs: dict[int, Path] = {}
        self._sent_epochs: dict[int, set[tuple[int, int]]] = {}
        self._last_plot_request = 0.0
        self._promotions = 0
        self._failed_hooks: set[str] = set()
        self._open_trials: set[int] = set()
        self._search_open = False
        self._last_finished: int | None = None
        self._controller_best = False
        self._best_logged: tuple[int, float] | None = None
        self._closed = False
        self._mutex = threading.Lock()

    @property
    def tracking_uri(self) -> str:
        return self.state.tracking_uri

    def _tell_offline(self, reason: str) -> None:
        name = self.info.get("name") or self.run_dir.name
        print(f"warning: MLflow tracking at {self.tracking_uri} is unreachable ({reason}); training goes on, "
              f"events are kept in {self.spool.path} and sent when it is back (or run `automl sync {name}`)",
              file=sys.stderr, flush=True)

    def _submit(self, op: str, **fields: Any) -> None:
        self.delivery.submit({"op": op, "ts": fields.pop("ts", None) or _ms(), **fields})

    def _artifact(self, key: str, path: Path | str | None, directory: str | None = None) -> None:
        if path and Path(path).exists():
            self._submit("artifact", key=key, path=str(Path(path).resolve()), dir=directory)

    # -- hooks ----------------------------------------------------------------------------------------
    @_never_raises
    def start_search(self, run_dir: Path, info: dict[str, Any]) -> None:
        self.info = dict(info)
        self._search_open = True
        self.monitor = info.get("monitor")
        self.mode = info.get("mode") or "max"
        if self.state.experiment_id is None and not info.get("experiment_id"):
            self.state.experiment = info.get("experiment") or f"automl-{info.get('model', 'search')}"
            self.state.save()
        tags = {f"automl.{k}": info[k] for k in ("model", "algorithm", "budget", "backend", "seed", "monitor",
                                                  "mode") if info.get(k) is not None}
        tags.update({"automl.kind": "search", "automl.run_dir": str(self.run_dir),
                     "automl.command": info.get("command", ""), "mlflow.source.name": "automl run",
                     "mlflow.note.content": _search_note(info)})
        self._submit("open", key=SEARCH, name=info.get("name") or self.run_dir.name, tags=tags)
        self._artifact(SEARCH, info.get("base_spec") or self.run_dir / "base_spec.yaml", "search")
        self._artifact(SEARCH, info.get("space") or self.run_dir / "space.json", "search")
        self._artifact(SEARCH, self.run_dir / "search.json", "search")
        if info.get("resumed"):
            self._restore_best()

    @_never_raises
    def trial_started(self, number: int, params: dict[str, Any], trial_dir: Path) -> None:
        self._trial_dirs[number] = Path(trial_dir)
        self._open_trials.add(number)
        self._submit("open", key=run_key(number), parent=SEARCH, name=f"trial-{number:04d}",
                     tags={"automl.trial_number": number, "automl.trial_dir": str(Path(trial_dir).resolve()),
                           "automl.state": "running"},
                     params=params)

    @_never_raises
    def trial_epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        ts = self._epoch_time(number, epoch) or _ms()
        self._sent_epochs.setdefault(number, set()).add((int(epoch), ts))
        self._submit("metrics", key=run_key(number), step=int(epoch), ts=ts, metrics=clean_metrics(metrics))

    @_never_raises
    def trial_finished(self, number: int, state: str, value: float | None, result: dict[str, Any],
                       trial_dir: Path) -> None:
        key = run_key(number)
        trial_dir = Path(trial_dir)
        # Epochs the controller did not pass on (a trial killed between two polls) come from the file.
        sent = self._sent_epochs.get(number, set())
        for record in read_metrics(trial_dir):
            ts = _ms(record.get("time"))
            if (int(record["epoch"]), ts) not in sent:
                self._submit("metrics", key=key, step=int(record["epoch"]), ts=ts,
                             metrics=clean_metrics(record.get("metrics", {})))
        final = {k: result.get(k) for k in ("duration_s", "gpu_seconds", "best_epoch")}
        final["trial_value"] = value
        final = {k: v for k, v in final.items() if clean_float(v) is not None}
        if final:
            self._submit("metrics", key=key, step=0, metrics=final)
        tags = {"automl.state": state}
        if result.get("reason"):
            tags["automl.reason"] = result["reason"]
        checkpoint = result.get("best_checkpoint") or result.get("last_checkpoint")
        if checkpoint:
            tags["automl.checkpoint"] = str(Path(checkpoint) if Path(checkpoint).is_absolute()
                                            else (trial_dir / checkpoint))
        self._submit("tags", key=key, tags=tags)
        self._artifact(key, result.get("spec") or trial_dir / "spec.yaml", "spec")
        self._artifact(key, trial_dir / "config.json", "spec")
        self._artifact(key, trial_dir / "result.json")
        log_file = trial_dir / "train.log"
        if log_file.is_file() and log_file.stat().st_size < 20 * 2**20:
            self._artifact(key, log_file)
        self._submit("close", key=key, status=STATUS.get(state, "FAILED"))
        self._sent_epochs.pop(number, None)
        self._open_trials.discard(number)
        self._last_finished = number
        if not self._controller_best:  # until the controller says which trial is best, decide here
            if state == "complete" and clean_float(value) is not None:
                self._consider_best(number, float(value))
            self._log_best_so_far(number)
        self._request_plots()

    @_never_raises
    def search_progress(self, trials: list[dict[str, Any]], best: dict[str, Any] | None) -> None:
        # The controller's best wins: it knows its own rule (rungs of multi-fidelity searches,
        # multi-objective ranking). From its first answer on, best_so_far is logged here.
        if best is not None:
            self._controller_best = True
            if best.get("number") is not None and clean_float(best.get("value")) is not None:
                number = int(best["number"])
                if self.best is None or self.best[0] != number:
                    self._move_best(number, float(best["value"]))
            self._log_best_so_far(self._last_finished)
        self._request_plots()

    @_never_raises
    def promoted(self, best: dict[str, Any], best_dir: Path) -> None:
        best_dir = Path(best_dir)
        number = best.get("number", best.get("trial"))
        key = run_key(int(number)) if number is not None else SEARCH
        self._promotions += 1
        model_dir = self.run_dir / TRACKING_DIR / "promoted_model"
        shutil.rmtree(model_dir, ignore_errors=True)
        if best.get("torch_module") is None:
            best = {**best, **self._module_from_plugin(best, best_dir)}
        flavor = _save_model(best, best_dir, model_dir)
        for name in ("model.ckpt", "model.onnx", "model.engine", "evaluate.json", "summary.json"):
            self._artifact(key, best_dir / name, "promoted")
        evaluation = _read_json(best_dir / "evaluate.json")
        if isinstance(evaluation, dict):
            scores = {f"champion/{k}": v for k, v in _flatten(evaluation).items()
                      if clean_float(v) is not None and not isinstance(v, bool)}
            if scores:
                self._submit("metrics", key=SEARCH, step=0, metrics=scores)
        model = self.info.get("model") or best.get("model") or "model"
        tags = {"automl.search": self.info.get("name") or self.run_dir.name,
                "automl.trial_number": number, "automl.value": best.get("value"),
                "automl.monitor": self.monitor, "automl.flavor": flavor, "automl.run_dir": str(self.run_dir)}
        self._submit("register", key=key, model_dir=str(model_dir) if flavor != "files" else None,
                     artifact_path="model" if flavor != "files" else "promoted", name=model, alias=CHAMPION,
                     tags={k: v for k, v in tags.items() if v is not None}, promotion=self._promotions,
                     description=f"promoted from search {tags['automl.search']}, trial {number}")
        self._submit("tags", key=SEARCH, tags={"automl.champion_trial": number, "automl.registered_model": model})

    @_never_raises
    def end_search(self, summary: dict[str, Any]) -> None:
        if self._closed:
            return
        try:
            self._final_events(summary)
        finally:
            self.close()

    def _final_events(self, summary: dict[str, Any]) -> None:
        summary_path = self.run_dir / TRACKING_DIR / "search_summary.json"
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(summary, indent=2, default=str))
        self._artifact(SEARCH, summary_path, "search")
        self._artifact(SEARCH, self.run_dir / "summary.csv", "search")
        numbers = {f"search/{k}": v for k, v in summary.items() if clean_float(v) is not None and not isinstance(v, bool)}
        scores, verdict_tags = _evaluation_record(summary.get("evaluation") or {})
        if numbers or scores:
            self._submit("metrics", key=SEARCH, step=0, metrics={**numbers, **scores})
        status = str(summary.get("status") or ("stopped" if summary.get("stopped_reason") else "finished")).lower()
        tags = {"automl.status": status, **verdict_tags}
        if summary.get("stopped_reason"):
            tags["automl.stopped_reason"] = summary["stopped_reason"]
        self._submit("tags", key=SEARCH, tags=tags)
        self._submit("plots", key=SEARCH, force=True, **self._plot_args())
        self._submit("close", key=SEARCH, status=SEARCH_STATUS.get(status, "KILLED"))

    # -- lifecycle ------------------------------------------------------------------------------------
    def _orphaned(self) -> None:
        """The driver ended without end_search (Ctrl-C, an exception): mark what was open as killed so
        the UI does not show it running forever (a resume reopens it). Called by the delivery thread,
        which then sends what it can within a few seconds; the rest waits in the spool."""
        if self._closed:
            return
        for number in sorted(self._open_trials):
            self._submit("tags", key=run_key(number), tags={"automl.state": "interrupted"})
            self._submit("close", key=run_key(number), status="KILLED")
        if self._search_open:
            self._submit("tags", key=SEARCH, tags={"automl.status": "interrupted"})
            self._submit("close", key=SEARCH, status="KILLED")

    def flush(self, timeout: float | None = None) -> bool:
        return self.delivery.flush(self.flush_timeout_s if timeout is None else timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Deliver what is left (up to the flush timeout); what is not delivered stays in the spool."""
        if self._closed:
            return True
        self._closed = True
        if not self._delivering:
            return False
        delivered = self.delivery.close(self.flush_timeout_s if timeout is None else timeout)
        self._lock.release()
        if not delivered:
            name = self.info.get("name") or self.run_dir.name
            print(f"warning: {self.delivery.pending} tracking event(s) not delivered to {self.tracking_uri}; "
                  f"they are kept in {self.spool.path}: run `automl sync {name}` when it is reachable",
                  file=sys.stderr, flush=True)
        return delivered

    # -- internals ------------------------------------------------------------------------------------
    def _epoch_time(self, number: int, epoch: int) -> int | None:
        """The epoch's time as ``metrics.jsonl`` recorded it: the same timestamp whoever logs the epoch
        (this hook, the reconciliation at the end, a replay) makes the store keep it once."""
        folder = self._trial_dirs.get(number)
        if folder is None:
            return None
        for record in reversed(read_metrics(folder)):
            if int(record.get("epoch", -1)) == int(epoch) and record.get("time") is not None:
                return _ms(record["time"])
        return None

    def _module_from_plugin(self, best: dict[str, Any], best_dir: Path) -> dict[str, Any]:
        """The promoted weights as an ``nn.Module``, from trainers that can build one: an optional plugin
        method ``load_module(spec, checkpoint) -> nn.Module`` (and ``input_example(spec)`` for a traced,
        pickle-free model). Trainers without it get the ONNX flavour."""
        model = self.info.get("model")
        checkpoint = best_dir / "model.ckpt"
        if not model or not checkpoint.is_file():
            return {}
        try:
            from automl.plugins import get_trainer

            plugin = get_trainer(model)
            load = getattr(plugin, "load_module", None)
            if load is None:
                return {}
            import yaml

            number = best.get("number", best.get("trial"))
            spec_file = self.run_dir / "trials" / f"{int(number):04d}" / "spec.yaml"
            spec = yaml.safe_load(spec_file.read_text()) if spec_file.is_file() else {}
            out = {"torch_module": load(spec, checkpoint)}
            example = getattr(plugin, "input_example", None)
            if example is not None:
                out["input_example"] = example(spec)
            return out
        except Exception as exc:  # noqa: BLE001 - the ONNX flavour still registers the champion
            log.warning("tracking: could not rebuild the promoted model through the %s plugin: %s", model, exc)
            return {}

    def _log_best_so_far(self, step: int | None) -> None:
        if self.best is None or step is None or self._best_logged == (step, self.best[1]):
            return
        self._best_logged = (step, self.best[1])
        self._submit("metrics", key=SEARCH, step=step, metrics={"best_so_far": self.best[1]})

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b

    def _consider_best(self, number: int, value: float) -> None:
        if self.best is None or self._better(value, self.best[1]):
            self._move_best(number, value)

    def _move_best(self, number: int, value: float) -> None:
        with self._mutex:
            previous = self.best
            self.best = (number, value)
        if previous is not None and previous[0] != number:
            self._submit("untag", key=run_key(previous[0]), tag="best")
        self._submit("tags", key=run_key(number), tags={"best": "true"})
        self._submit("tags", key=SEARCH, tags={"automl.best_trial": number, "automl.best_value": value})

    def _restore_best(self) -> None:
        from automl.tracking.plots import collect_trials

        for row in collect_trials(self.run_dir, self.monitor):
            if row.state == "complete" and row.value is not None and (
                    self.best is None or self._better(row.value, self.best[1])):
                self.best = (row.number, row.value)

    def _plot_args(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "out": str(self.run_dir / TRACKING_DIR / "plots"),
                "monitor": self.monitor, "mode": self.mode}

    def _request_plots(self) -> None:
        now = time.monotonic()
        if now - self._last_plot_request >= self.plot_interval_s:
            self._last_plot_request = now
            self._submit("plots", key=SEARCH, **self._plot_args())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _evaluation_record(evaluation: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """The parent run's metrics and tags for the summary's noise-aware evaluation: baseline and winner
    means on its split, the seed noise, the gain, and the verdict (metrics and tags, not params: a
    resumed search judges again and params cannot change)."""
    values = {"evaluation/baseline_mean": (evaluation.get("baseline") or {}).get("mean"),
              "evaluation/best_mean": (evaluation.get("best") or {}).get("mean"),
              "evaluation/noise_std": evaluation.get("noise_std"), "evaluation/gain": evaluation.get("gain")}
    scores = {k: clean_float(v) for k, v in values.items() if clean_float(v) is not None}
    tags = {"automl.verdict": evaluation.get("verdict"), "automl.evaluation_split": evaluation.get("split"),
            "automl.evaluation_metric": evaluation.get("metric")}
    return scores, {k: str(v) for k, v in tags.items() if v is not None}


def _search_note(info: dict[str, Any]) -> str:
    return (f"AutoML search **{info.get('name', '')}** of `{info.get('model', '')}` with "
            f"{info.get('algorithm', '')} ({info.get('backend', '')} backend), budget {info.get('budget', '')}, "
            f"optimising `{info.get('monitor', '')}` ({info.get('mode', '')}). Children are trials.")


def _requirements(*packages: str) -> list[str]:
    from importlib import metadata

    out = []
    for name in packages:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(name)
    return out


def _save_model(best: dict[str, Any], best_dir: Path, model_dir: Path) -> str:
    """Write the promoted model as an MLflow model into ``model_dir`` (locally: no network here).
    Explicit requirements: MLflow's inference would load the model in a subprocess, which is slow."""
    module = best.get("torch_module")
    onnx_file = best_dir / "model.onnx"
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    if module is not None:
        import mlflow.pytorch

        signature = None
        example = best.get("input_example")
        if example is not None:
            from mlflow.models import infer_signature

            import torch

            with torch.no_grad():
                output = module(torch.as_tensor(example)).detach().cpu().numpy()
            signature = infer_signature(example, output)
        requirements = _requirements("torch", "numpy")
        if example is not None:
            # "pt2" (torch.export) loads without unpickling code; it needs an example to trace with.
            try:
                mlflow.pytorch.save_model(module, str(model_dir), signature=signature, input_example=example,
                                          serialization_format="pt2", pip_requirements=requirements)
                return "pytorch"
            except Exception as exc:  # noqa: BLE001 - a model torch.export cannot trace still gets logged
                log.warning("tracking: torch.export failed (%s); logging the model pickled", exc)
                shutil.rmtree(model_dir, ignore_errors=True)
        mlflow.pytorch.save_model(module, str(model_dir), signature=signature, serialization_format="pickle",
                                  pip_requirements=requirements)
        return "pytorch"
    if onnx_file.is_file():
        import mlflow.onnx
        import onnx

        mlflow.onnx.save_model(onnx.load(str(onnx_file)), str(model_dir),
                               pip_requirements=_requirements("onnx", "onnxruntime", "numpy"))
        return "onnx"
    return "files"


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
        self.tracker._submit("open", key=TRAIN, name=self.results_dir.name, tags=tags,
                             params=_flatten(self.spec) if self.spec else {})
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
                ts = _ms(record.get("time"))
                mark = (int(record["epoch"]), ts)
                if mark in self._sent:
                    continue
                self._sent.add(mark)
                self.tracker._submit("metrics", key=TRAIN, step=mark[0], ts=ts,
                                     metrics=clean_metrics(record.get("metrics", {})))

    def finish(self, result: dict[str, Any] | None = None, failed: bool = False, reason: str | None = None) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=10)
        self.poll()
        result = result or {}
        state = "failed" if failed else str(result.get("state") or "complete")
        final = {k: v for k, v in result.items() if k in ("best_value", "best_epoch", "epochs_run", "duration_s",
                                                           "gpu_seconds") and clean_float(v) is not None}
        if final:
            self.tracker._submit("metrics", key=TRAIN, step=0, metrics=final)
        tags: dict[str, Any] = {"automl.state": state}
        if reason or result.get("reason"):
            tags["automl.reason"] = reason or result.get("reason")
        checkpoint = result.get("best_checkpoint") or result.get("last_checkpoint")
        if checkpoint:
            tags["automl.checkpoint"] = str(Path(checkpoint).resolve())
        self.tracker._submit("tags", key=TRAIN, tags=tags)
        self.tracker._artifact(TRAIN, self.spec_path or self.results_dir / "spec.yaml", "spec")
        self.tracker._artifact(TRAIN, self.results_dir / "train.json")
        self.tracker._submit("close", key=TRAIN, status=STATUS.get(state, "FAILED"))
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


def _flatten(spec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in spec.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out
