"""The Ray Tune backend: the same search as the embedded one, on a Ray cluster.

Supported Ray: ``ray[tune] >=2.41,<3`` (the pin in pyproject.toml; tested on 2.60.0 only). 2.41 is where
Tune got its own ``tune.report``/``tune.Checkpoint``/``tune.RunConfig`` apart from Ray Train. Every Ray
call of the project lives in this module, against the ``ray.tune`` API of that range: ``tune.Tuner`` /
``Tuner.restore``, ``tune.report(metrics, checkpoint=tune.Checkpoint)``, ``tune.get_checkpoint()``,
``tune.get_context()``, ``tune.RunConfig(storage_path=...)``, ``tune.FailureConfig``. Not used
because they are gone or going: ``ray.air.session``, ``tune.report(**kwargs)``, local mode,
``ray.train.RunConfig`` in Tune, ``MLflowLoggerCallback`` (flat runs; we keep parent/child runs).

How it fits (ARCHITECTURE.md): the controller resolves a :class:`SearchSetup` and calls
:meth:`RayBackend.run`; the trials run as Tune trials, each one calling
:func:`automl.trials.worker.run_trial` in its Ray worker with a :class:`TuneReporter`, which writes the
same ``trials/<NNNN>/`` files as the embedded backend and forwards every epoch to Tune
(``tune.report``, with the epoch's checkpoint). A driver-side Tune callback
(:class:`RunFolderCallback`) turns Tune's events into the tracker and progress hooks, writes
``result.json`` for trials that Tune stopped or paused itself, and keeps trial numbers stable.

Trial numbers: Tune names trials by random ids; the run folder numbers them 0, 1, 2... in Tune's
creation order (the baseline is trial 0), never reusing a number after a resume. A tiny named actor
(:class:`_TrialNumbers`) hands out the numbers, so the driver callback and the trial's worker (possibly
on another node) agree on them; the driver persists the mapping in ``ray/trial_numbers.json``.

Algorithms (``--algorithm``): tpe, gp, cmaes, qmc, nsga2 through ``OptunaSearch`` with the embedded
backend's Optuna samplers and the space's define-by-run ``suggest`` (weights and conditions kept);
random through ``BasicVariantGenerator`` over ``space.to_ray()``; asha (``ASHAScheduler`` + TPE),
hyperband (``HyperBandScheduler``, random; it pauses trials and resumes them from their Tune
checkpoint), bohb (``HyperBandForBOHB`` + ``TuneBOHB``, needs ``pip install hpbandster ConfigSpace``)
and pbt (``PopulationBasedTraining``, explored configs repaired to pass ``space.check``).
Grid search is not offered here (use the embedded backend).

Storage: by default Tune's experiment lives in ``<run>/ray/`` (the "backend storage" entry of the run
folder). Trial folders are written by the node that runs the trial, so on a cluster with other
hosts both ``--output`` and ``--storage`` must be on a filesystem every node mounts (NFS, Lustre,
...); ``--storage`` may also be an object-store URI (``s3://``, ``gs://``). A remote cluster with a
local path is refused before anything starts.

Resume (``--resume``): ``Tuner.restore(resume_unfinished=True, resume_errored=True)`` from the Tune
experiment state, which Tune saves every 2 s here (``TUNE_GLOBAL_CHECKPOINT_S``); a trial that was
running continues from its latest Tune checkpoint under the same number. Failed trials are retried
``--setting retries=N`` times (``FailureConfig``); ``--max-failures`` in a row stop the search.

Known limit: a trial that starts after Tune's last state save and is cut off by a driver crash is
unknown to the restored experiment; it is recorded failed (interrupted) and Tune samples a new trial
in its place, so such a search ends with one more trial folder than its budget.

Every node must have this package (and the trainer plugins) installed in the Python that
``ray start`` runs, as with any Ray job; no code is shipped at run time.

What could not run on the development machine (no GPU): GPU resources per trial are requested from
Ray (``{"GPU": g}``, fractional for ``--trials-per-gpu``) and Ray sets ``CUDA_VISIBLE_DEVICES`` for the
trial, and the trial's spec gets ``train.num_gpus``/``gpu_ids`` to match, which the trainers' device
mapping (automl.training.devices) turns into DDP. That path is written against Ray's API but ran here
only with CPU resources. Known gap: Lightning's default DDP launcher re-executes ``sys.argv``, which
inside a Ray worker is Ray's own worker script; multi-GPU trials under Ray need a spawn-style launcher
in the trainers' DDP strategy, which is not done (single-GPU and fractional-GPU trials are unaffected).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.search import Searcher

from automl.backends.base import SearchBackend
from automl.trials.records import Progress, SearchSetup, TrialRecord, TrialState
from automl.errors import AutomlError
from automl.plugins import Monitor
from automl.reporting import FileReporter
from automl.trials import rundir, worker
from automl.trials.algorithms import RAY, check_backend, make_sampler
from automl.trials.outcome import FailureStreak, best_so_far, epoch_metrics, folder_record
from automl.spec import apply_config, flatten

#: the run folder's backend-storage entry for this backend
STORAGE_DIR = "ray"
NUMBERS_FILE = "trial_numbers.json"
RAY_NAMESPACE = "automl"
#: Optuna-sampler algorithms that OptunaSearch can drive
OPTUNA_ALGORITHMS = ("tpe", "gp", "cmaes", "qmc", "nsga2")
#: algorithms whose trials Tune samples from ``space.to_ray()`` (the rest are driven by OptunaSearch)
RAY_DOMAIN_ALGORITHMS = ("random", "hyperband", "bohb", "pbt")
#: filesystems that every node of a cluster can mount (shared storage)
SHARED_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "cephfs",
                      "glusterfs", "fuse.glusterfs", "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.juicefs",
                      "fuse.ceph", "wekafs", "panfs", "9p", "virtiofs")
STOPPED_REASON = "stopped by the Ray Tune scheduler"


# ------------------------------------------------------------------------------------------------
# Checks that need no Ray: algorithm names, storage rules
# ------------------------------------------------------------------------------------------------
def check_algorithm(algorithm: str) -> None:
    check_backend(algorithm, RAY)
    if algorithm == "bohb":
        try:
            import ConfigSpace  # noqa: F401
            import hpbandster  # noqa: F401
        except ImportError:
            raise AutomlError("--algorithm bohb with --backend ray needs Ray Tune's TuneBOHB, which needs "
                              "`pip install hpbandster ConfigSpace` (not installed); use --algorithm asha or "
                              "hyperband, or --backend optuna for bohb") from None


def is_uri(path: str | None) -> bool:
    return bool(path) and "://" in str(path) and not str(path).startswith("file://")


def local_addresses() -> set[str]:
    addrs = {"127.0.0.1", "localhost", "::1", "0.0.0.0", socket.gethostname()}
    with contextlib.suppress(OSError):
        addrs.update(socket.gethostbyname_ex(socket.gethostname())[2])
    with contextlib.suppress(Exception):
        import psutil

        for entries in psutil.net_if_addrs().values():
            addrs.update(e.address.split("%")[0] for e in entries)
    return addrs


def address_is_remote(address: str | None) -> bool:
    """True when ``--address`` names a Ray head on another host (``auto``/None are local)."""
    if not address or address in ("auto", "local"):
        return False
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    if host in local_addresses() or host.startswith("127."):
        return False
    with contextlib.suppress(OSError):
        if socket.gethostbyname(host) in local_addresses():
            return False
    return True


def filesystem_type(path: Path) -> str:
    """The fstype of the mount that holds ``path`` (from /proc/mounts; "" if unknown)."""
    path = Path(path).resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    best, fstype = "", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3:
                mount = parts[1].replace("\\040", " ")
                if (str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
                    best, fstype = mount, parts[2]
    return fstype


def is_shared_path(path: str | Path) -> bool:
    return is_uri(str(path)) or filesystem_type(Path(path)) in SHARED_FILESYSTEMS


def check_storage(run_dir: Path, storage: str | None, remote: bool) -> None:
    """With a cluster on other hosts, trials run elsewhere: refuse local paths at once."""
    if not remote:
        return
    bad = []
    if storage is None or not is_shared_path(storage):
        bad.append(f"Ray storage {storage or Path(run_dir) / STORAGE_DIR}")
    if not is_shared_path(run_dir):
        bad.append(f"run folder {run_dir}")
    if bad:
        raise AutomlError(
            f"--backend ray on a remote cluster needs storage every node can reach, but the {' and the '.join(bad)} "
            "is on this machine's local disk; pass --storage on a shared filesystem mounted on every node "
            "(NFS, e.g. --storage /mnt/nfs/automl) or an object-store URI (e.g. --storage s3://bucket/automl), "
            "and --output on the shared filesystem")


def storage_location(setup: SearchSetup) -> tuple[str, str]:
    """(storage_path, experiment name) for ``tune.RunConfig``."""
    if setup.storage:
        if is_uri(setup.storage):
            return setup.storage, setup.name
        return str(Path(setup.storage.removeprefix("file://")).expanduser().resolve()), setup.name
    return str(Path(setup.run_dir).resolve()), STORAGE_DIR


def trial_resources(setup: SearchSetup, cluster_gpus: float, cpus_per_trial: float = 1.0) -> dict[str, float]:
    """Ray resources of one trial: CPUs, and GPUs (``--gpus-per-trial`` G, or 1/K for ``--trials-per-gpu``
    K) when the cluster has GPUs. Ray sets ``CUDA_VISIBLE_DEVICES`` to the GPUs it grants; a trial with
    several GPUs runs the trainer's DDP over them."""
    res = {"cpu": float(cpus_per_trial)}
    if cluster_gpus > 0 and setup.gpus_per_trial > 0:
        if setup.gpus_per_trial > 1:
            if setup.trials_per_gpu > 1:
                raise AutomlError("--gpus-per-trial > 1 and --trials-per-gpu > 1 exclude each other")
            res["gpu"] = float(setup.gpus_per_trial)
        else:
            res["gpu"] = 1.0 / max(1, setup.trials_per_gpu)
    return res


# ------------------------------------------------------------------------------------------------
# Inside the trial's Ray worker
# ------------------------------------------------------------------------------------------------
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
        tmp = target.with_name(".resume.ckpt.tmp")
        shutil.copy2(source, tmp)
        os.replace(tmp, target)
    return target


def _trainable(config: dict[str, Any], job: dict[str, Any]) -> None:
    """The Tune function trainable: one trial (or one more stretch of it) through ``run_trial``."""


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
                                     "node_id": _node_id()})
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


# ------------------------------------------------------------------------------------------------
# Driver side
# ------------------------------------------------------------------------------------------------
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
        if trial.trial_id not in live["numbers"]:
            order = [t for t in (trials or []) if t.trial_id not in live["numbers"]]
            upto = order[: order.index(trial) + 1] if trial in order else [trial]
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
        if not (tdir / rundir.CONFIG).exists():
            rundir.write_json(tdir / rundir.CONFIG, params)
        with live["lock"]:
            taken = {r["slot"] for r in live["running"].values()}
            slot = next(i for i in range(len(taken) + 1) if i not in taken)
            live["running"][trial.trial_id] = {"slot": slot, "started": time.time(), "epochs": 0}
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
        for trial in trials:  # Tune has no pause hook: watch for trials that became PAUSED
            if trial.status == Trial.PAUSED and trial.trial_id in live["running"]:
                self._finish(trial, TrialState.PAUSED)

    def _finish(self, trial, state: str | None) -> None:
        """The stretch ends. ``state`` None: Tune says complete (ran to its end, or stopped by the
        scheduler or the trial timeout); FAILED: errored for good; PAUSED: paused at a rung."""
        live = self.live
        with live["lock"]:
            stretch = live["running"].pop(trial.trial_id, None)
        if stretch is None:  # this stretch was already recorded
            return
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
        records = rundir.read_trials(Path(self.run_dir))
        best = best_so_far(records, live["monitor"])
        live["tracker"].search_progress([r.to_json() for r in records], best.to_json() if best else None)


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


# ------------------------------------------------------------------------------------------------
# Search algorithms and schedulers
# ------------------------------------------------------------------------------------------------
def _fixed_points(setup: SearchSetup, param_space: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Trial 0 (the defaults) then the warm-start configs, in the space's Tune form.

    With a ``param_space`` Tune resolves every ``tune.sample_from`` entry of a trial's config after the
    searcher's point is merged in, and a plain value where it expects the entry's placeholder crashes
    it (``'int' object is not subscriptable`` in ``ray.tune.impl.placeholder``). A parameter that
    depends on another is such an entry: its point carries the helper units it decodes from
    (``to_ray_config``) and leaves the value itself to Tune's resolution, which decodes the same value.
    """
    from ray.tune.search.sample import Function

    points = [dict(setup.space.defaults()), *[dict(c) for c in setup.warm_start_configs]]
    points = [setup.space.to_ray_config(p) for p in points]
    if param_space is None:  # a searcher without a param_space: its point is the trial's whole config
        return points
    derived = {name for name, domain in param_space.items() if isinstance(domain, Function)}
    return [{k: v for k, v in p.items() if k not in derived} for p in points]


class CheckedSearcher(Searcher):
    """Serves the fixed points first (baseline, warm start), then the inner searcher's suggestions,
    re-asking it (and telling it the rejected one failed) when a suggestion fails ``space.check``."""

    def __init__(self, inner, space, fixed: list[dict[str, Any]], metric, mode, max_redraws: int = 50):
        super().__init__(metric=metric, mode=mode)
        self.inner, self.space, self.fixed = inner, space, list(fixed)
        self.max_redraws = max_redraws
        self.fixed_trials: set[str] = set()

    def set_search_properties(self, metric, mode, config, **spec):
        return self.inner.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id):
        if self.fixed:
            self.fixed_trials.add(trial_id)
            return self.fixed.pop(0)
        for attempt in range(self.max_redraws + 1):
            inner_id = trial_id if attempt == 0 else f"{trial_id}-redraw{attempt}"
            config = self.inner.suggest(inner_id)
            if config is None or config == Searcher.FINISHED:
                return config
            if not self.space.check(_params_of(self.space, config)):
                if attempt:  # tell Tune's bookkeeping about the id it will report under
                    self._alias(trial_id, inner_id)
                return config
            self.inner.on_trial_complete(inner_id, error=True)
        return config  # the trial records the problems and fails without training

    def _alias(self, trial_id, inner_id):
        self.__dict__.setdefault("aliases", {})[trial_id] = inner_id

    def _inner_id(self, trial_id):
        return self.__dict__.get("aliases", {}).get(trial_id, trial_id)

    def on_trial_result(self, trial_id, result):
        if trial_id not in self.fixed_trials:
            self.inner.on_trial_result(self._inner_id(trial_id), result)

    def on_trial_complete(self, trial_id, result=None, error=False):
        if trial_id not in self.fixed_trials:
            self.inner.on_trial_complete(self._inner_id(trial_id), result=result, error=error)

    def on_pause(self, trial_id):  # HyperBandForBOHB
        if hasattr(self.inner, "on_pause") and trial_id not in self.fixed_trials:
            self.inner.on_pause(self._inner_id(trial_id))

    def on_unpause(self, trial_id):
        if hasattr(self.inner, "on_unpause") and trial_id not in self.fixed_trials:
            self.inner.on_unpause(self._inner_id(trial_id))

    def save(self, checkpoint_path):

        with open(checkpoint_path, "wb") as fh:
            ray.cloudpickle.dump(self.__dict__, fh)

    def restore(self, checkpoint_path):

        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(ray.cloudpickle.load(fh))


def _plain_domains(space: Any, param_space: Mapping[str, Any]) -> dict[str, Any]:
    """PBT's ``hyperparam_mutations``: the searched names with a sampling domain (not derived values,
    and not the helper units a derived value was decoded from: the trial's config holds the decoded
    value, so mutating its helper would change nothing). A choice goes in as the list of its options:
    PBT resamples or shifts a list, but multiplies a Domain's value by 0.8/1.2, which for a string
    choice is a TypeError inside Tune."""
    from ray.tune.search.sample import Categorical, Float, Integer

    out: dict[str, Any] = {}
    for name, domain in param_space.items():
        if name not in set(space.names) or not isinstance(domain, (Float, Integer, Categorical)):
            continue
        if isinstance(domain, Categorical):
            options: list[Any] = []
            for option in domain.categories:  # a weighted choice repeats its options
                if option not in options:
                    options.append(option)
            out[name] = options
        else:
            out[name] = domain
    return out


class _ExploreRepair:
    """PBT's ``custom_explore_fn``: keep an explored config that passes ``space.check``; otherwise
    resample the whole config from the space's always-valid define-by-run sampler."""

    def __init__(self, space, seed: int | None):
        self.space, self.seed, self.count = space, seed, 0

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        if not self.space.check(_params_of(self.space, config)):
            return config
        self.count += 1
        seed = None if self.seed is None else self.seed * 7919 + self.count
        fresh = self.space.to_ray_config(self.space.sample(seed))
        return {**config, **fresh}


def build_search(setup: SearchSetup, skip_fixed: int = 0) -> tuple[Any, Any, dict[str, Any] | None]:
    """(search_alg, scheduler, param_space) for the setup's algorithm; the first ``skip_fixed`` fixed
    points (baseline, warm start) are left out because those trials exist already."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, PopulationBasedTraining
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    algorithm, settings, space = setup.algorithm, setup.algorithm_settings, setup.space
    metric = setup.monitor.metric if not setup.multi_objective else [m.metric for m in setup.objectives]
    mode = setup.monitor.mode if not setup.multi_objective else [m.mode for m in setup.objectives]
    max_t = max(1, int(setup.max_epochs))
    param_space = space.to_ray() if algorithm in RAY_DOMAIN_ALGORITHMS else None
    fixed = _fixed_points(setup, param_space)[skip_fixed:]

    def optuna_search(name: str):
        sampler = make_sampler(name, setup.seed, space, len(setup.objectives))
        # define-by-run: the space's own suggest keeps option weights and conditions
        inner = OptunaSearch(space=space.suggest, metric=metric, mode=mode, sampler=sampler)
        return CheckedSearcher(inner, space, fixed, metric, mode)

    if algorithm in OPTUNA_ALGORITHMS:
        return optuna_search(algorithm), FIFOScheduler(), None
    if algorithm == "random":
        return (BasicVariantGenerator(points_to_evaluate=fixed, random_state=setup.seed,
                                      max_concurrent=setup.workers), FIFOScheduler(), param_space)
    if algorithm == "asha":
        return (optuna_search("asha"),
                ASHAScheduler(time_attr="training_iteration", metric=metric, mode=mode, max_t=max_t,
                              grace_period=settings["min_epochs"], reduction_factor=settings["reduction_factor"]),
                None)
    if algorithm == "hyperband":
        # Tune's HyperBand pauses trials at a rung and resumes the promoted ones from their checkpoint
        return (BasicVariantGenerator(points_to_evaluate=fixed, random_state=setup.seed),
                HyperBandScheduler(time_attr="training_iteration", metric=metric, mode=mode, max_t=max_t,
                                   reduction_factor=settings["reduction_factor"]), param_space)
    if algorithm == "bohb":
        from ray.tune.schedulers import HyperBandForBOHB
        from ray.tune.search.bohb import TuneBOHB

        inner = TuneBOHB(metric=metric, mode=mode, seed=setup.seed)
        return (CheckedSearcher(inner, space, fixed, metric, mode),
                HyperBandForBOHB(time_attr="training_iteration", metric=metric, mode=mode, max_t=max_t,
                                 reduction_factor=settings["reduction_factor"]), param_space)
    if algorithm == "pbt":
        mutations = _plain_domains(space, param_space)
        if not mutations:
            raise AutomlError("--algorithm pbt: the space has no parameter PBT can perturb")
        return (BasicVariantGenerator(points_to_evaluate=fixed, random_state=setup.seed,
                                      max_concurrent=setup.workers),
                PopulationBasedTraining(time_attr="training_iteration", metric=metric, mode=mode,
                                        perturbation_interval=settings["perturbation_interval"],
                                        hyperparam_mutations=mutations,
                                        custom_explore_fn=_ExploreRepair(space, setup.seed),
                                        quantile_fraction=settings["quantile_fraction"],
                                        resample_probability=settings["resample_probability"], synch=False),
                param_space)
    check_backend(algorithm, RAY)  # raises: the registry names the backends an algorithm runs on
    raise AssertionError(f"the registry offers {algorithm} on Ray but build_search does not map it")


# ------------------------------------------------------------------------------------------------
# The backend
# ------------------------------------------------------------------------------------------------
class RayBackend(SearchBackend):
    """``--backend ray [--address auto|HOST:PORT]``: the search as a Ray Tune experiment."""

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_trial: float | None = None,
                 max_failures: int | None = None, reuse_actors: bool | None = None):
        self.address = address
        self.cpus_per_trial = cpus_per_trial
        self.max_failures = max_failures
        # Reusing a trial's actor (process) for the next trial saves its start-up (see
        # benchmarks/overhead_ray.py), but needs the previous trial's thread to end within Tune's 2 s
        # reset window. A trial that Tune stops mid-epoch (schedulers, --trial-timeout) often does
        # not, and Tune then aborts the *next* trial (_AbortTrialExecution). None: reuse only where
        # Tune never stops a trial (the Optuna samplers and random, without a trial timeout).
        self.reuse_actors = reuse_actors
        self.stop_reason: str | None = None

    # -- pieces -------------------------------------------------------------------------------------
    def _address(self) -> str | None:
        return self.address or os.environ.get("AUTOML_RAY_ADDRESS")

    def _connect(self, address: str | None):

        if ray.is_initialized():
            return
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # the run folder and the tracker are the record: no CSV/JSON/TensorBoard loggers, no console table
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        os.environ.setdefault("TUNE_RESULT_BUFFER_LENGTH", "1")  # deliver every epoch at once (schedulers, tracker)
        # how often Tune saves the experiment state that --resume restores after a driver crash
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
        kwargs: dict[str, Any] = {"namespace": RAY_NAMESPACE, "log_to_driver": False, "logging_level": "ERROR",
                                  "configure_logging": True}
        if address:  # "auto" joins the cluster `ray start` made on this machine
            ray.init(address=address, **kwargs)
        else:
            # A private single-node Ray for this search. address="local" because ray.init() without
            # one joins any cluster named in RAY_ADDRESS or /tmp/ray/ray_current_cluster (someone
            # else's `ray start`), which is what --address auto is for.
            ray.init(address="local", include_dashboard=False,
                     num_cpus=int(os.environ.get("AUTOML_RAY_NUM_CPUS", os.cpu_count() or 1)), **kwargs)

    @staticmethod
    def _cluster_is_multi_host() -> bool:

        local = local_addresses()
        mine = ray.util.get_node_ip_address()
        return any(n["Alive"] and n["NodeManagerAddress"] not in local | {mine} for n in ray.nodes())

    # -- run ------------------------------------------------------------------------------------------
    def run(self, setup: SearchSetup, tracker: Any, progress: Progress) -> list[TrialRecord]:


        check_algorithm(setup.algorithm)
        address = self._address()
        run_dir = Path(setup.run_dir).resolve()
        check_storage(run_dir, setup.storage, address_is_remote(address))  # before connecting
        storage_path, exp_name = storage_location(setup)
        (run_dir / STORAGE_DIR).mkdir(parents=True, exist_ok=True)
        numbers_path = run_dir / STORAGE_DIR / NUMBERS_FILE

        self._connect(address)
        check_storage(run_dir, setup.storage, self._cluster_is_multi_host())

        numbers = {k: int(v) for k, v in rundir.read_json_or(numbers_path, {}).items()} if setup.resume else {}
        existing = [int(p.name) for p in rundir.trials_root(run_dir).glob("[0-9]*") if p.name.isdigit()]
        next_number = max([*numbers.values(), *existing, -1]) + 1
        actor_name = f"automl-trial-numbers-{abs(hash(str(run_dir))) % 10**10}-{os.getpid()}"
        actor = _TrialNumbers.options(name=actor_name, namespace=RAY_NAMESPACE).remote(numbers, next_number)

        done_before = [r for r in rundir.read_trials(run_dir) if r.state != TrialState.RUNNING] if setup.resume else []
        objectives = setup.objectives
        _LIVE[str(run_dir)] = {
            "tracker": tracker, "progress": progress, "space": setup.space, "actor": actor, "numbers": numbers,
            "numbers_path": str(numbers_path), "lock": threading.Lock(), "running": {},
            "max_epochs": setup.max_epochs, "monitor": setup.monitor,
            "objectives": objectives, "failures": FailureStreak(setup.max_consecutive_failures), "stop": None,
            "trial_timeout_s": setup.trial_timeout_s,
            "checkpoints_to_keep": setup.algorithm_settings["ray_checkpoints_to_keep"],
        }
        progress.start(setup, done_before)
        job = {"space": setup.space, "numbers": actor, "run_dir": str(run_dir), "model": setup.model,
               "base_spec": setup.base_spec, "objectives": [(m.metric, m.mode) for m in objectives],
               "max_epochs": None}
        resources = trial_resources(setup, float(ray.cluster_resources().get("GPU", 0)),
                                    self.cpus_per_trial or setup.algorithm_settings["cpus_per_trial"])
        trainable = tune.with_resources(tune.with_parameters(_trainable, job=job), resources)
        experiment = f"{storage_path.rstrip('/')}/{exp_name}"
        try:
            on_disk = rundir.read_trials(run_dir)
            if setup.resume and tune.Tuner.can_restore(experiment):
                # finished trials stay finished; interrupted and errored ones go on from their latest
                # Tune checkpoint under the same trial id, hence the same number
                tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True,
                                           resume_errored=True, param_space=self._param_space(setup))
                progress.message(f"resuming the Ray Tune experiment in {experiment}")
            else:
                # no Ray state (killed before Tune first saved it, or a fresh search): the budget counts
                # the trials already in the folder; interrupted ones cannot be resumed without it
                for record in on_disk:
                    if record.state == TrialState.RUNNING:
                        _mark_interrupted(run_dir, record, setup)
                remaining = setup.budget_trials - len(on_disk)
                if remaining <= 0:
                    return rundir.read_trials(run_dir)
                tuner = self._new_tuner(setup, trainable, storage_path, exp_name, run_dir,
                                        num_samples=remaining, skip_fixed=len(on_disk))
            tuner.fit()
            _settle_paused(run_dir, setup)
            for record in rundir.read_trials(run_dir):
                if record.state == TrialState.RUNNING:  # started after Tune last saved its state, then the
                    _mark_interrupted(run_dir, record, setup)  # driver died: Tune does not know it
            if not setup.keep_checkpoints and not setup.storage and not _LIVE[str(run_dir)].get("stop"):
                # finished: Tune's copies of the trial checkpoints (for pause/retry/resume) are not
                # needed any more; the trial folders keep their own for promotion
                for folder in (run_dir / STORAGE_DIR).glob("trial_*/checkpoint_*"):
                    shutil.rmtree(folder, ignore_errors=True)
            self.stop_reason = _LIVE[str(run_dir)].get("stop")
            if self.stop_reason:
                progress.message(self.stop_reason)
        finally:
            with contextlib.suppress(Exception):
                rundir.write_json(numbers_path, ray.get(actor.snapshot.remote()))
            with contextlib.suppress(Exception):
                ray.kill(actor)
            _LIVE.pop(str(run_dir), None)
        return rundir.read_trials(run_dir)

    def _reuse(self, setup: SearchSetup) -> bool:
        if self.reuse_actors is not None:
            return self.reuse_actors
        if setup.algorithm_settings.get("reuse_actors") is not None:
            return setup.algorithm_settings["reuse_actors"]
        return setup.algorithm in (*OPTUNA_ALGORITHMS, "random") and not setup.trial_timeout_s

    def _param_space(self, setup: SearchSetup) -> dict[str, Any] | None:
        if setup.algorithm in RAY_DOMAIN_ALGORITHMS:
            return setup.space.to_ray()
        return None

    def _new_tuner(self, setup: SearchSetup, trainable, storage_path: str, exp_name: str, run_dir: Path,
                   num_samples: int, skip_fixed: int = 0):
        search_alg, scheduler, param_space = build_search(setup, skip_fixed)
        max_failures = self.max_failures
        if max_failures is None:  # --setting retries=N: Tune retries a failed trial from its checkpoint
            max_failures = setup.algorithm_settings["retries"]
        # metric/mode live in the searcher and scheduler (Tune refuses them twice)
        tune_config = tune.TuneConfig(
            search_alg=search_alg, scheduler=scheduler, num_samples=num_samples,
            # paused trials count as live for Tune's concurrency limits: with pausing schedulers a limit
            # deadlocks a bracket, so there the trial resources alone bound how many run at once
            max_concurrent_trials=None if setup.algorithm in ("hyperband", "bohb") else setup.workers,
            time_budget_s=setup.time_budget_s,
            reuse_actors=self._reuse(setup), trial_name_creator=_trial_dirname, trial_dirname_creator=_trial_dirname)
        run_config = tune.RunConfig(
            name=exp_name, storage_path=storage_path, verbose=0, log_to_file=False,
            callbacks=[_callback(run_dir)], stop=_stopper(run_dir, setup.trial_timeout_s),
            failure_config=tune.FailureConfig(max_failures=max_failures),
            # Tune needs a trial's latest checkpoint (pause/resume, retries, PBT), but after a driver
            # crash it restores the one named in its last saved state (every 2 s), which may be a few
            # epochs old: keep 4 (--setting ray_checkpoints_to_keep=N for epochs much shorter than
            # 0.5 s). The best epoch's checkpoint stays in the trial folder for promotion. On local
            # storage RunFolderCallback.on_checkpoint deletes the older ones (why not Tune: there).
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=setup.algorithm_settings["ray_checkpoints_to_keep"] if is_uri(storage_path) else None))
        return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)
