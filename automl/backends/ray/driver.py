"""The driver side of a Ray search: trial numbers (a named actor), the Tune callback that keeps the run
folder whole and feeds the tracker and progress hooks, the stopper, and the ``result.json`` of trials
Tune stopped, paused or lost.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.experiment import Trial

from automl.trials.records import SearchSetup, TrialRecord, TrialState
from automl.plugins import Monitor
from automl.trials import rundir
from automl.trials.outcome import epoch_metrics, folder_record
from automl.backends.ray.cluster import is_uri
from automl.backends.ray.trial import _params_of


STOPPED_REASON = "stopped by the Ray Tune scheduler"


_LIVE: dict[str, dict[str, Any]] = {}

"""Live driver objects (tracker, progress, state) by run folder. Tune pickles its callbacks into the
experiment state for ``Tuner.restore``; they hold only the run folder and find the live objects here."""


@ray.remote(num_cpus=0, max_restarts=-1)
class _TrialNumbers:
    """Tune trial id -> run-folder trial number, first come first numbered."""

    def __init__(self, mapping: dict[str, int], next_number: int):
        self.mapping, self.next = dict(mapping), next_number
        self.outcomes: dict[tuple[str, str], dict[str, Any]] = {}

    def number(self, trial_id: str) -> int:
        if trial_id not in self.mapping:
            self.mapping[trial_id] = self.next
            self.next += 1
        return self.mapping[trial_id]

    def set_outcome(self, trial_id: str, stretch: str, outcome: dict[str, Any]) -> None:
        self.outcomes[(trial_id, stretch)] = outcome

    def outcome(self, trial_id: str, stretch: str) -> dict[str, Any] | None:
        return self.outcomes.get((trial_id, stretch))

    def snapshot(self) -> dict[str, int]:
        return dict(self.mapping)


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


class RunFolderCallback(tune.Callback):
    """Forwards Tune's trial events to the tracker/progress hooks and keeps the run folder whole."""

    def __init__(self, run_dir: str):
        self.run_dir = run_dir

    # state lives in _LIVE, not in the pickled callback
    @property
    def live(self) -> dict[str, Any]:
        return _LIVE[self.run_dir]

    def _number(self, trial, trials: list | None = None) -> int:
        """The trial's run-folder number. Trials are numbered in Tune's creation order (``trials`` is
        that list), not in the order they happen to start, so the baseline is always trial 0."""
        live = self.live
        numbers = live["numbers"]
        if trial.trial_id not in numbers:
            # ``trials`` only grows, and is numbered from its start: look from the first unnumbered one
            # (scanning it all at every new trial made a long search quadratic)
            trials = trials or []
            start = live.get("numbered_upto", 0)
            while start < len(trials) and trials[start].trial_id in numbers:
                start += 1
            live["numbered_upto"] = start
            upto = [trial]
            for end in range(start, len(trials)):
                if trials[end] is trial:
                    upto = [t for t in trials[start:end + 1] if t.trial_id not in numbers]
                    break
            for t in upto:
                live["numbers"][t.trial_id] = ray.get(live["actor"].number.remote(t.trial_id))
            rundir.write_json(Path(live["numbers_path"]), live["numbers"])
        return live["numbers"][trial.trial_id]

    def _begin(self, trial, trials: list | None = None) -> None:
        """A stretch of the trial starts: first start, restart after a retry, resume after a pause."""
        live = self.live
        if trial.trial_id in live["running"]:
            return
        number = self._number(trial, trials)
        params = _params_of(live["space"], trial.config)
        tdir = rundir.trial_dir(Path(self.run_dir), number)
        tdir.mkdir(parents=True, exist_ok=True)
        if not (tdir / rundir.CONFIG).exists():  # the trial's first stretch
            rundir.write_json(tdir / rundir.CONFIG, params)
            live["last_new_start"] = time.time()
        with live["lock"]:
            taken = {r["slot"] for r in live["running"].values()}
            slot = next(i for i in range(len(taken) + 1) if i not in taken)
            live["running"][trial.trial_id] = {"slot": slot, "started": time.time(), "epochs": 0, "trial": trial}
            live["max_running"] = max(live.get("max_running", 0), len(live["running"]))
        live["tracker"].trial_started(number, params, tdir)
        live["progress"].trial_started(number, params, slot)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._begin(trial, trials)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        live = self.live
        self._begin(trial, trials)  # a paused trial resumed on a reused actor gets no on_trial_start
        number = self._number(trial)
        epoch = int(result.get("epoch", result.get("training_iteration", 1) - 1))
        metrics = {k: float(v) for k, v in result.items()
                   if k not in _TUNE_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)
                   and k != "epoch"}
        stretch = live["running"][trial.trial_id]
        stretch["epochs"] += 1
        stretch["token"] = result.get("automl_stretch") or stretch.get("token")
        stretch["node"] = result.get("automl_node") or stretch.get("node")
        live["tracker"].trial_epoch(number, epoch, metrics)
        live["progress"].trial_epoch(number, epoch, metrics.get(live["monitor"].metric))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, None)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, TrialState.FAILED)

    def on_trial_recover(self, iteration, trials, trial, **info):
        """A failed trial is retried (``FailureConfig``): its stretch ends, the retry starts a new one."""
        live = self.live
        stretch = live["running"].pop(trial.trial_id, None)
        if stretch is not None:
            live["progress"].message(f"trial {self._number(trial)} failed ({_error_text(trial)}); retrying "
                                     "from its last checkpoint")

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        """Keep the trial's newest Tune checkpoints, delete the older ones (local storage).

        Why not Tune's ``CheckpointConfig(num_to_keep)``: a trial that Tune restarts while one of its
        checkpoints is in flight (a PBT exploit, a pause) is handed a checkpoint index that does not
        count that one, writes the same ``checkpoint_NNNNNN`` again, and Tune's cleanup then deletes
        the folder twice (``FileNotFoundError`` with a traceback on the console) or deletes the newer
        checkpoint under the older one's name. Here a folder is deleted at most once, by age, and never
        the one Tune would restore from.
        """
        keep = self.live.get("checkpoints_to_keep")
        path = getattr(checkpoint, "path", None)
        if not keep or not path or is_uri(str(path)):
            return
        latest = getattr(trial.checkpoint, "path", None) if trial.checkpoint else None
        folders = sorted(Path(path).parent.glob("checkpoint_*"), key=_mtime, reverse=True)
        for folder in folders[keep:]:
            if str(folder) not in (str(path), str(latest)):
                shutil.rmtree(folder, ignore_errors=True)

    def on_step_end(self, iteration, trials, **info):
        live = self.live
        # Tune has no pause hook: watch the running trials for one that became PAUSED (only those: a
        # scan of every trial at every step of Tune's loop grew with the study)
        for stretch in list(live["running"].values()):
            if stretch["trial"].status == Trial.PAUSED:
                self._finish(stretch["trial"], TrialState.PAUSED)

    def _finish(self, trial, state: str | None) -> None:
        """The stretch ends. ``state`` None: Tune says complete (ran to its end, or stopped by the
        scheduler or the trial timeout); FAILED: errored for good; PAUSED: paused at a rung."""
        live = self.live
        with live["lock"]:
            stretch = live["running"].pop(trial.trial_id, None)
        if stretch is None:  # this stretch was already recorded
            return
        live.setdefault("intervals", []).append((stretch["started"], time.time()))  # simulation.json
        number = self._number(trial)
        tdir = rundir.trial_dir(Path(self.run_dir), number)
        written = rundir.read_json_or(tdir / rundir.RESULT, {})  # run_trial deletes it when a stretch starts
        token = stretch.get("token")
        if token and written.get("extra", {}).get("stretch") != token:
            written = {}  # a late write of an earlier stretch
        if state is None and written.get("state") not in (None, TrialState.FAILED):
            result = written  # the trainer returned: its own result is the record
        else:
            reason = written.get("reason") if written.get("state") == TrialState.FAILED else None
            if state == TrialState.FAILED and not reason:
                reason = _error_text(trial)
            if state is None:
                limit = live["trial_timeout_s"]
                done = max(epoch_metrics(tdir), default=-1) + 1
                if limit and (trial.last_result or {}).get("time_total_s", 0) >= limit:
                    state, reason = TrialState.FAILED, "timeout"
                elif done >= live["max_epochs"]:  # stopped at the last rung: it ran its full budget
                    state, reason = TrialState.COMPLETE, None
                else:
                    state, reason = TrialState.PRUNED, STOPPED_REASON
            if token:  # tell the trial's thread why Tune ends it (it asks when released)
                with contextlib.suppress(Exception):
                    ray.get(live["actor"].set_outcome.remote(trial.trial_id, token, {"state": state, "reason": reason}))
            result = _driver_result(tdir, number, state, reason, stretch["started"], stretch["epochs"],
                                    live["objectives"], trial, live["space"])
            result["extra"].update(stretch=token, **({"node_id": stretch["node"]} if stretch.get("node") else {}))
            rundir.write_json(tdir / rundir.RESULT, result)
        record = TrialRecord.from_json(result)
        live["tracker"].trial_finished(number, record.state, record.value, result, tdir)
        live["progress"].trial_finished(record)
        with live["lock"]:
            stop = live["failures"].add(record)
            if stop and not live["stop"]:
                live["stop"] = stop
        self._progress(record)

    def _progress(self, record: TrialRecord) -> None:
        """The tracker's ``search_progress``: the best so far, from the finished trials' records kept here
        as trials finish. (Re-reading every trial folder at every trial's end made a long search
        quadratic: benchmarks/scale_ray.py, 500 trials on 64 simulated GPUs.)"""
        live = self.live
        records = live["records"]
        records[record.number] = record
        best = live["best"].after(record, records.values())
        live["tracker"].search_progress(best.to_json() if best else None)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # deleted meanwhile: the oldest
        return 0.0


def _callback(run_dir: Path) -> RunFolderCallback:
    return RunFolderCallback(str(run_dir))


_TUNE_KEYS = {"training_iteration", "time_total_s", "time_this_iter_s", "timestamp", "date", "pid", "hostname",
              "node_ip", "time_since_restore", "iterations_since_restore", "timesteps_since_restore",
              "timesteps_total", "episodes_total", "done", "trial_id", "experiment_tag", "checkpoint_dir_name",
              "should_checkpoint", "config"}


class FailureStreakStopper(tune.Stopper):
    """Ends the search after too many failures in a row, and trials past ``--trial-timeout``."""

    def __init__(self, run_dir: str, limit: float | None):
        self.run_dir, self.limit = run_dir, limit

    def __call__(self, trial_id, result):
        return bool(self.limit) and result.get("time_total_s", 0) >= self.limit

    def stop_all(self):
        return bool(_LIVE.get(self.run_dir, {}).get("stop"))


def _stopper(run_dir: Path, trial_timeout_s: float | None) -> FailureStreakStopper:
    return FailureStreakStopper(str(run_dir), trial_timeout_s)


def _error_text(trial) -> str:
    with contextlib.suppress(Exception):
        error = trial.get_pickled_error() or trial.get_error()
        if error is not None:
            text = str(error).strip()
            # Tune wraps the worker's traceback: keep its last line, which names the cause
            lines = [ln for ln in text.splitlines() if ln.strip()]
            for line in reversed(lines):
                if "_TrialFailed" in line:
                    return line.split("_TrialFailed:", 1)[-1].strip()[:500]
            return (lines[-1] if lines else text)[:500]
    return "failed (the trial's Ray worker died)"


def _driver_result(tdir: Path, number: int, state: str, reason: str | None, started: float, epochs_now: int,
                   objectives: list[Monitor], trial, space) -> dict[str, Any]:
    """``result.json`` for a trial that did not write its own (stopped, paused or crashed)."""
    gpus = float((getattr(trial, "placement_group_factory", None) and _gpus_of(trial)) or 0)
    return folder_record(
        tdir, number, state, objectives, previous=rundir.read_json_or(tdir / rundir.PREVIOUS_RESULT, {}),
        epochs_now=epochs_now, reason=reason, duration_s=max(0.0, time.time() - started), gpus=gpus,
        params=rundir.read_json_or(tdir / rundir.CONFIG, {}) or _params_of(space, trial.config),
        extra={"number": number, "ray_trial_id": trial.trial_id}).to_json()


def _settle_paused(run_dir: Path, setup: SearchSetup) -> None:
    """Trials still paused when Tune ends were never promoted: with the full budget done they are
    complete, otherwise pruned (no trial is left 'paused' or 'running' after a search)."""
    for record in rundir.read_trials(run_dir):
        if record.state != TrialState.PAUSED:
            continue
        path = rundir.trial_dir(run_dir, record.number) / rundir.RESULT
        result = rundir.read_json_or(path, {})
        if record.epochs_done >= setup.max_epochs:
            result.update(state=TrialState.COMPLETE, reason=None)
        else:
            result.update(state=TrialState.PRUNED, reason="paused at a rung and not promoted before the search ended")
        rundir.write_json(path, result)


def _mark_interrupted(run_dir: Path, record: TrialRecord, setup: SearchSetup) -> None:
    tdir = rundir.trial_dir(run_dir, record.number)
    failed = folder_record(
        tdir, record.number, TrialState.FAILED, setup.objectives, params=record.params,
        reason="interrupted: the driver died before Ray Tune saved this trial in its state, so it cannot resume")
    rundir.write_json(tdir / rundir.RESULT, failed.to_json())


def _gpus_of(trial) -> float:
    with contextlib.suppress(Exception):
        return float(trial.placement_group_factory.required_resources.get("GPU", 0))
    return 0.0
