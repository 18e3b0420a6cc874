"""The embedded backend: an Optuna study driven from this process, trials in persistent worker processes.

Storage: by default an Optuna ``JournalStorage`` with a ``JournalFileBackend`` (``<run_dir>/journal``):
an append-only log, safe against a SIGKILL at any moment (a torn last record is ignored on reload)
and readable by ``automl status`` while the search writes. Only this controller process writes the
study (workers talk to it through a pipe, see :mod:`automl.trials.worker`), so no storage ever has
concurrent writers and "database is locked" cannot happen, with SQLite or PostgreSQL URLs too
(``--storage sqlite:///study.db`` / ``postgresql://...``).

Scheduling: one thread per running trial drives that slot's worker process; all study access holds
one lock. The files around a trial (its ``config.json``, ``spec.yaml`` and, from the result the worker
sends, ``result.json``) are written by this process while the trial, or the next one, is under way, so
that only the trial itself and the study's own writes sit on the path from one trial to the next; a
crash before ``result.json`` exists is recovered from the study and ``metrics.jsonl`` (``_recover``).
Single-fidelity algorithms prune through Optuna's pruner at each report but the final one (a trial
that trained all its epochs is complete; its final report is not waited for). Multi-fidelity
ones (asha/hyperband/bohb) pause each trial at its rung (``max_epochs`` = the rung) and promote paused
trials by ASHA's rule, resuming them from their checkpoint (:class:`automl.trials.algorithms.Rungs`).
pbt runs generations of short segments, each a trial that resumes from a member's checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import random
import select
import signal
import subprocess
import sys
import threading
import time

import numpy as np
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automl.backends.base import SearchBackend
from automl.trials.records import Progress, SearchSetup, TrialRecord, TrialState
from automl.errors import AutomlError
from automl.trials import rundir
from automl.trials.algorithms import MULTI_FIDELITY, grid_configs, make_pruner, make_sampler, rungs_of
from automl.trials.outcome import FailureStreak, best_so_far, ranked
from automl.trials.slots import slot_env
from automl.reporting import read_metrics
from automl.trials.rundir import CONFIG, JOB_FILE, METRICS, PREVIOUS_RESULT, RESULT, SPEC
from automl.trials.outcome import INHERITED, best_epoch, epoch_metrics, folder_record
from automl.trials.worker import make_job
from automl.spec import apply_config, dump_yaml

log = logging.getLogger(__name__)
WORKER_START_TIMEOUT_S = 300.0


def open_storage(setup: SearchSetup):
    """The study storage: a journal file in the run folder unless ``--storage`` names another."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    url = setup.storage
    if not url:
        return JournalStorage(JournalFileBackend(str(setup.run_dir / "journal")))
    if url.startswith("journal://") or url.endswith((".journal", ".log")):
        path = url.removeprefix("journal://")
        return JournalStorage(JournalFileBackend(path))
    if url.startswith("sqlite:"):
        # one writer (this process) + readers: a generous timeout covers `automl status` readers
        return RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    if "://" in url:
        return RDBStorage(url)
    raise AutomlError(f"--storage '{url}': expected sqlite:///PATH, postgresql://..., or journal://PATH")


def load_study(setup: SearchSetup, *, create: bool):
    import optuna

    storage = open_storage(setup)
    directions = [m.direction for m in setup.objectives]
    sampler = make_sampler(setup.algorithm, setup.seed, setup.space, len(directions))
    pruner = make_pruner(setup.algorithm, setup.algorithm_settings)
    try:
        if create:
            return optuna.create_study(storage=storage, study_name=setup.name, sampler=sampler, pruner=pruner,
                                       directions=directions, load_if_exists=False)
        return optuna.load_study(storage=storage, study_name=setup.name, sampler=sampler, pruner=pruner)
    except optuna.exceptions.DuplicatedStudyError:
        raise AutomlError(f"a study named '{setup.name}' already exists in {setup.storage or setup.run_dir}; "
                          f"add --resume to continue it or pick another --name") from None
    except KeyError:
        raise AutomlError(f"no study named '{setup.name}' in {setup.storage or setup.run_dir} to resume") from None


# -- worker processes ----------------------------------------------------------------------------
class WorkerDied(Exception):
    pass


class SlotWorker:
    """One slot's long-lived worker process (replaced when it dies or is killed)."""

    def __init__(self, slot: dict, log_path: Path, preload: str | None = None):
        self.slot = slot
        self.log_path = log_path
        self.preload = preload
        self.proc: subprocess.Popen | None = None
        self._buffer = b""

    def ensure(self) -> None:
        if self.alive():
            return
        env = slot_env(self.slot)
        if self.preload:
            env["AUTOML_WORKER_PRELOAD"] = self.preload
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "automl.trials.worker", "--serve"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env)
        self._buffer = b""
        msg = self.receive(time.monotonic() + WORKER_START_TIMEOUT_S)
        if msg is None or msg.get("op") != "ready":
            self.kill()
            raise WorkerDied(f"worker process for slot {self.slot['index']} did not start (see {self.log_path})")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, msg: dict) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(msg, default=str) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerDied("worker pipe closed") from None

    def receive(self, deadline: float | None) -> dict | None:
        """Next message, None on timeout; raises WorkerDied when the process ends."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise WorkerDied(self.exit_reason())
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def exit_reason(self) -> str:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.returncode
        self.proc = None
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = {"SIGKILL": " (killed: out of memory?)", "SIGSEGV": " (segmentation fault)",
                    "SIGABRT": " (aborted)", "SIGBUS": " (bus error)"}.get(name, "")
            return f"worker killed by {name}{hint}"
        return f"worker exited with status {code}"

    def kill(self) -> None:
        if self.proc is not None:
            try:
                self.proc.kill()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
            self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.send({"op": "exit"})
                self.proc.wait(timeout=10)
            except (WorkerDied, subprocess.TimeoutExpired):
                self.kill()
        self.proc = None


# -- jobs ----------------------------------------------------------------------------------------
@dataclass
class Job:
    number: int
    config: dict[str, Any]
    kind: str = "new"  # new | promote | rerun | pbt
    max_epochs: int | None = None
    resume_from: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: epochs the worker reported for this job so far (what a killed stretch trained)
    reported: int = 0


class OptunaBackend(SearchBackend):
    name = "optuna"

    def run(self, setup: SearchSetup, tracker: Any, progress: Progress) -> list[TrialRecord]:
        search = _Search(setup, tracker, progress)
        try:
            return search.run()
        finally:
            self.stop_reason = search.stop_reason


class _Search:
    def __init__(self, setup: SearchSetup, tracker: Any, progress: Progress):
        import warnings

        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        # an enqueued value outside its range is reported by space.check() as the trial's failure
        warnings.filterwarnings("ignore", message="Fixed parameter .* is out of range")
        self.setup, self.tracker, self.progress = setup, tracker, progress
        self.lock = threading.RLock()
        self.results: queue.Queue = queue.Queue()
        self.records: dict[int, TrialRecord] = {}
        self.running: dict[int, Job] = {}  # slot index -> job
        self.queue: list[Job] = []  # reruns after a resume, pbt segments
        self.failures = FailureStreak(setup.max_consecutive_failures)
        self._used: int | None = None  # trials counted against the budget (cached; this process asks them all)
        self._record_json: dict[int, dict] = {}
        self._unwritten: dict[int, TrialRecord] = {}  # finished trials whose result.json is not written yet
        self._trials: dict[int, Any] = {}  # optuna.Trial handles of trials this process asked
        self.stop_reason: str | None = None
        self.started = time.monotonic()
        self.mf = setup.algorithm in MULTI_FIDELITY
        self.rungs = rungs_of(setup) if self.mf else None
        self.pbt = _PBT(self) if setup.algorithm == "pbt" else None
        self.slot_threads: dict[int, tuple[threading.Thread, queue.Queue]] = {}
        self.workers = [SlotWorker(slot, setup.run_dir / "workers" / f"slot{slot['index']}.log", setup.model)
                        for slot in setup.slots]

    # ---- study helpers
    def _trial(self, number: int):
        if number in self._trials:
            return self._trials[number]
        import optuna

        storage = self.study._storage
        trial_id = storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)
        return optuna.trial.Trial(self.study, trial_id)

    def used(self) -> int:
        """Trials counted against the budget (started, whatever happened to them)."""
        if self._used is None:
            from optuna.trial import TrialState as OptunaState

            self._used = sum(1 for t in self.study.get_trials(deepcopy=False) if t.state != OptunaState.WAITING)
        return self._used

    # ---- main loop
    def run(self) -> list[TrialRecord]:
        setup = self.setup
        self.study = load_study(setup, create=not setup.resume)
        if setup.resume:
            self._recover()
        else:
            self._enqueue(setup.space.defaults(), "baseline")
            for config in setup.warm_start_configs:
                self._enqueue(config, "warm_start")
            if setup.algorithm == "grid":
                points = setup.algorithm_settings["grid_points"]
                room = setup.budget_trials - 1 - len(setup.warm_start_configs)
                for config in grid_configs(setup.space, points, setup.seed)[:max(0, room)]:
                    self._enqueue(config, "grid")
        self.progress.start(setup, sorted(self.records.values(), key=lambda r: r.number))
        try:
            self._loop()
        except KeyboardInterrupt:
            self.stop_reason = "interrupted by the user (rerun with --resume to continue)"
            raise
        finally:
            for slot, (thread, inbox) in self.slot_threads.items():
                if self.running:  # interrupted: do not wait for trials
                    self.workers[slot].kill()
                inbox.put(None)
            for thread, _ in self.slot_threads.values():
                thread.join(timeout=30)
            self._write_results()
        self._finish_paused()
        return sorted(self.records.values(), key=lambda r: r.number)

    def _loop(self) -> None:
        finished: TrialRecord | None = None
        while True:
            dispatched: list[tuple[Job, dict]] = []
            with self.lock:
                if self.stop_reason is None and self.setup.time_budget_s is not None and \
                        time.monotonic() - self.started > self.setup.time_budget_s:
                    self.stop_reason = f"time budget of {self.setup.time_budget_s:g}s reached"
                    self.progress.message(self.stop_reason)
                for slot in range(len(self.workers)):
                    if slot in self.running:
                        continue
                    job = self._next_job(slot)
                    if job is None:
                        break
                    dispatched.append(self._dispatch(slot, job))
            # outside the lock: a slot thread handles its worker's reports meanwhile (they take the lock)
            for job, payload in dispatched:
                self._write_trial_files(job, payload)
            self._write_results()
            if finished is not None:  # told to the study already; tracker and display once slots are busy
                with self.lock:
                    self._announce(finished)
                finished = None
            if not self.running:
                return
            slot, job, result = self.results.get()
            with self.lock:
                del self.running[slot]
                finished = self._finished(job, result, announce=False)

    def _next_job(self, slot: int | None = None) -> Job | None:
        if self.stop_reason is not None:
            return None
        if self.queue:
            return self.queue.pop(0)
        if self.pbt is not None:
            return self.pbt.next_job()
        if self.mf:
            job = self._promotion()
            if job is not None:
                return job
        while self.used() < self.setup.budget_trials:
            job = self._new_trial(slot=slot)
            if job is not None:
                return job
            if self.stop_reason is not None:
                return None
        if self.mf and not self.running:
            return self._final_promotion()
        return None

    def _new_trial(self, fixed: dict[str, Any] | None = None, extra: dict | None = None,
                   slot: int | None = None) -> Job | None:
        """Ask the sampler for a trial; a config failing check() is recorded failed and never started.
        ``slot``: the free slot the trial will run on; its worker makes the trial's folder meanwhile."""
        if fixed is not None:
            self._enqueue(fixed, "pbt")
        trial = self.study.ask()
        if slot is not None:
            self._prepare(slot, trial.number)
        self._trials[trial.number] = trial
        self._used = self.used() + 1
        config = self.setup.space.suggest(trial)
        if "fixed_config" in trial.user_attrs:
            # the enqueued values are what the trial trains with, whatever helper parameters (e.g. a
            # weighted choice's uniform) the define-by-run suggest had to sample
            config = {**config, **trial.user_attrs["fixed_config"]}
        problems = self.setup.space.check(config)
        if problems:
            record = TrialRecord(number=trial.number, state=TrialState.FAILED, params=config,
                                 reason="invalid config, not started: " + "; ".join(problems),
                                 trial_dir=str(rundir.trial_dir(self.setup.run_dir, trial.number)))
            rundir.write_json(rundir.trial_dir(self.setup.run_dir, trial.number) / CONFIG, config)
            rundir.write_json(rundir.trial_dir(self.setup.run_dir, trial.number) / RESULT, record.to_json())
            self.study.tell(trial.number, state=_optuna_state(TrialState.FAILED))
            self._record(record)
            return None
        max_epochs = self.rungs.first(trial.number) if self.mf else None
        return Job(trial.number, config, "new", max_epochs=max_epochs, extra=dict(extra or {}))

    def _prepare(self, slot: int, number: int) -> None:
        """Have the slot's idle worker make the trial folder while the sampler works on its config
        (see worker.prepare_trial_dir); a worker not running yet makes it when the trial starts."""
        worker = self.workers[slot]
        if worker.alive():
            with contextlib.suppress(WorkerDied):  # the slot thread restarts the worker for the trial
                worker.send({"op": "prepare", "trial_dir": str(rundir.trial_dir(self.setup.run_dir, number))})

    def _enqueue(self, config: dict[str, Any], source: str) -> None:
        config = {k: _plain(v) for k, v in config.items()}
        self.study.enqueue_trial(enqueue_params(self.setup.space, config),
                                 user_attrs={"source": source, "fixed_config": config})

    # ---- multi-fidelity
    def _reached(self, rung: int, bracket: int) -> list[tuple[float, int]]:
        """(value at the rung, number) of the trials of a bracket that reached ``rung`` epochs."""
        out = []
        for number, record in self.records.items():
            if self.rungs.bracket(number) != bracket or record.epochs_done < rung or record.state == TrialState.FAILED:
                continue
            _, value = best_epoch(epoch_metrics(Path(record.trial_dir)), self.setup.monitor, upto=rung)
            if value is not None:
                out.append((value, number))
        return ranked(sorted(out, key=lambda vn: vn[1]), self.setup.monitor, value=lambda vn: vn[0])

    def _promotion(self) -> Job | None:
        running = {job.number for job in self.running.values()}
        for rung in reversed(self.rungs.ladder[:-1]):
            for bracket in range(self.rungs.n_brackets):
                reached = self._reached(rung, bracket)
                top = reached[: len(reached) // self.rungs.eta]
                for _, number in top:
                    record = self.records[number]
                    if record.state == TrialState.PAUSED and record.epochs_done == rung and number not in running:
                        return self._promote(record)
        return None

    def _final_promotion(self) -> Job | None:
        """The budget is spent and nothing runs: make sure the best trial trained to the full budget."""
        if any(r.state == TrialState.COMPLETE for r in self.records.values()):
            return None
        paused = [r for r in self.records.values() if r.state == TrialState.PAUSED and r.value is not None]
        if not paused:
            return None
        top_rung = max(r.epochs_done for r in paused)
        best = best_so_far((r for r in paused if r.epochs_done == top_rung), self.setup.monitor)
        return self._promote(best)

    def _promote(self, record: TrialRecord) -> Job:
        target = self.rungs.next_after(record.number, record.epochs_done)
        ckpt = rundir.checkpoint(record.trial_dir)
        self.progress.message(f"trial {record.number}: promoted from epoch {record.epochs_done} to {target}")
        return Job(record.number, dict(record.params), "promote", max_epochs=target,
                   resume_from=str(ckpt) if ckpt.exists() else None)

    def _finish_paused(self) -> None:
        """Trials left paused at a rung were never promoted: they end as pruned."""
        for record in list(self.records.values()):
            if record.state != TrialState.PAUSED:
                continue
            record.state = TrialState.PRUNED
            record.reason = f"stopped at rung {record.epochs_done} (not promoted)"
            rundir.write_json(Path(record.trial_dir) / RESULT, record.to_json())
            with self.lock:
                try:
                    self.study.tell(record.number, state=_optuna_state(TrialState.PRUNED), skip_if_finished=True)
                except Exception as exc:  # a finished trial (already told) is fine
                    log.debug("tell pruned %s: %s", record.number, exc)

    # ---- running a job
    def _dispatch(self, slot: int, job: Job) -> tuple[Job, dict]:
        """Send the job to the slot's worker; returns what _write_trial_files records of it."""
        setup = self.setup
        folder = rundir.trial_dir(setup.run_dir, job.number)
        self._write_results(job.number)
        if (folder / RESULT).exists():  # a paused/earlier run: its totals carry over
            os.replace(folder / RESULT, folder / PREVIOUS_RESULT)
        spec = apply_config(setup.base_spec, job.config)
        spec.setdefault("train", {})
        spec["train"]["resume_training_checkpoint_path"] = job.resume_from or ""
        payload = make_job(setup.model, spec, folder, config=job.config, objectives=setup.objectives,
                           max_epochs=job.max_epochs, extra={"number": job.number, "kind": job.kind, **job.extra},
                           kind=job.kind, resume_from=job.resume_from, slot=setup.slots[slot], job_extra=job.extra,
                           write_files=False, write_result=False)
        self.running[slot] = job
        message = {"op": "run", "job": payload}
        sent_at = None
        if self.workers[slot].alive():
            # sent from here, not by the slot thread: that thread would first have to win the GIL from
            # this one, which goes on with the bookkeeping below (a dead worker: the slot thread restarts it)
            with contextlib.suppress(WorkerDied):
                self.workers[slot].send(message)
                sent_at = time.monotonic()
        if slot not in self.slot_threads:
            inbox: queue.Queue = queue.Queue()
            thread = threading.Thread(target=self._slot_loop, args=(slot, inbox), daemon=True, name=f"slot{slot}")
            self.slot_threads[slot] = (thread, inbox)
            thread.start()
        # the worker's first report waits for self.lock (held by our caller), so the tracker still
        # sees trial_started before any epoch
        self.slot_threads[slot][1].put((job, message, sent_at))
        self.tracker.trial_started(job.number, job.config, folder)
        self.progress.trial_started(job.number, job.config, slot)
        return job, payload

    def _write_trial_files(self, job: Job, payload: dict) -> None:
        """config.json and spec.yaml, written while the worker starts the trial (its own path is the
        trial's critical path, and so is the slot thread's: it reads the worker's reports). A kill
        before they exist loses nothing: the study holds the params. job.json only where a resume
        needs more than the study holds: a stretch's epoch budget, a population member."""
        folder = Path(payload["trial_dir"])
        try:
            rundir.write_json(folder / CONFIG, job.config)
            if job.max_epochs is not None or job.extra:
                rundir.write_json(folder / JOB_FILE, payload, indent=None)
            dump_yaml(payload["spec"], folder / SPEC)
        except OSError as exc:  # the trial runs on (its spec travels in the job); the search goes on
            self.progress.message(f"trial {job.number}: could not write {folder}: {exc}")

    def _slot_loop(self, slot: int, inbox: queue.Queue) -> None:
        """One long-lived thread per slot. It also spawns the slot's worker process: Linux delivers the
        worker's parent-death signal when the *thread* that forked it ends, so that thread must live as
        long as the search."""
        while True:
            item = inbox.get()
            if item is None:
                self.workers[slot].close()
                return
            self._execute(slot, *item)

    def _execute(self, slot: int, job: Job, message: dict, sent_at: float | None) -> None:
        """Run one job on the slot's worker (``sent_at``: when _dispatch already sent it)."""
        worker = self.workers[slot]
        started = time.monotonic()
        timeout = self.setup.trial_timeout_s
        deadline = None
        try:
            if sent_at is None:
                worker.ensure()  # (re)starting the worker process is not charged to the trial's timeout
                worker.send(message)
                sent_at = time.monotonic()
            started = sent_at
            deadline = started + timeout if timeout else None
            while True:
                msg = worker.receive(deadline)
                if msg is None:
                    worker.kill()
                    result = self._failed_result(job, f"timeout: exceeded --trial-timeout {timeout:g}s", started)
                    break
                if msg.get("op") == "report":
                    stop = self._on_report(job, msg)
                    if not msg.get("final"):  # the final epoch's report is not waited for
                        worker.send({"op": "reply", "stop": stop})
                elif msg.get("op") == "done":
                    result = msg["result"]
                    break
        except WorkerDied as exc:
            worker.kill()
            result = self._failed_result(job, str(exc), started)
        except Exception as exc:  # never lose the slot thread silently
            worker.kill()
            result = self._failed_result(job, f"controller error: {type(exc).__name__}: {exc}", started)
        self.results.put((slot, job, result))

    def _failed_result(self, job: Job, reason: str, started: float) -> dict:
        """The result of a trial whose process died, timed out or could not be driven."""
        folder = rundir.trial_dir(self.setup.run_dir, job.number)
        n_gpus = len(self.setup.slots[0]["gpus"]) if self.setup.slots else 0
        return folder_record(folder, job.number, TrialState.FAILED, self.setup.objectives,
                             previous=rundir.read_json_or(folder / PREVIOUS_RESULT, {}), epochs_now=job.reported,
                             reason=reason, duration_s=time.monotonic() - started, gpus=n_gpus, params=job.config,
                             extra={"kind": job.kind}).to_json()

    def _on_report(self, job: Job, msg: dict) -> str | None:
        job.reported += 1
        metrics = msg.get("metrics") or {}
        value = metrics.get(self.setup.monitor.metric)
        with self.lock:
            self.tracker.trial_epoch(job.number, int(msg["epoch"]), {k: v for k, v in metrics.items() if v is not None})
            self.progress.trial_epoch(job.number, int(msg["epoch"]), value)
            if self.setup.multi_objective or self.mf or self.pbt is not None or value is None:
                return None
            trial = self._trial(job.number)
            trial.report(float(value), int(msg["epoch"]))
            # a trial that trained all its epochs is complete, not pruned: stopping it saves nothing
            return TrialState.PRUNED if not msg.get("final") and trial.should_prune() else None

    def _finished(self, job: Job, result: dict, announce: bool = True) -> TrialRecord:
        record = TrialRecord.from_json(result)
        record.number = job.number
        record.params = record.params or job.config
        if self.pbt is not None and record.state == TrialState.PAUSED:
            record.state = TrialState.COMPLETE  # a pbt segment is a finished trial; the member goes on in a new one
        state = record.state
        if state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED):
            values = None
            if state == TrialState.COMPLETE:
                values = record.values if self.setup.multi_objective else record.value
                if values is None or (isinstance(values, list) and any(v is None for v in values)):
                    state = record.state = TrialState.FAILED
                    record.reason = f"finished without reporting '{self.setup.monitor.metric}'"
                    values = None
            self.study.tell(job.number, values if state == TrialState.COMPLETE else None, state=_optuna_state(state),
                            skip_if_finished=True)
        # result.json is written after the study knows the outcome, once the next trial is under way
        # (_loop); a crash in between is recovered from the study and metrics.jsonl (_recover)
        self._unwritten[job.number] = record
        if announce:
            self._write_results(job.number)
        self._record(record, announce)
        if self.pbt is not None:
            self.pbt.finished(job, record)
        return record

    def _write_results(self, number: int | None = None) -> None:
        """Write the pending result.json of every finished trial, or of trial ``number`` only."""
        for n in list(self._unwritten) if number is None else [number]:
            record = self._unwritten.pop(n, None)
            if record is not None:
                rundir.write_json(rundir.trial_dir(self.setup.run_dir, n) / RESULT, record.to_json())

    def _record(self, record: TrialRecord, announce: bool = True) -> None:
        """Account for a finished trial (failure streak, stop); ``announce`` also tells tracker and display."""
        self.records[record.number] = record
        stop = self.failures.add(record)
        if stop and self.stop_reason is None:
            self.stop_reason = stop
            self.progress.message(stop)
        if announce:
            self._announce(record)

    def _announce(self, record: TrialRecord) -> None:
        self.tracker.trial_finished(record.number, record.state, record.value, {
            "reason": record.reason, "duration_s": record.duration_s, "gpu_seconds": record.gpu_seconds,
            "best_epoch": record.best_epoch, "best_checkpoint": record.best_checkpoint,
            "spec": str(Path(record.trial_dir or "") / SPEC)}, Path(record.trial_dir or self.setup.run_dir))
        self.progress.trial_finished(record)
        for number, other in self.records.items():
            if number not in self._record_json or number == record.number:
                self._record_json[number] = other.to_json()
        records = [self._record_json[n] for n in sorted(self._record_json)]
        best = best_so_far(self.records.values(), self.setup.monitor)
        self.tracker.search_progress(records, best.to_json() if best else None)

    # ---- resume
    def _recover(self) -> None:
        """Rebuild state from the study and the trial folders after a crash or a stop."""
        from optuna.trial import TrialState as OptunaState

        for frozen in self.study.get_trials(deepcopy=False):
            if frozen.state == OptunaState.WAITING:
                continue
            folder = rundir.trial_dir(self.setup.run_dir, frozen.number)
            record = rundir.read_trial(self.setup.run_dir, frozen.number)
            if frozen.state != OptunaState.RUNNING:
                if record is None:  # the controller died after telling the study, before writing result.json
                    record = self._rebuilt_record(frozen, folder)
                    rundir.write_json(folder / RESULT, record.to_json())
                self.records[frozen.number] = record
                continue
            if record is not None and record.state == TrialState.PAUSED:
                self.records[frozen.number] = record
                continue
            if record is not None:  # finished, but the controller died before telling the study
                self._finished(Job(frozen.number, record.params), record.to_json())
                continue
            # interrupted mid-run: run it again from its last checkpoint, same number
            config = _saved_config(folder)
            if config is None:  # killed between ask and dispatch: the stored params decide
                trial = self._trial(frozen.number)
                config = self.setup.space.suggest(trial)
                config.update(frozen.user_attrs.get("fixed_config", {}))
            job_info = rundir.read_json(folder / JOB_FILE) if (folder / JOB_FILE).exists() else {}
            ckpt = rundir.checkpoint(folder)
            max_epochs = job_info.get("max_epochs")
            if self.mf and max_epochs is None:
                max_epochs = self.rungs.first(frozen.number)
            self.queue.append(Job(frozen.number, config, "rerun", max_epochs=max_epochs,
                                  resume_from=str(ckpt) if ckpt.exists() else None,
                                  extra=job_info.get("job_extra") or {}))
            self.progress.message(f"trial {frozen.number}: interrupted, rerunning "
                                  f"{'from its last checkpoint' if ckpt.exists() else 'from the start'}")
        if self.pbt is not None:
            self.pbt.recover()

    def _rebuilt_record(self, frozen: Any, folder: Path) -> TrialRecord:
        """A finished trial's record from the study (state, value) and its folder (config, epochs,
        checkpoints), for a result.json a crash left unwritten."""
        state, config = _our_state(frozen.state), _saved_config(folder)
        record = folder_record(
            folder, frozen.number, state, self.setup.objectives,
            previous=rundir.read_json_or(folder / PREVIOUS_RESULT, {}),
            reason="failed (its reason was lost with result.json in a crash)" if state == TrialState.FAILED else None,
            duration_s=frozen.duration.total_seconds() if frozen.duration else 0.0,
            params=dict(frozen.params) if config is None else config, extra={"rebuilt": True})
        if frozen.values and len(frozen.values) == 1:
            record.value = frozen.value  # the study's value is what the sampler saw
        elif frozen.values:
            record.values = list(frozen.values)
        return record


# -- population based training -------------------------------------------------------------------
class _PBT:
    """Population based training over trials: each trial is one segment of ``perturbation_interval``
    epochs of one population member. A member's next segment resumes from its own checkpoint; a member
    in the bottom quantile instead copies a top member's checkpoint (exploit) and perturbs that
    member's values (explore: floats/ints by x0.8 or x1.2 within bounds, categoricals resampled with
    probability ``resample_probability``), keeping only configs that pass ``space.check``.

    Ray Tune's PBT scheduler is the reference implementation; Optuna has none, hence this class.
    """

    def __init__(self, search: _Search):
        self.search = search
        s = search.setup.algorithm_settings
        self.population = s["population"]
        self.interval = s["perturbation_interval"]
        self.quantile = s["quantile_fraction"]
        self.resample_probability = s["resample_probability"]
        self.rng = random.Random(search.setup.seed)
        self.np_rng = np.random.default_rng(search.setup.seed)
        #: member -> its latest segment trial number
        self.latest: dict[int, int] = {}
        self.ready: list[int] = []  # members whose last segment finished and that wait for the next

    def recover(self) -> None:
        for number, record in sorted(self.search.records.items()):
            member = record.extra.get("member")
            if member is not None:
                self.latest[int(member)] = number
        for job in self.search.queue:
            member = job.extra.get("member")
            if member is not None:
                self.latest[int(member)] = job.number
        running = {j.extra.get("member") for j in self.search.queue}
        self.ready = [m for m in self.latest if m not in running and self._can_continue(m)]

    def _can_continue(self, member: int) -> bool:
        record = self.search.records.get(self.latest[member])
        return record is not None and record.state in (TrialState.COMPLETE, TrialState.PAUSED) and record.epochs_done < self.search.setup.max_epochs

    def next_job(self) -> Job | None:
        search = self.search
        if search.used() >= search.setup.budget_trials:
            return None
        if len(self.latest) < self.population:  # first generation: fresh configs
            member = len(self.latest)
            job = search._new_trial(extra={"member": member})
            if job is None:
                return None
            job.max_epochs = min(self.interval, search.setup.max_epochs)
            self.latest[member] = job.number
            return job
        if not self.ready:
            return None
        member = self.ready.pop(0)
        own = search.records[self.latest[member]]
        donor = self._exploit(member)
        extra = {"member": member, "parent": own.number}
        if donor is not None:
            config = self._explore(donor.params)
            source, extra["exploited"] = donor, donor.number
        else:
            config, source = dict(own.params), own
        ckpt = rundir.checkpoint(source.trial_dir)
        job = search._new_trial(fixed=config, extra=extra)
        if job is None:
            return None
        job.kind = "pbt"
        job.max_epochs = min(source.epochs_done + self.interval, search.setup.max_epochs)
        job.resume_from = str(ckpt) if ckpt.exists() else None
        # the segment continues the source's history: seed its metrics so epochs and values line up
        folder = rundir.trial_dir(search.setup.run_dir, job.number)
        folder.mkdir(parents=True, exist_ok=True)
        history = [{**r, INHERITED: True} for r in read_metrics(source.trial_dir)]
        if history:  # marked: these epochs are not this segment's epochs_run
            (folder / METRICS).write_text("".join(json.dumps(r) + "\n" for r in history))
        self.latest[member] = job.number
        return job

    def _scores(self) -> list[tuple[float, int]]:
        out = []
        for member, number in self.latest.items():
            record = self.search.records.get(number)
            if record is None or record.state not in (TrialState.COMPLETE, TrialState.PAUSED):
                continue
            epochs = epoch_metrics(Path(record.trial_dir))
            if not epochs:
                continue
            value = epochs[max(epochs)].get(self.search.setup.monitor.metric)
            if value is not None:
                out.append((value, member))
        return ranked(sorted(out, key=lambda vm: vm[1]), self.search.setup.monitor, value=lambda vm: vm[0])

    def _exploit(self, member: int) -> TrialRecord | None:
        ranked = self._scores()
        k = max(1, int(math.ceil(len(ranked) * self.quantile)))
        if len(ranked) < 2 or member not in [m for _, m in ranked[-k:]]:
            return None
        # a donor that already finished its budget leaves nothing to train: copy only members in progress
        donors = [m for _, m in ranked[:k]
                  if self.search.records[self.latest[m]].epochs_done < self.search.setup.max_epochs]
        if not donors:
            return None
        donor_member = self.rng.choice(donors)
        return None if donor_member == member else self.search.records[self.latest[donor_member]]

    def _explore(self, params: dict[str, Any]) -> dict[str, Any]:
        space = self.search.setup.space
        for _ in range(20):
            fresh = space.sample(self.np_rng)
            config = {}
            for name, value in params.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    config[name] = fresh.get(name, value) if self.rng.random() < self.resample_probability else value
                else:
                    factor = self.rng.choice((0.8, 1.2))
                    config[name] = type(value)(round(value * factor)) if isinstance(value, int) else value * factor
            if not space.check(config):
                return config
        return dict(params)

    def finished(self, job: Job, record: TrialRecord) -> None:
        member = job.extra.get("member")
        if member is None or self.latest.get(member) != job.number:
            return
        if record.state in (TrialState.COMPLETE, TrialState.PAUSED) and record.epochs_done < self.search.setup.max_epochs:
            self.ready.append(member)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value


def enqueue_params(space: Any, config: dict[str, Any]) -> dict[str, Any]:
    """The Optuna params that make ``space.suggest`` return ``config`` (spaces that sample through
    helper parameters translate; otherwise the dotted names are the Optuna names)."""
    translate = getattr(space, "optuna_params", None)
    return dict(translate(config)) if callable(translate) else dict(config)


def _saved_config(folder: Path) -> dict[str, Any] | None:
    """The trial's config.json, None when it was never written (a corrupt one raises)."""
    return rundir.read_json(folder / CONFIG) if (folder / CONFIG).exists() else None


def _optuna_state(state: str):
    from optuna.trial import TrialState as OptunaState

    return {TrialState.COMPLETE: OptunaState.COMPLETE, TrialState.PRUNED: OptunaState.PRUNED, TrialState.FAILED: OptunaState.FAIL}[state]


def _our_state(state) -> str:
    from optuna.trial import TrialState as OptunaState

    return {OptunaState.COMPLETE: TrialState.COMPLETE, OptunaState.PRUNED: TrialState.PRUNED, OptunaState.FAIL: TrialState.FAILED}.get(state, TrialState.FAILED)
