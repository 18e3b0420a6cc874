"""SIMULATION ONLY: an in-process executor on a virtual clock, for ``benchmarks/scale.py``.

It replaces the slot worker processes of the embedded backend (``OptunaBackend(simulation={...})``,
recorded in ``search.json`` as a backend option); everything else is the real controller: the study,
its storage and sampler, the slot threads, the run folder (``metrics.jsonl`` per epoch, ``result.json``,
checkpoints for rungs). A simulated trial trains nothing: its curve and epoch durations come from
:class:`automl.testing.simulated.CurveModel`, and a virtual clock advances by them.

The clock releases one event (an epoch's report, or a trial's end) at a time, in virtual-time order,
and only when the controller is idle: its main loop waits for a result and no slot thread is handling
an event. So every decision the controller makes (sampling a config for a free slot, pruning,
promoting) takes no virtual time, and a slot idles in virtual time only when the controller had no job
to give it. :class:`VirtualCluster` accounts for that: ``idle_with_budget_left`` counts the moments the
controller went back to waiting while a slot was free and the budget still had trials to start; a
correct controller leaves it at 0. The real (wall-clock) cost of each decision is measured by the
benchmark, not charged to the virtual clock.
"""

from __future__ import annotations

import heapq
import threading
from collections import deque
from pathlib import Path
from typing import Any

from automl.plugins import Monitor
from automl.reporting import FileReporter, read_metrics
from automl.testing.simulated import CurveModel, first_epoch, stop_epoch, write_checkpoint
from automl.trials import rundir
from automl.trials.outcome import folder_record
from automl.trials.records import TrialState
from automl.trials.rundir import PREVIOUS_RESULT
from automl.trials.worker import prepare_trial_dir

SUMMARY = "simulation.json"


class VirtualCluster:
    """The virtual clock, its pending events and the slots' busy/idle accounting."""

    def __init__(self, search: Any, model: CurveModel):
        self.search, self.model = search, model
        self.cond = threading.Condition()
        self.now = 0.0
        self._events: list[tuple[float, int, SimulatedWorker]] = []
        self._seq = 0
        self.handling = 0  # events released and not yet handled by the controller
        self.main_waiting = False
        self.results: deque = deque()
        self.busy_s = 0.0
        self.intervals: list[tuple[float, float]] = []  # (start, end) of every job, virtual seconds
        self.idle_with_budget_left = 0
        self.last_new_start = 0.0
        self.started_jobs = 0

    def schedule(self, worker: SimulatedWorker, at: float) -> None:
        with self.cond:
            self._seq += 1
            heapq.heappush(self._events, (at, self._seq, worker))
            self._release()

    def handled(self) -> None:
        with self.cond:
            self.handling -= 1
            self._release()

    def _release(self) -> None:
        """Hand the earliest event to its worker when the controller is idle (lock held)."""
        if self.handling or not self.main_waiting or self.results or not self._events:
            return
        at, _, worker = heapq.heappop(self._events)
        self.now = max(self.now, at)
        self.handling += 1
        worker.released = True
        self.cond.notify_all()

    def wait_for_release(self, worker: SimulatedWorker) -> None:
        with self.cond:
            while not worker.released:
                self.cond.wait()
            worker.released = False

    def controller_waits(self) -> None:
        """The main loop waits for a result: a slot still free now idles while budget is left?"""
        search = self.search
        free = [s for s in range(len(search.workers)) if s not in search.running]
        if free and search.stop_reason is None and search.used() < search.setup.budget_trials:
            self.idle_with_budget_left += 1

    def summary(self) -> dict[str, Any]:
        slots = len(self.search.workers)
        # until the last new trial started, every slot had work to get; after it, slots drain (the tail)
        horizon = self.last_new_start
        busy_before = sum(max(0.0, min(end, horizon) - start) for start, end in self.intervals)
        return {"simulation": True, "slots": slots, "virtual_makespan_s": self.now, "busy_slot_s": self.busy_s,
                "utilisation": self.busy_s / (slots * self.now) if self.now else None,
                "utilisation_while_budget_left": busy_before / (slots * horizon) if horizon else None,
                "last_new_trial_started_at_s": self.last_new_start, "jobs": self.started_jobs,
                "idle_with_budget_left": self.idle_with_budget_left}


class ResultsQueue:
    """The search's results queue: its ``get`` is where the controller goes idle."""

    def __init__(self, cluster: VirtualCluster):
        self.cluster = cluster

    def put(self, item: Any) -> None:
        cluster = self.cluster
        with cluster.cond:
            cluster.results.append(item)
            cluster.handling -= 1  # the trial's end is now the main loop's to handle
            cluster.cond.notify_all()

    def get(self) -> Any:
        cluster = self.cluster
        with cluster.cond:
            if not cluster.results:
                cluster.controller_waits()
            while not cluster.results:
                cluster.main_waiting = True
                cluster._release()
                cluster.cond.wait()
            cluster.main_waiting = False
            return cluster.results.popleft()


class SimulatedWorker:
    """Stands in for a :class:`automl.backends.optuna.workers.SlotWorker`: same calls, no process."""

    def __init__(self, cluster: VirtualCluster, slot: dict, objectives: list[Monitor]):
        self.cluster, self.slot, self.objectives = cluster, slot, objectives
        self.released = False
        self.job: dict | None = None
        self._outbox: deque = deque()

    # the SlotWorker interface
    def ensure(self) -> None:
        pass

    def alive(self) -> bool:
        return True

    def kill(self) -> None:
        self.job = None

    def close(self) -> None:
        pass

    def send(self, msg: dict) -> None:
        op = msg.get("op")
        if op == "run":
            self._start(msg["job"])
        elif op == "reply":
            if msg.get("stop"):
                self._finish(str(msg["stop"]))  # the trial stops at once: no virtual time passes
            else:
                self.epoch += 1
                # scheduled before the report counts as handled: that may release the next event
                # and move the clock
                self.cluster.schedule(self, self.cluster.now + self.epoch_s)
                self.cluster.handled()
        # "prepare": the folder is made when the trial's first epoch ends (prepare_trial_dir)

    def receive(self, deadline: float | None) -> dict:
        if self._outbox:  # the trial's end right after its final report or a stop
            return self._outbox.popleft()
        self.cluster.wait_for_release(self)
        return self._epoch_done()

    # the simulated trial
    def _start(self, job: dict) -> None:
        cluster = self.cluster
        spec = job["spec"]
        self.job, self.config = job, job["config"]
        self.folder = Path(job["trial_dir"])
        self.num_epochs = int(spec["train"]["num_epochs"])
        self.stop_at = stop_epoch(self.num_epochs, job.get("max_epochs"))
        self.first = self.epoch = first_epoch(spec)
        self.epoch_s = cluster.model.epoch_seconds(self.config)
        self.started = cluster.now
        with cluster.cond:
            cluster.started_jobs += 1
            if job.get("kind") == "new":
                cluster.last_new_start = cluster.now
        cluster.schedule(self, cluster.now + self.epoch_s)

    def _epoch_done(self) -> dict:
        if self.epoch == self.first:
            prepare_trial_dir(self.folder)
        value = self.cluster.model.value(self.config, self.epoch, self.num_epochs)
        metric = self.objectives[0].metric
        FileReporter(self.folder).report(self.epoch, {metric: value})
        final = self.epoch >= self.stop_at - 1
        if final:
            self._finish(None)
        return {"op": "report", "epoch": self.epoch, "metrics": {metric: value}, "final": final}

    def _finish(self, stop: str | None) -> None:
        cluster, folder = self.cluster, self.folder
        records = read_metrics(folder)
        done = max(int(r["epoch"]) for r in records) + 1 if records else 0
        state = TrialState(stop) if stop else TrialState.COMPLETE
        if not stop and self.job.get("max_epochs") and done < self.num_epochs:
            state = TrialState.PAUSED
            write_checkpoint(folder, done - 1)
        ran = self.epoch - self.first + 1
        duration = cluster.now - self.started
        record = folder_record(folder, self.job["extra"].get("number", -1), state, self.objectives,
                               previous=rundir.read_json_or(folder / PREVIOUS_RESULT, {}), epochs_now=ran,
                               duration_s=duration, gpus=len(self.slot["gpus"]), params=self.config,
                               extra=self.job.get("extra"), records=records)
        with cluster.cond:
            cluster.busy_s += duration
            cluster.intervals.append((self.started, cluster.now))
        self._outbox.append({"op": "done", "result": record.to_json()})


def simulate(search: Any, settings: dict[str, Any]) -> VirtualCluster:
    """Put ``search`` (an embedded-backend search, before it runs) on a virtual cluster."""
    model = CurveModel(seed=int(settings.get("seed", 0)), epoch_s=float(settings.get("epoch_s", 60.0)))
    cluster = VirtualCluster(search, model)
    search.results = ResultsQueue(cluster)
    search.workers = [SimulatedWorker(cluster, slot, search.setup.objectives) for slot in search.setup.slots]
    return cluster


def write_summary(cluster: VirtualCluster, run_dir: Path) -> None:
    rundir.write_json(Path(run_dir) / SUMMARY, cluster.summary())
