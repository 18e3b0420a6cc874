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
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import ray
from ray import tune

from automl.backends.base import SearchBackend
from automl.errors import AutomlError
from automl.trials.records import Progress, SearchSetup, TrialRecord, TrialState
from automl.trials import rundir
from automl.trials.outcome import BestSoFar, FailureStreak
from automl.backends.ray.cluster import STORAGE_DIR, address_is_remote, check_algorithm, check_storage, is_uri, local_addresses, storage_location, trial_resources
from automl.backends.ray.driver import _LIVE, _TrialNumbers, _callback, _mark_interrupted, _settle_paused, _stopper, _trial_dirname
from automl.backends.ray.search import OPTUNA_ALGORITHMS, RAY_DOMAIN_ALGORITHMS, build_search
from automl.backends.ray.trial import _trainable


NUMBERS_FILE = "trial_numbers.json"


RAY_NAMESPACE = "automl"


class RayBackend(SearchBackend):
    """``--backend ray [--address auto|HOST:PORT]``: the search as a Ray Tune experiment."""

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_trial: float | None = None,
                 max_failures: int | None = None, reuse_actors: bool | None = None,
                 simulation: dict | None = None):
        self.address = address
        #: benchmarks/scale_ray.py only: trials walk a simulated learning curve on a private Ray with
        #: logical GPUs (see .simulated); recorded in search.json like the embedded backend's
        self.simulation = simulation
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

    def _connect(self, address: str | None, slots: int = 0) -> bool:
        """Connect this process to Ray; True when it started (or joined) Ray itself and so must let go
        of it when the search ends (a library caller's own ``ray.init`` is left alone)."""
        if ray.is_initialized():
            return False
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
        elif self.simulation is not None:  # a private Ray whose GPUs are logical: the simulated slots
            from automl.backends.ray.simulated import ray_init_options

            ray.init(address="local", include_dashboard=False,
                     **ray_init_options(self.simulation, slots, os.cpu_count() or 1), **kwargs)
        else:
            # A private single-node Ray for this search. address="local" because ray.init() without
            # one joins any cluster named in RAY_ADDRESS or /tmp/ray/ray_current_cluster (someone
            # else's `ray start`), which is what --address auto is for.
            ray.init(address="local", include_dashboard=False,
                     num_cpus=int(os.environ.get("AUTOML_RAY_NUM_CPUS", os.cpu_count() or 1)), **kwargs)
        return True

    @staticmethod
    def _cluster_is_multi_host() -> bool:
        local = local_addresses()
        mine = ray.util.get_node_ip_address()
        return any(n["Alive"] and n["NodeManagerAddress"] not in local | {mine} for n in ray.nodes())

    # -- run ------------------------------------------------------------------------------------------
    def check(self, setup: SearchSetup) -> None:
        check_algorithm(setup.algorithm)
        check_storage(Path(setup.run_dir).resolve(), setup.storage, address_is_remote(self._address()))

    def run(self, setup: SearchSetup, tracker: Any, progress: Progress) -> list[TrialRecord]:
        check_algorithm(setup.algorithm)
        address = self._address()
        if self.simulation is not None and address:
            raise AutomlError("a simulated Ray search runs on a private local Ray, not on --address")
        run_dir = Path(setup.run_dir).resolve()
        check_storage(run_dir, setup.storage, address_is_remote(address))  # before connecting
        storage_path, exp_name = storage_location(setup)
        (run_dir / STORAGE_DIR).mkdir(parents=True, exist_ok=True)
        numbers_path = run_dir / STORAGE_DIR / NUMBERS_FILE

        started_ray = self._connect(address, len(setup.slots))
        try:
            return self._run_connected(setup, tracker, progress, run_dir, numbers_path, storage_path, exp_name)
        finally:
            if started_ray:  # a private Ray's processes end with the search, not with this Python process
                ray.shutdown()

    def _run_connected(self, setup: SearchSetup, tracker: Any, progress: Progress, run_dir: Path,
                       numbers_path: Path, storage_path: str, exp_name: str) -> list[TrialRecord]:
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
            "intervals": [], "max_running": 0,
            # finished trials (search_progress), kept as they finish rather than re-read from the folder
            "records": {r.number: r for r in done_before}, "best": BestSoFar(setup.monitor),
        }
        progress.start(setup, done_before)
        job = {"space": setup.space, "numbers": actor, "run_dir": str(run_dir), "model": setup.model,
               "base_spec": setup.base_spec, "objectives": [(m.metric, m.mode) for m in objectives],
               "max_epochs": None}
        cpus = self.cpus_per_trial or setup.algorithm_settings["cpus_per_trial"]
        function = _trainable
        if self.simulation is not None:  # a trial holds one logical GPU and no CPU
            from automl.backends.ray.simulated import job_settings, simulated_trainable

            job["simulation"], function, cpus = job_settings(self.simulation, setup.algorithm), simulated_trainable, 0.0
        resources = trial_resources(setup, float(ray.cluster_resources().get("GPU", 0)), cpus)
        trainable = tune.with_resources(tune.with_parameters(function, job=job), resources)
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
            fit_started = time.time()
            tuner.fit()
            if self.simulation is not None:
                from automl.backends.ray.simulated import write_summary

                write_summary(_LIVE[str(run_dir)], run_dir, len(setup.slots), fit_started, time.time())
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
