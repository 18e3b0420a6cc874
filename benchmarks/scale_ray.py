"""Decisions at scale on the Ray backend: the scale benchmark's simulated trials through Ray Tune (issue 18).

The same simulation as ``benchmarks/scale.py`` (a seeded config -> learning-curve model, 9 epochs of
~60 s x width/4, on ``--gpus`` slots), through ``--backend ray``: the real ``Tuner``, searcher and
scheduler (OptunaSearch with our sampler, ASHA), driver callback, trial numbers and run folder, on a
private local Ray started with ``num_gpus=<slots>`` as a logical resource, each trial holding
``{"GPU": 1}`` (:mod:`automl.backends.ray.simulated`, flagged ``simulation`` in ``search.json``). Ray has no
virtual clock: a trial sleeps ``epoch_s x time_scale`` per epoch (``--time-scale``, default 0.02: a 60-s
epoch takes 1.2 s), so the wall figures include the real driver, Ray's scheduling and the workers.

Measured, with the same structure as the embedded benchmark:

* decision latency on the driver: the searcher's ``suggest`` (ask) and ``on_trial_complete`` (tell),
  wall ms and the driver thread's CPU ms (``time.thread_time``), by trial number; p50/p99 over the
  trials numbered in the last 10 % before 100, 1k, 5k, 10k (``scale.DecisionTimer``, shared);
* the most trials running at once and the utilisation (busy trial-seconds over slots x wall; whole run,
  and from the first trial's start to the last new trial's start, i.e. after Ray's start-up) from the
  driver callback's trial stretches (``simulation.json``);
* the driver's peak RSS and the whole Ray's (the driver and every process under it: GCS, raylet,
  workers; RSS summed, so shared pages count once per process), sampled every 2 s, with the process count;
* the Tune experiment folder's size (``<run>/ray``), the run folder's file count;
* ``automl status --json`` and ``--resume`` of the finished run, each in a fresh process.

Each search runs in a child process (its RSS is its own); one Ray at a time, shut down by the search.

Reproduce:  .venv/bin/python benchmarks/scale.py --backends ray --trials 500 --algorithms tpe
            (or directly: .venv/bin/python benchmarks/scale_ray.py --trials 500 --algorithms tpe)
Options: ``--time-scale``, ``--reuse-actors on|off`` (default: the backend's choice: on for tpe/random),
``--cpus N`` (CPUs Ray is told it has), ``--profile`` (cProfile of the search's driver into
``<out>/ray-<algorithm>.prof``). Writes ``<out>/ray-<algorithm>.json`` (default benchmarks/results/scale/).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from scale import CHECKPOINTS, TARGETS, DecisionTimer, quality, setup_for, timed_child  # noqa: E402


class RayDecisionTimer(DecisionTimer):
    """:class:`scale.DecisionTimer` on the Ray driver: ask = the searcher's ``suggest``, tell = its
    ``on_trial_complete`` (``CheckedSearcher``, around OptunaSearch), by Tune trial id until
    :meth:`renumber` maps them to the run folder's trial numbers."""

    def install(self) -> None:
        from automl.backends.ray.search import CheckedSearcher

        suggest, complete = CheckedSearcher.suggest, CheckedSearcher.on_trial_complete
        timer = self

        def timed_suggest(self, trial_id):
            started, cpu = time.perf_counter(), time.thread_time()
            out = suggest(self, trial_id)
            if out is not None:
                timer.ask[trial_id] = 1000 * (time.perf_counter() - started)
                timer.ask_cpu[trial_id] = 1000 * (time.thread_time() - cpu)
            return out

        def timed_complete(self, trial_id, result=None, error=False):
            started, cpu = time.perf_counter(), time.thread_time()
            out = complete(self, trial_id, result=result, error=error)
            timer.tell.setdefault(trial_id, 1000 * (time.perf_counter() - started))
            timer.tell_cpu.setdefault(trial_id, 1000 * (time.thread_time() - cpu))
            return out

        CheckedSearcher.suggest, CheckedSearcher.on_trial_complete = timed_suggest, timed_complete

    def renumber(self, numbers: dict[str, int]) -> None:
        for table in (self.ask, self.tell, self.ask_cpu, self.tell_cpu):
            renamed = {numbers[k]: v for k, v in table.items() if k in numbers}
            table.clear()
            table.update(renamed)


class RssSampler(threading.Thread):
    """Peak RSS of this process and of this process plus everything under it (the private Ray)."""

    def __init__(self, every_s: float = 2.0):
        super().__init__(daemon=True)
        self.every_s, self.stop = every_s, threading.Event()
        self.driver_mb = self.ray_mb = 0.0
        self.processes = 0

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self.stop.wait(self.every_s):
            total, count = me.memory_info().rss, 1
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                    count += 1
                except psutil.Error:
                    continue
            self.driver_mb = max(self.driver_mb, me.memory_info().rss / 2**20)
            if total / 2**20 > self.ray_mb:
                self.ray_mb, self.processes = total / 2**20, count


def backend_options(args) -> dict:
    options = {"simulation": {"seed": args.seed, "epoch_s": 60.0, "time_scale": args.time_scale,
                              **({"cpus": args.cpus} if args.cpus else {})}}
    if args.reuse_actors != "auto":
        options["reuse_actors"] = args.reuse_actors == "on"
    return options


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def one_search(args, algorithm: str) -> dict:
    """Run one simulated Ray search in this process; its figures."""
    from automl.search.controller import run_search
    from automl.tracking import NullTracker
    from automl.trials import rundir

    timer = RayDecisionTimer()
    timer.install()
    setup = setup_for(args, algorithm, prefix="ray-")
    sampler = RssSampler()
    sampler.start()
    profile = None
    if args.profile:
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    started = time.perf_counter()
    try:
        run_search(setup, backend="ray", backend_options=backend_options(args), tracker=NullTracker(),
                   promote_best=False)
    finally:
        wall = time.perf_counter() - started
        if profile is not None:
            profile.disable()
            profile.dump_stats(str(Path(args.out) / f"ray-{algorithm}.prof"))
        sampler.stop.set()
    run_dir = setup.run_dir
    timer.renumber({k: int(v) for k, v in rundir.read_json(run_dir / "ray" / "trial_numbers.json").items()})
    records = rundir.read_trials(run_dir)
    return {
        "backend": "ray", "algorithm": algorithm, "trials": args.trials, "slots": len(setup.slots),
        "settings": args.setting, "time_scale": args.time_scale, "reuse_actors": args.reuse_actors,
        "host_cpus": os.cpu_count(), "wall_s": round(wall, 2), "trials_per_wall_s": round(args.trials / wall, 2),
        "decisions": {n: timer.at(n) for n in sorted({*CHECKPOINTS, args.trials}) if n <= args.trials},
        "decision_series": timer.series(),
        "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "ray_peak_rss_mb": round(sampler.ray_mb, 1), "ray_processes_at_peak": sampler.processes,
        "tune_experiment_bytes": folder_bytes(run_dir / "ray"),
        "run_dir_files": sum(len(files) for _, _, files in os.walk(run_dir)),
        "states": {s: sum(r.state == s for r in records) for s in sorted({r.state for r in records})},
        "simulation": json.loads((run_dir / "simulation.json").read_text()),
        "quality": quality(run_dir, args.seed),
        "run_dir": str(run_dir),
    }


def resume_search(args, algorithm: str) -> dict:
    """Time ``--resume`` of a finished Ray run (setup, Ray start, Tune restore; no trial left to run)."""
    from automl.search.controller import run_search
    from automl.tracking import NullTracker

    started = time.perf_counter()
    setup = setup_for(args, algorithm, resume=True, prefix="ray-")
    run_search(setup, tracker=NullTracker(), promote_best=False)
    return {"resume_s": round(time.perf_counter() - started, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def child_args(args) -> list[str]:
    return ["--trials", str(args.trials), "--gpus", str(args.gpus), "--seed", str(args.seed), "--out", args.out,
            "--time-scale", str(args.time_scale), "--reuse-actors", args.reuse_actors,
            *(["--cpus", str(args.cpus)] if args.cpus else []), *(["--profile"] if args.profile else []),
            *sum((["--setting", s] for s in args.setting), [])]


def measure(args, algorithm: str) -> dict:
    """One search in a child process, then `automl status` and `--resume` of its run folder."""
    _, out = timed_child([__file__, "--child", algorithm, *child_args(args)])
    figures = json.loads(out.strip().splitlines()[-1])
    status_s, _ = timed_child(["-m", "automl", "status", figures["run_dir"], "--json"])
    _, out = timed_child([__file__, "--child-resume", algorithm, *child_args(args)])
    figures["status_s"] = round(status_s, 2)
    figures["resume"] = json.loads(out.strip().splitlines()[-1])
    return figures


def verdicts(figures: dict) -> list[str]:
    decisions = [d for d in figures["decisions"].values() if d]
    last_n = max(int(n) for n, d in figures["decisions"].items() if d)
    sim = figures["simulation"]
    checks = [(f"p99 decision (suggest + on_trial_complete) at {last_n} trials, wall", decisions[-1]["decision_p99"],
               "ms", "<=", TARGETS["p99_decision_ms_at_10k"]),
              (f"p99 decision at {last_n} trials, driver thread CPU", decisions[-1]["decision_cpu_p99"], "ms", "<=",
               TARGETS["p99_decision_ms_at_10k"]),
              ("driver peak RSS", figures["driver_peak_rss_mb"], "MB", "<=", TARGETS["rss_mb"]),
              ("--resume of the finished run", figures["resume"]["resume_s"], "s", "<=", TARGETS["resume_s"]),
              ("utilisation after start-up (first trial start .. last new trial start)",
               sim["utilisation_while_budget_left"], "", ">=", TARGETS["utilisation"]),
              ("utilisation over the whole run (start-up and tail included)", sim["utilisation"], "", ">=",
               TARGETS["utilisation"]),
              ("most trials running at once", sim["max_running_at_once"], "", ">=", figures["slots"])]
    lines = []
    for what, value, unit, op, target in checks:
        met = value <= target if op == "<=" else value >= target
        lines.append(f"ray {figures['algorithm']}: {what}: {value:.4g}{unit} (target {op} {target:g}{unit}): "
                     f"{'met' if met else 'MISSED'}")
    lines.append(f"ray {figures['algorithm']}: whole Ray peak RSS {figures['ray_peak_rss_mb']:.0f} MB over "
                 f"{figures['ray_processes_at_peak']} processes; Tune experiment {figures['tune_experiment_bytes'] / 1e6:.1f} MB; "
                 f"automl status {figures['status_s']} s; wall {figures['wall_s']} s")
    return lines


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=500)
    p.add_argument("--gpus", type=int, default=64)
    p.add_argument("--algorithms", nargs="+", default=["tpe"])
    p.add_argument("--setting", action="append", default=[], help="--setting KEY=VALUE for the search")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-scale", type=float, default=0.02, help="real seconds per simulated second")
    p.add_argument("--reuse-actors", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--cpus", type=int, default=0, help="CPUs the private Ray is told it has (0: the host's)")
    p.add_argument("--profile", action="store_true", help="cProfile the search into <out>/ray-<algorithm>.prof")
    p.add_argument("--out", default=str(HERE / "results" / "scale"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-resume", help=argparse.SUPPRESS)
    return p


def run(args) -> list[dict]:
    """Measure every algorithm of ``args``; write ``<out>/ray-<algorithm>.json`` and print the verdicts."""
    Path(args.out).mkdir(parents=True, exist_ok=True)
    out = []
    for algorithm in args.algorithms:
        load = os.getloadavg()
        figures = measure(args, algorithm)
        figures["host_load_average_at_start"] = load
        (Path(args.out) / f"ray-{algorithm}.json").write_text(json.dumps(figures, indent=2))
        print("\n".join(verdicts(figures)), flush=True)
        out.append(figures)
    return out


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    os.environ["AUTOML_SIMULATED_GPUS"] = str(args.gpus)
    if args.child or args.child_resume:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        result = one_search(args, args.child) if args.child else resume_search(args, args.child_resume)
        print(json.dumps(result))
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
