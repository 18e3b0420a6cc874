"""The search's tracker: each hook turns an event into operations on logical runs and spools them; it
never waits for the network (see :mod:`automl.tracking.mlflow`)."""

from __future__ import annotations

import functools
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from automl.reporting import clean_metrics, read_metrics
from automl.tracking.hooks import Tracker
from automl.tracking.mlflow.best import BestTrial
from automl.tracking.mlflow.model import module_from_plugin, save_model
from automl.tracking.mlflow.names import SEARCH, SEARCH_STATUS, STATUS, TRACKING_DIR, ms, run_key
from automl.tracking.mlflow.records import (champion_scores, numbers, outcome_tags, run_source_tags, search_tags,
                                           summary_record)
from automl.tracking.mlflow.registry import evaluation_tags
from automl.tracking.mlflow.writer import MlflowWriter
from automl.tracking.spool import Delivery, DeliveryLock, Spool
from automl.tracking.store import TrackingState
from automl.trials import rundir

log = logging.getLogger(__name__)

TRIAL_FINAL_METRICS = ("duration_s", "gpu_seconds", "best_epoch", "trial_value")
PROMOTED_FILES = ("model.ckpt", "model.onnx", "model.engine", "evaluate.json", "summary.json")
MAX_LOG_ARTIFACT_BYTES = 20 * 2**20


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
                 flush_timeout_s: float = 60.0, experiment: str | None = None, deliver: bool = True,
                 force_champion: bool = False):
        self.run_dir = Path(run_dir).resolve()
        self.state = TrackingState(self.run_dir, tracking_uri, experiment)
        self.writer = MlflowWriter(self.state, plot_interval_s)
        self.spool = Spool(self.run_dir)
        self.plot_interval_s = plot_interval_s
        self.force_champion = force_champion
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
        self.best = BestTrial(self.submit)
        self._trial_dirs: dict[int, Path] = {}
        self._sent_epochs: dict[int, set[tuple[int, int]]] = {}
        self._last_plot_request = 0.0
        self._promotions = 0
        self._failed_hooks: set[str] = set()
        self._open_trials: set[int] = set()
        self._search_open = False
        self._closed = False

    @property
    def tracking_uri(self) -> str:
        return self.state.tracking_uri

    def _tell_offline(self, reason: str) -> None:
        name = self.info.get("name") or self.run_dir.name
        print(f"warning: MLflow tracking at {self.tracking_uri} is unreachable ({reason}); training goes on, "
              f"events are kept in {self.spool.path} and sent when it is back (or run `automl sync {name}`)",
              file=sys.stderr, flush=True)

    def submit(self, op: str, **fields: Any) -> None:
        """Spool one operation for the delivery thread (see :class:`MlflowWriter` for the operations)."""
        self.delivery.submit({"op": op, "ts": fields.pop("ts", None) or ms(), **fields})

    def artifact(self, key: str, path: Path | str | None, directory: str | None = None) -> None:
        """Upload a file or folder to the run ``key`` when it exists."""
        if path and Path(path).exists():
            self.submit("artifact", key=key, path=str(Path(path).resolve()), dir=directory)

    # -- hooks ----------------------------------------------------------------------------------------
    @_never_raises
    def start_search(self, run_dir: Path, info: dict[str, Any]) -> None:
        self.info = dict(info)
        self._search_open = True
        self.monitor = info.get("monitor")
        self.best.mode = info.get("mode") or "max"
        if self.state.experiment_id is None and not info.get("experiment_id"):
            self.state.experiment = info.get("experiment") or f"automl-{info.get('model', 'search')}"
            self.state.save()
        self.submit("open", key=SEARCH, name=info.get("name") or self.run_dir.name,
                    tags=search_tags(info, self.run_dir), view=info.get("name") or self.run_dir.name)
        self.artifact(SEARCH, info.get("base_spec") or self.run_dir / rundir.BASE_SPEC, "search")
        self.artifact(SEARCH, info.get("space") or self.run_dir / rundir.SPACE_JSON, "search")
        self.artifact(SEARCH, self.run_dir / rundir.SEARCH_JSON, "search")
        if info.get("resumed"):
            self.best.restore(self.run_dir, self.monitor)

    @_never_raises
    def trial_started(self, number: int, params: dict[str, Any], trial_dir: Path) -> None:
        self._trial_dirs[number] = Path(trial_dir)
        self._open_trials.add(number)
        self.submit("open", key=run_key(number), parent=SEARCH, name=f"trial-{number:04d}",
                    tags={"automl.trial_number": number, "automl.trial_dir": str(Path(trial_dir).resolve()),
                          "automl.state": "running", **run_source_tags(self.info.get("name") or self.run_dir.name)},
                    params=params)

    @_never_raises
    def trial_epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        ts = self._epoch_time(number, epoch) or ms()
        self._sent_epochs.setdefault(number, set()).add((int(epoch), ts))
        self.submit("metrics", key=run_key(number), step=int(epoch), ts=ts, metrics=clean_metrics(metrics))

    @_never_raises
    def trial_finished(self, number: int, state: str, value: float | None, result: dict[str, Any],
                       trial_dir: Path) -> None:
        key = run_key(number)
        trial_dir = Path(trial_dir)
        # Epochs the controller did not pass on (a trial killed between two polls) come from the file.
        sent = self._sent_epochs.get(number, set())
        for record in read_metrics(trial_dir):
            ts = ms(record.get("time"))
            if (int(record["epoch"]), ts) not in sent:
                self.submit("metrics", key=key, step=int(record["epoch"]), ts=ts,
                            metrics=clean_metrics(record.get("metrics", {})))
        final = numbers({**result, "trial_value": value}, TRIAL_FINAL_METRICS)
        if final:
            self.submit("metrics", key=key, step=0, metrics=final)
        self.submit("tags", key=key, tags=outcome_tags(state, result, trial_dir))
        self.artifact(key, result.get("spec") or trial_dir / rundir.SPEC, "spec")
        self.artifact(key, trial_dir / rundir.CONFIG, "spec")
        self.artifact(key, trial_dir / rundir.RESULT)
        log_file = trial_dir / rundir.LOG
        if log_file.is_file() and log_file.stat().st_size < MAX_LOG_ARTIFACT_BYTES:
            self.artifact(key, log_file)
        self.submit("close", key=key, status=STATUS.get(state, "FAILED"))
        self._sent_epochs.pop(number, None)
        self._open_trials.discard(number)
        self.best.trial_finished(number, state, value, result.get("best_epoch"))
        self._request_plots()

    @_never_raises
    def search_progress(self, best: dict[str, Any] | None) -> None:
        if best is not None:
            self.best.controller_says(best)
        self._request_plots()

    @_never_raises
    def promoted(self, best: dict[str, Any], best_dir: Path) -> None:
        best_dir = Path(best_dir)
        number = best.get("number", best.get("trial"))
        key = run_key(int(number)) if number is not None else SEARCH
        if number is not None:  # the promoted trial is the winner: the best tags agree with the registry
            self.best.controller_says({"number": number, "value": best.get("value")})
        self._promotions += 1
        model_dir = self.run_dir / TRACKING_DIR / "promoted_model"
        shutil.rmtree(model_dir, ignore_errors=True)
        if best.get("torch_module") is None:
            best = {**best, **module_from_plugin(self.info.get("model"), self.run_dir, best, best_dir)}
        flavor = save_model(best, best_dir, model_dir)
        for name in PROMOTED_FILES:
            self.artifact(key, best_dir / name, "promoted")
        scores = champion_scores(best_dir / "evaluate.json")
        if scores:  # tags, not metrics: single values would open the chart view as bars before the curves
            self.submit("tags", key=SEARCH, tags=scores)
        model = self.info.get("model") or best.get("model") or "model"
        tags = {"automl.search": self.info.get("name") or self.run_dir.name,
                "automl.trial_number": number, "automl.value": best.get("value"),
                "automl.monitor": self.monitor, "automl.flavor": flavor, "automl.run_dir": str(self.run_dir),
                **self._evaluation_tags(best)}
        self.submit("register", key=key, model_dir=str(model_dir) if flavor != "files" else None,
                    artifact_path="model" if flavor != "files" else "promoted", name=model,
                    tags={k: v for k, v in tags.items() if v is not None}, promotion=self._promotions,
                    force=self.force_champion,
                    description=f"promoted from search {tags['automl.search']}, trial {number}")
        self.submit("tags", key=SEARCH, tags={"automl.champion_trial": number, "automl.registered_model": model})

    def _evaluation_tags(self, best: dict[str, Any]) -> dict[str, str]:
        """What ``champion`` is decided on: the winner's evaluation on the held-out split (its mean over
        seeds), else its validation value."""
        evaluation = best.get("evaluation") or {}
        held_out = evaluation_tags(evaluation.get("metric"), evaluation.get("split"), evaluation.get("mode"),
                                   (evaluation.get("best") or {}).get("mean"))
        return held_out or evaluation_tags(self.monitor, "validation", self.best.mode, best.get("value"))

    def describe(self) -> dict[str, Any]:
        """Where the search is recorded, for the ``--json`` summary (run ids once delivered)."""
        runs = dict(self.state.runs)
        return {"tracking_uri": self.tracking_uri, "experiment_id": self.state.experiment_id,
                "parent_run_id": runs.pop(SEARCH, None),
                "trial_run_ids": {k.split("/", 1)[1]: v for k, v in runs.items() if k.startswith("trial/")},
                "registered": self.state.registered or None, "pending_events": len(self.spool.pending())}

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
        self.artifact(SEARCH, summary_path, "search")
        # summary.csv comes with the final plots (same format as the run folder's): one table, at the top
        scores, tags, status = summary_record(summary)
        if scores:
            self.submit("metrics", key=SEARCH, step=0, metrics=scores)
        self.submit("tags", key=SEARCH, tags=tags)
        from automl.tracking.plots import evaluation_plot

        # drawn into the plots folder, so the final plots operation uploads it with the others
        evaluation_plot(summary.get("evaluation") or {}, Path(self._plot_args()["out"]) / "baseline_vs_winner.png")
        self.submit("plots", key=SEARCH, force=True, **self._plot_args())
        self.submit("close", key=SEARCH, status=SEARCH_STATUS.get(status, "KILLED"))

    # -- lifecycle ------------------------------------------------------------------------------------
    def _orphaned(self) -> None:
        """The driver ended without end_search (Ctrl-C, an exception): mark what was open as killed so
        the UI does not show it running forever (a resume reopens it). Called by the delivery thread,
        which then sends what it can within a few seconds; the rest waits in the spool."""
        if self._closed:
            return
        for number in sorted(self._open_trials):
            self.submit("tags", key=run_key(number), tags={"automl.state": "interrupted"})
            self.submit("close", key=run_key(number), status="KILLED")
        if self._search_open:
            self.submit("tags", key=SEARCH, tags={"automl.status": "interrupted"})
            self.submit("close", key=SEARCH, status="KILLED")

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
                return ms(record["time"])
        return None

    def _plot_args(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "out": str(self.run_dir / TRACKING_DIR / "plots"),
                "monitor": self.monitor, "mode": self.best.mode}

    def _request_plots(self) -> None:
        now = time.monotonic()
        if now - self._last_plot_request >= self.plot_interval_s:
            self._last_plot_request = now
            self.submit("plots", key=SEARCH, **self._plot_args())
