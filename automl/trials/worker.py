"""Running one trial inside a worker process.

:func:`run_trial` is what every backend calls in the process that hosts a trial: it writes the
trial's ``config.json`` and ``spec.yaml``, sends the trainer's output to ``train.log``, calls
``TrainerPlugin.train`` with the backend's reporter and writes ``result.json``. It never raises for a
failing trainer: the failure is the trial's result.

The embedded (Optuna) backend keeps one long-lived worker process per slot (``python -m
automl.trials.worker --serve``) and feeds it trials over a pipe (JSON lines). Why a persistent
process: spawning Python + torch + the plugin per trial costs seconds and dominates short trials;
a worker that dies (segfault, OOM kill, timeout kill) is simply replaced and only its current trial is
lost, so crash isolation is kept. Why the pipe and not the study storage: the controller is the only
writer of the study, so no storage (SQLite included) ever sees concurrent writers ("database is
locked" cannot happen) and workers need no storage credentials; a per-epoch round trip costs well under
a millisecond. A served job leaves ``config.json``, ``spec.yaml`` and ``result.json`` to the controller
(``write_files``/``write_result`` false in the job), which writes them off the worker's path (the first
two while the trial trains, ``result.json`` while the next one does), so that path holds only the
trial. ``--once JOB.json`` runs a single trial, writes all its files and exits (re-evaluation,
debugging).

Protocol (one JSON object per line): controller -> worker ``{"op": "run", "job": {...}}`` (see :func:`make_job`),
``{"op": "reply", "stop": null|"pruned"|"paused"}`` (answer to each report but the final one),
``{"op": "prepare", "trial_dir": path}`` (make the next trial's folder while the controller samples its
config; no answer), ``{"op": "exit"}``;
worker -> controller ``{"op": "ready", "pid": N}``, ``{"op": "report", "epoch": e, "metrics": {...}, "final": bool}``,
``{"op": "done", "result": {...}}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from automl.fsutil import remove_temporaries
from automl.plugins import Monitor, get_trainer
from automl.reporting import FileReporter, read_metrics
from automl.testing.killpoints import kill_point
from automl.reporting import clean_metrics
from automl.trials.outcome import folder_record, own_epochs
from automl.trials.records import TrialState
from automl.trials.rundir import CHECKPOINTS, CONFIG, JOB_FILE, LOG, METRICS, PREVIOUS_RESULT, RESULT, SPEC, read_json_or, write_json
from automl.spec import dump_yaml, get_dotted


class PipeReporter(FileReporter):
    """Records each epoch to ``metrics.jsonl`` and asks the controller whether to go on."""

    def __init__(self, results_dir: Path, send: Callable[[dict], None], receive: Callable[[], dict],
                 final_epoch: int | None = None):
        super().__init__(results_dir)
        self._send, self._receive = send, receive
        self.final_epoch = final_epoch
        self.stop_reason: str | None = None

    def report(self, epoch: int, metrics: Mapping[str, float], checkpoint: Path | None = None) -> None:
        super().report(epoch, metrics, checkpoint)
        kill_point("metrics_written", in_worker=True)
        # after the last epoch of this run there is nothing left to stop: the controller records the
        # report and sends no reply, so the trial finishes without waiting for it
        final = self.final_epoch is not None and epoch >= self.final_epoch
        self._send({"op": "report", "epoch": int(epoch), "metrics": clean_metrics(metrics),
                    "checkpoint": str(checkpoint) if checkpoint else None, "final": final})
        if final:
            return
        reply = self._receive()
        if reply.get("stop"):
            self.stop_reason = reply["stop"]

    def should_stop(self) -> bool:
        return self.stop_reason is not None


def final_epoch(spec: Mapping[str, Any], max_epochs: int | None) -> int | None:
    """The 0-based index of the last epoch a run trains (``max_epochs`` counts from epoch 0)."""
    full = int(get_dotted(spec, "train.num_epochs", 0) or 0)
    if full <= 0:
        return None
    return min(full, int(max_epochs)) - 1 if max_epochs else full - 1


@contextlib.contextmanager
def _output_to(log_path: Path):
    """Send this process's stdout/stderr (file descriptors too, so C libraries follow) to ``log_path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    # The trial's log is where a user looks for how it ran (device plan, DDP backend, spec notes), so
    # automl's own INFO lines go there too; the controller's console keeps WARNING and up.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    automl_log = logging.getLogger("automl")
    level = automl_log.level
    with open(log_path, "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        automl_log.addHandler(handler)
        automl_log.setLevel(logging.INFO)
        try:
            yield
        finally:
            automl_log.removeHandler(handler)
            automl_log.setLevel(level)
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_trial(
    plugin_name: str,
    spec: Mapping[str, Any],
    trial_dir: str | Path,
    reporter: Any,
    max_epochs: int | None = None,
    *,
    objectives: list[Monitor] | None = None,
    config: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    write_files: bool = True,
    write_result: bool = True,
    trainer: Any = None,
) -> dict[str, Any]:
    """Run one trial (or one more stretch of a paused/interrupted trial) and write ``result.json``.

    ``spec`` is the resolved spec (resume from a checkpoint via ``train.resume_training_checkpoint_path``);
    ``max_epochs`` stops this run after that many epochs in total (None: ``train.num_epochs``).
    ``write_files=False``: the caller writes ``config.json`` and ``spec.yaml`` (the embedded backend's
    controller does, while the worker runs). ``write_result=False``: the caller writes ``result.json``
    (the embedded backend's controller does, from the result the worker sends, once the next trial is
    under way).
    ``trainer``: an object with the plugin's ``train`` to run instead of the plugin's (the Ray backend's
    simulation, :mod:`automl.backends.ray.simulated`); the record is the same.
    ``reporter`` may carry ``stop_reason`` ("pruned"/"paused"), which becomes the state when it asked
    the trainer to stop. ``objectives`` default to the plugin's monitor. Accumulates ``epochs_run``,
    ``duration_s`` and ``gpu_seconds`` over earlier runs of the same trial (``result.prev.json``).

    Returns the result dict (also written to ``<trial_dir>/result.json`` unless ``write_result`` is
    False): number, state, value, values, best_epoch, best_checkpoint, last_checkpoint, epochs_run,
    epochs_done, reason, duration_s, gpu_seconds, params, trial_dir, extra.
    """
    trial_dir = Path(trial_dir)
    trial_dir.mkdir(parents=True, exist_ok=True)
    remove_temporaries(trial_dir / CHECKPOINTS)  # a kill between a checkpoint's write and its rename
    (trial_dir / RESULT).unlink(missing_ok=True)
    if write_files:
        write_json(trial_dir / CONFIG, dict(config or {}))
        dump_yaml(spec, trial_dir / SPEC)
    previous = read_json_or(trial_dir / PREVIOUS_RESULT, {})
    gpus = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    full_epochs = int(get_dotted(spec, "train.num_epochs", 0) or 0)
    records_before = own_epochs(read_metrics(trial_dir))

    started = time.time()
    state, reason, output = TrialState.COMPLETE, None, {}
    with _output_to(trial_dir / LOG):
        try:
            plugin = get_trainer(plugin_name)
            objectives = objectives or [plugin.monitor]
            output = (trainer or plugin).train(spec, trial_dir, reporter, max_epochs) or {}
        except BaseException as exc:  # the trial's failure is its result, whatever it is
            if isinstance(exc, KeyboardInterrupt):
                raise
            traceback.print_exc()
            state, reason = TrialState.FAILED, f"{type(exc).__name__}: {exc}".strip()[:500]
    duration = time.time() - started

    records = read_metrics(trial_dir)
    done = (max(int(r["epoch"]) for r in records) + 1) if records else 0
    if state != TrialState.FAILED:
        stop = getattr(reporter, "stop_reason", None)
        if stop:
            state = TrialState(stop)
        elif max_epochs is not None and full_epochs and done < full_epochs and done >= max_epochs:
            state = TrialState.PAUSED
    # epochs trained by this run = the epochs it reported (trainers differ on whether their own
    # "epochs_run" counts the epochs before a resume); the trainer's count only if it reported none
    epochs_now = own_epochs(records) - records_before
    if epochs_now <= 0:
        epochs_now = int(output.get("epochs_run") or 0)
    record = folder_record(
        trial_dir, (extra or {}).get("number", previous.get("number", -1)), state, objectives or [], previous=previous,
        epochs_now=epochs_now, reason=reason, duration_s=duration, gpus=len(gpus),
        params=config or previous.get("params") or {}, extra=extra, trainer_output=output, records=records)
    result = record.to_json()
    if write_result:
        write_json(trial_dir / RESULT, result)
    return result


def prepare_trial_dir(trial_dir: Path) -> None:
    """Make a trial's folder and the files its run appends to (``train.log``, ``metrics.jsonl``).

    The embedded backend's worker does this on a "prepare" message, sent as soon as the study has
    numbered the trial, so it happens while the controller is still sampling the trial's config. Why:
    creating a file is a metadata write (about 0.5 ms each on ext4 in a VM), and three of them sat on
    every trial's critical path. Existing files are kept (a resumed trial appends to them).
    """
    trial_dir.mkdir(parents=True, exist_ok=True)
    for name in (LOG, METRICS):
        os.close(os.open(trial_dir / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644))


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the controller dies (no orphans after a kill -9)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            if os.getppid() == 1:
                os._exit(1)


#: DDP ranks > 0 of a trial read its job from this variable: the job itself as JSON, or the path of
#: a file that holds it when it is too large for the environment
JOB_ENV = "AUTOML_TRIAL_JOB"
_ENV_LIMIT = 100_000  # Linux caps one environment string at 128 KiB


def make_job(plugin: str, spec: Mapping[str, Any], trial_dir: Path, *, config: Mapping[str, Any],
             objectives: list[Monitor], max_epochs: int | None = None, extra: Mapping[str, Any] | None = None,
             **fields: Any) -> dict[str, Any]:
    """The job a worker runs (one trial, or one more stretch of it); ``fields`` are kept for the record."""
    return {"plugin": plugin, "spec": spec, "trial_dir": str(trial_dir), "max_epochs": max_epochs,
            "config": dict(config), "objectives": [{"metric": m.metric, "mode": m.mode} for m in objectives],
            "extra": dict(extra or {}), **fields}


def _job_run(job: dict, reporter: Any, published: str | None = None, *, standalone: bool = False) -> dict:
    """Run a job; ``published`` is its JSON text as received (saves encoding it again).
    ``standalone``: no controller is there to write the files the job leaves to it (``--once``)."""
    objectives = [Monitor(o["metric"], o["mode"]) for o in job.get("objectives") or []]
    # Multi-GPU trials: Lightning's DDP launcher re-executes this module (``python -m
    # automl.trials.worker --serve``) once per extra rank, with LOCAL_RANK set and this environment.
    # Those processes find the job in JOB_ENV and run the same train call (see main()).
    published = published or json.dumps(job, default=str)
    if len(published) > _ENV_LIMIT:
        published = str(write_json(Path(job["trial_dir"]) / JOB_FILE, job, indent=None))
    os.environ[JOB_ENV] = published
    try:
        return run_trial(job["plugin"], job["spec"], job["trial_dir"], reporter, job.get("max_epochs"),
                         objectives=objectives or None, config=job.get("config"), extra=job.get("extra"),
                         write_files=standalone or job.get("write_files", True),
                         write_result=standalone or job.get("write_result", True))
    finally:
        os.environ.pop(JOB_ENV, None)


class _RankReporter:
    """Reporter of a non-zero DDP rank: rank 0 reports and decides; the trainer broadcasts its stop."""

    def report(self, epoch: int, metrics: Mapping[str, float], checkpoint: Path | None = None) -> None:
        pass

    def should_stop(self) -> bool:
        return False


def _run_ddp_rank(published: str) -> None:
    """A DDP rank > 0 started by Lightning inside a trial: train the same job, write nothing shared."""
    job = json.loads(published if published.lstrip().startswith("{") else Path(published).read_text())
    if job.get("op") == "run":  # the controller's whole "run" message, as the worker received it
        job = job["job"]
    rank = os.environ.get("LOCAL_RANK", "?")
    with _output_to(Path(job["trial_dir"]) / f"train.rank{rank}.log"):
        get_trainer(job["plugin"]).train(job["spec"], Path(job["trial_dir"]), _RankReporter(), job.get("max_epochs"))


def serve() -> None:
    """Worker loop: run the trials the controller sends until it says exit or the pipe closes."""
    _die_with_parent()
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    inbox = sys.stdin
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # stray prints between trials must not corrupt the protocol

    def send(msg: dict) -> None:
        channel.write(json.dumps(msg, allow_nan=False, default=str) + "\n")
        channel.flush()

    line = ""

    def receive() -> dict:
        nonlocal line
        line = inbox.readline()
        if not line:  # the controller is gone
            os._exit(3)
        return json.loads(line)

    preload = os.environ.get("AUTOML_WORKER_PRELOAD")
    if preload:  # import the plugin before the first trial so its cost is not charged to a trial
        with contextlib.suppress(Exception):
            get_trainer(preload)
    send({"op": "ready", "pid": os.getpid()})
    while True:
        msg = receive()
        if msg.get("op") == "exit":
            return
        if msg.get("op") == "prepare":
            with contextlib.suppress(OSError):  # the trial itself reports a folder it cannot write
                prepare_trial_dir(Path(msg["trial_dir"]))
            continue
        if msg.get("op") != "run":
            continue
        job = msg["job"]
        reporter = PipeReporter(Path(job["trial_dir"]), send, receive, final_epoch(job["spec"], job.get("max_epochs")))
        result = _job_run(job, reporter, published=line.strip())
        send({"op": "done", "result": result})


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if os.environ.get(JOB_ENV) and os.environ.get("LOCAL_RANK", "0") != "0":
        _die_with_parent()
        _run_ddp_rank(os.environ[JOB_ENV])
    elif argv[:1] == ["--serve"]:
        serve()
    elif argv[:1] == ["--once"] and len(argv) == 2:
        job = json.loads(Path(argv[1]).read_text())
        result = _job_run(job, FileReporter(Path(job["trial_dir"])), standalone=True)
        print(json.dumps({"state": result["state"], "value": result["value"]}))
    else:
        print("usage: python -m automl.trials.worker --serve | --once JOB.json", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
