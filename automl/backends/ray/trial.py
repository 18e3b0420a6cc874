"""Inside a trial's Ray worker: the Tune function trainable (one trial, or one more stretch of it,
through :func:`automl.trials.worker.run_trial`) and the reporter that forwards each epoch and its
checkpoint to Tune.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ray
from ray import tune

from automl.fsutil import write_with
from automl.trials.records import TrialState
from automl.plugins import Monitor
from automl.reporting import FileReporter
from automl.trials import rundir, worker
from automl.spec import apply_config, flatten


class TuneReporter(FileReporter):
    """The trainer's :class:`~automl.reporting.Reporter` inside a Tune trial.

    Appends to ``metrics.jsonl`` like every reporter, then ``tune.report``s the epoch with a Tune
    checkpoint holding the trainer's checkpoint for that epoch, so Tune can pause/resume (hyperband),
    exploit (pbt) and retry (``FailureConfig``) from it.

    Tune ends a trial that its scheduler stops or pauses by raising ``SystemExit`` in the trial's thread
    from inside ``tune.report``, after the driver callback has recorded why (pruned, paused, timeout)
    in the :class:`_TrialNumbers` actor. The reporter turns that into :meth:`should_stop`, so the
    trainer ends cleanly (closing its data loaders, freeing the GPU) and ``run_trial`` records the same
    state as the driver. Each stretch of a trial (first run, resume after a pause, retry) carries a
    token in its results and ``result.json``, so the driver never mistakes a late write of an earlier
    stretch for the current one.
    """

    def __init__(self, results_dir: Path, objectives: list[Monitor], numbers: Any = None, trial_id: str = "",
                 stretch: str = ""):
        super().__init__(results_dir)
        self.objectives, self.numbers, self.trial_id, self.stretch = objectives, numbers, trial_id, stretch
        self.stop_reason: str | None = None
        self.outcome: dict[str, Any] = {}
        self.ended_by_tune = False

    def should_stop(self) -> bool:
        return self.stop_reason is not None

    def _ended(self) -> None:
        """Tune ended this stretch: learn why from the driver (it records it before or right after)."""
        self.ended_by_tune = True
        deadline = time.time() + 10
        while self.numbers is not None and time.time() < deadline:
            with contextlib.suppress(Exception):
                self.outcome = ray.get(self.numbers.outcome.remote(self.trial_id, self.stretch)) or {}
            if self.outcome:
                break
            time.sleep(0.1)
        self.stop_reason = self.outcome.get("state") or TrialState.PRUNED

    def report(self, epoch: int, metrics: Mapping[str, float], checkpoint: Path | None = None) -> None:
        super().report(epoch, metrics, checkpoint)
        if self.ended_by_tune:  # the session is over; the trainer is on its way out
            return
        result: dict[str, Any] = {}
        for key, value in metrics.items():
            with contextlib.suppress(TypeError, ValueError):
                result[key] = float(value)
        for m in self.objectives:  # schedulers and searchers need a number: a NaN is the worst value
            value = result.get(m.metric, float("nan"))
            if not math.isfinite(value):
                result[m.metric] = -math.inf if m.mode == "max" else math.inf
        result["epoch"] = int(epoch)
        result["automl_stretch"] = self.stretch
        result["automl_node"] = _node_id()
        try:
            if checkpoint is None or not Path(checkpoint).is_file():
                tune.report(result)
                return
            with tempfile.TemporaryDirectory(prefix="automl-tune-ckpt-") as tmp:
                target = Path(tmp) / "model.ckpt"
                try:
                    os.link(checkpoint, target)  # no copy when Tune's storage is on the same disk
                except OSError:
                    shutil.copy2(checkpoint, target)
                (Path(tmp) / "automl.json").write_text(json.dumps({"epoch": int(epoch), "source": str(checkpoint)}))
                tune.report(result, checkpoint=tune.Checkpoint.from_directory(tmp))
        except SystemExit:
            self._ended()


def _restore_checkpoint(trial_dir: Path) -> Path | None:
    """The trainer checkpoint to resume from: Tune's latest checkpoint of this trial (after a pause,
    a retry, a driver crash, or a PBT exploit of another trial's checkpoint)."""

    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return None
    target = rundir.checkpoint(trial_dir, "resume")
    target.parent.mkdir(parents=True, exist_ok=True)
    with ckpt.as_directory() as folder:
        source = Path(folder) / "model.ckpt"
        if not source.is_file():
            return None
        write_with(target, lambda tmp: shutil.copy2(source, tmp))
    return target


def _trainable(config: dict[str, Any], job: dict[str, Any], trainer: Any = None) -> None:
    """The Tune function trainable: one trial (or one more stretch of it) through ``run_trial``.
    ``trainer``: what ``run_trial`` trains with instead of the plugin (the simulation's)."""

    space = job["space"]
    trial_id = tune.get_context().get_trial_id()
    number = ray.get(job["numbers"].number.remote(trial_id))
    trial_dir = rundir.trial_dir(Path(job["run_dir"]), number)
    trial_dir.mkdir(parents=True, exist_ok=True)
    params = _params_of(space, config)  # run_trial writes them to config.json (the driver, if the check fails)
    objectives = [Monitor(m, mode) for m, mode in job["objectives"]]

    problems = space.check(params)
    if problems:  # never train a config that breaks the space's constraints
        raise _TrialFailed(f"config fails the space's check: {'; '.join(map(str, problems))}")

    if (trial_dir / rundir.RESULT).is_file():  # a paused/interrupted trial goes on: keep its totals
        os.replace(trial_dir / rundir.RESULT, trial_dir / rundir.PREVIOUS_RESULT)
    spec = apply_config(job["base_spec"], params)
    gpus = ray.get_gpu_ids()  # what Ray granted this trial; CUDA_VISIBLE_DEVICES is set to them
    if gpus and isinstance(spec.get("train"), dict) and "num_gpus" in spec["train"]:
        # TAO's keys: the trainer's device mapping runs DDP over these (renumbered from 0)
        spec["train"]["num_gpus"] = len(gpus)
        spec["train"]["gpu_ids"] = list(range(len(gpus)))
    resume = _restore_checkpoint(trial_dir)
    if resume is not None:
        spec.setdefault("train", {})["resume_training_checkpoint_path"] = str(resume)
    stretch = uuid.uuid4().hex[:12]
    reporter = TuneReporter(trial_dir, objectives, job["numbers"], trial_id, stretch)
    result = worker.run_trial(job["model"], spec, trial_dir, reporter, job.get("max_epochs"),
                              objectives=objectives, config=params,
                              extra={"number": number, "ray_trial_id": trial_id, "stretch": stretch,
                                     "node_id": _node_id()}, trainer=trainer)
    if resume is not None:
        resume.unlink(missing_ok=True)
    if reporter.ended_by_tune:
        if reporter.outcome.get("reason") and result["state"] == reporter.outcome.get("state"):
            result["reason"] = reporter.outcome["reason"]
            rundir.write_json(trial_dir / rundir.RESULT, result)
        return
    if result["state"] == TrialState.FAILED:  # raise so that Tune's FailureConfig retries it from its checkpoint
        raise _TrialFailed(result.get("reason") or "failed")


def _node_id() -> str:
    with contextlib.suppress(Exception):
        return ray.get_runtime_context().get_node_id()
    return ""


class _TrialFailed(RuntimeError):
    """A trial's trainer failed; the message is the reason recorded in ``result.json``."""


def _params_of(space: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    """Tune's config -> the flat dotted trial config."""

    from_ray = getattr(space, "from_ray", None)
    if callable(from_ray):
        return dict(from_ray(dict(config)))
    return flatten(dict(config))
