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
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

from automl.backends.base import SearchBackend
from automl.trials.records import Progress, SearchSetup, TrialRecord, TrialState
from automl.trials import rundir
from automl.trials.algorithms import MULTI_FIDELITY, grid_configs, rungs_of
from automl.trials.outcome import BestSoFar, FailureStreak
from automl.trials.rundir import CONFIG, JOB_FILE, PREVIOUS_RESULT, RESULT, SPEC
from automl.trials.outcome import folder_record
from automl.trials.worker import make_job
from automl.spec import apply_config, dump_yaml
from automl.backends.optuna.jobs import Job, enqueue_params, optuna_state, plain
from automl.backends.optuna.pbt import _PBT
from automl.backends.optuna.promotion import Promotion
from automl.backends.optuna.recovery import Recovery
from automl.backends.optuna.storage import check_name_free, check_storage, load_study, mark_initialized
from automl.testing.killpoints import kill_point
from automl.backends.optuna.workers import SlotWorker, WorkerDied


class OptunaBackend(SearchBackend):
    name = "optuna"

    def __init__(self, simulation: dict | None = None):
        #: benchmarks/scale.py only: trials run in-process on a virtual clock (see .simulated)
        self.simulation = simulation
        #: the --storage check() opened, which run() goes on with (a backend object serves one setup,
        #: made by automl.search.controller.prepare_backend; the storage is opened once)
        self._checked: tuple[SearchSetup, Any] | None = None

    def check(self, setup: SearchSetup) -> None:
        storage = check_storage(setup)
        if not setup.resume:
            check_name_free(setup, storage)
        self._checked = (setup, storage)

    def run(self, setup: SearchSetup, tracker: Any, progress: Progress) -> list[TrialRecord]:
        checked, self._checked = self._checked, None
        storage = checked[1] if checked is not None and checked[0] is setup else None
        search = _Search(setup, tracker, progress, storage=storage)
        cluster = None
        if self.simulation is not None:
            from automl.backends.optuna.simulated import simulate

            cluster = simulate(search, self.simulation)
        try:
            return search.run()
        finally:
            self.stop_reason = search.stop_reason
            if cluster is not None:
                from automl.backends.optuna.simulated import write_summary

                write_summary(cluster, setup.run_dir)


class _Search(Promotion, Recovery):
    def __init__(self, setup: SearchSetup, tracker: Any, progress: Progress, storage: Any = None):
        import warnings

        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        # an enqueued value outside its range is reported by space.check() as the trial's failure
        warnings.filterwarnings("ignore", message="Fixed parameter .* is out of range")
        self.setup, self.tracker, self.progress = setup, tracker, progress
        self._checked_storage = storage  # what the backend's check() opened (None: load_study opens it)
        self.lock = threading.RLock()
        self.results: queue.Queue = queue.Queue()
        self.records: dict[int, TrialRecord] = {}
        self.running: dict[int, Job] = {}  # slot index -> job
        self.queue: list[Job] = []  # reruns after a resume, pbt segments
        self.failures = FailureStreak(setup.max_consecutive_failures)
        self._used: int | None = None  # trials counted against the budget (cached; this process asks them all)
        self._best = BestSoFar(setup.monitor)  # for the tracker's search_progress
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
        self.study, fresh = load_study(setup, self._checked_storage)
        kill_point("study_created")
        if fresh:
            if setup.resume:
                self.progress.message(f"search '{setup.name}' was interrupted while being created; creating it")
            self._initialize()
        else:
            self._recover()
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

    def _initialize(self) -> None:
        """Enqueue the first trials (baseline, warm start, grid), then mark the study initialized. A
        resume after a crash in between enqueues again: ``skip_if_exists`` drops what is there."""
        setup = self.setup
        once = setup.resume  # finishing a creation: what is enqueued already stays (and only once)
        self._enqueue(setup.space.defaults(), "baseline", once=once)
        for config in setup.warm_start_configs:
            self._enqueue(config, "warm_start", once=once)
        if setup.algorithm == "grid":
            points = setup.algorithm_settings["grid_points"]
            room = setup.budget_trials - 1 - len(setup.warm_start_configs)
            for config in grid_configs(setup.space, points, setup.seed)[:max(0, room)]:
                self._enqueue(config, "grid", once=once)
        kill_point("enqueued")
        mark_initialized(self.study)

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
        kill_point("ask")
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
            self.study.tell(trial.number, state=optuna_state(TrialState.FAILED))
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

    def _enqueue(self, config: dict[str, Any], source: str, once: bool = False) -> None:
        """``once``: not when a trial with these params is already in the study (the first trials)."""
        config = {k: plain(v) for k, v in config.items()}
        self.study.enqueue_trial(enqueue_params(self.setup.space, config),
                                 user_attrs={"source": source, "fixed_config": config}, skip_if_exists=once)

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
        kill_point("dispatch")
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
            kill_point("trial_files")
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
        kill_point("report")
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
            self.study.tell(job.number, values if state == TrialState.COMPLETE else None, state=optuna_state(state),
                            skip_if_finished=True)
            kill_point("tell")
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
                kill_point("result_written")

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
        best = self._best.after(record, self.records.values())
        self.tracker.search_progress(best.to_json() if best else None)

