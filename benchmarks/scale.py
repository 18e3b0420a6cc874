"""Decisions at scale: thousands of trials on a simulated cluster, through the real controller (issue 18).

Each search runs the embedded backend's real controller (study, journal storage, sampler, slot threads,
run folder) with ``AUTOML_SIMULATED_GPUS`` slots, but its trials are simulated in-process
(:mod:`automl.backends.optuna.simulated`, flagged ``simulation`` in ``search.json``): a seeded
"config -> learning curve" model (:mod:`automl.testing.simulated`, 9 epochs of ~60 s x width/4) and a
virtual clock that advances by each trial's simulated epochs, never by sleeping. Nothing is charged to
the virtual clock for the controller's decisions; their real cost is measured here:

* decision latency: wall ms of each new trial's ask (sampler ask + ``space.suggest`` + folder
  bookkeeping, the controller's ``_new_trial``) and of each ``study.tell``; p50/p99 over the trials
  numbered in the last 10 % before 100, 1k, 5k, 10k (as the study grows);
* controller peak RSS, journal size, ``automl status`` time and ``--resume`` time of the finished run
  (each in a fresh process), simulated utilisation and ``idle_with_budget_left`` (moments the controller
  went idle while a slot was free and the budget had trials left: must be 0), quality on the simulated
  objective (the winner's measured value and its noise-free final value).

Each search runs in a child process of its own (its peak RSS is its own).

Reproduce:  .venv/bin/python benchmarks/scale.py [--trials 10000] [--gpus 64] [--algorithms tpe asha random]
Writes ``--out`` (default benchmarks/results/scale/): ``<algorithm>.json`` per search and ``scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECKPOINTS = (100, 1000, 5000, 10000)
TARGETS = {"p99_decision_ms_at_10k": 20.0, "rss_mb": 1024.0, "resume_s": 10.0, "utilisation": 0.95}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


class DecisionTimer:
    """Wall ms of the controller's asks (``_Search._new_trial``) and of ``Study.tell``, by trial number."""

    def __init__(self):
        self.ask: dict[int, float] = {}
        self.tell: dict[int, float] = {}
        # the calling thread's CPU ms of the same calls: what a loaded host does not inflate
        self.ask_cpu: dict[int, float] = {}
        self.tell_cpu: dict[int, float] = {}

    def install(self) -> None:
        import optuna

        from automl.backends.optuna import search

        new_trial, tell = search._Search._new_trial, optuna.study.Study.tell
        timer = self

        def timed_new_trial(self, *args, **kwargs):
            started, cpu = time.perf_counter(), time.thread_time()
            job = new_trial(self, *args, **kwargs)
            if job is not None:
                timer.ask[job.number] = 1000 * (time.perf_counter() - started)
                timer.ask_cpu[job.number] = 1000 * (time.thread_time() - cpu)
            return job

        def timed_tell(self, trial, *args, **kwargs):
            started, cpu = time.perf_counter(), time.thread_time()
            out = tell(self, trial, *args, **kwargs)
            number = trial if isinstance(trial, int) else trial.number
            timer.tell.setdefault(number, 1000 * (time.perf_counter() - started))
            timer.tell_cpu.setdefault(number, 1000 * (time.thread_time() - cpu))
            return out

        search._Search._new_trial, optuna.study.Study.tell = timed_new_trial, timed_tell

    def series(self, step: int = 100) -> list[list[float]]:
        """[last trial, p50, p99 wall ms, p99 thread-CPU ms] of ask + tell per block of ``step`` trials."""
        out = []
        done = sorted(k for k in self.ask if k in self.tell)
        for start in range(0, len(done), step):
            block = done[start:start + step]
            wall = [self.ask[k] + self.tell[k] for k in block]
            cpu = [self.ask_cpu[k] + self.tell_cpu[k] for k in block]
            out.append([block[-1] + 1, round(percentile(wall, 50), 2), round(percentile(wall, 99), 2),
                        round(percentile(cpu, 99), 2)])
        return out

    def at(self, n: int) -> dict[str, float] | None:
        """p50/p99 of ask, tell and ask + tell over trials numbered in (0.9 n, n]."""
        numbers = [k for k in self.ask if 0.9 * n < k + 1 <= n]
        if not numbers:
            return None
        asks = [self.ask[k] for k in numbers]
        tells = [self.tell[k] for k in numbers if k in self.tell]
        both = [self.ask[k] + self.tell[k] for k in numbers if k in self.tell]
        cpu = [self.ask_cpu[k] + self.tell_cpu[k] for k in numbers if k in self.tell_cpu]
        return {"trials": len(numbers), "ask_p50": percentile(asks, 50), "ask_p99": percentile(asks, 99),
                "tell_p50": percentile(tells, 50), "tell_p99": percentile(tells, 99),
                "decision_p50": percentile(both, 50), "decision_p99": percentile(both, 99),
                "decision_cpu_p50": percentile(cpu, 50), "decision_cpu_p99": percentile(cpu, 99)}


def setup_for(args, algorithm: str, resume: bool = False, prefix: str = ""):
    from automl.search.controller import resolve_setup

    settings = dict(kv.split("=", 1) for kv in args.setting)
    return resolve_setup(model="toy", budget=args.trials, seed=args.seed, name=f"{prefix}{algorithm}-{args.trials}",
                         output=args.out, algorithm=algorithm, overrides=["train.num_epochs=9"], resume=resume,
                         settings=settings or None, command="benchmarks/scale.py", storage=getattr(args, "storage", None))


def quality(run_dir: Path, seed: int) -> dict:
    """The winner's measured value and its noise-free value on the simulated objective."""
    from automl.testing.simulated import CurveModel
    from automl.trials.rundir import read_trials

    records = read_trials(run_dir)
    model = CurveModel(seed=seed)
    scored = [r for r in records if r.value is not None and r.state != "failed"]
    best = max(scored, key=lambda r: r.value)
    full = [r for r in scored if r.epochs_done >= 9]
    return {"best_measured": round(best.value, 4), "best_trial": best.number,
            "best_true_value": round(model.true_value(best.params), 4),
            "best_true_among_full_trials": round(max(model.true_value(r.params) for r in full), 4) if full else None,
            "complete_trials": len(full)}


def one_search(args, algorithm: str) -> dict:
    """Run one simulated search in this process; its figures."""
    from automl.search.controller import run_search
    from automl.tracking import NullTracker

    timer = DecisionTimer()
    timer.install()
    setup = setup_for(args, algorithm)
    started = time.perf_counter()
    run_search(setup, tracker=NullTracker(), promote_best=False,
               backend_options={"simulation": {"seed": args.seed, "epoch_s": 60.0}})
    wall = time.perf_counter() - started
    simulation = json.loads((setup.run_dir / "simulation.json").read_text())
    storage = setup.run_dir / "journal"
    return {
        "algorithm": algorithm, "trials": args.trials, "slots": len(setup.slots), "settings": args.setting,
        "wall_s": round(wall, 2), "trials_per_wall_s": round(args.trials / wall, 1),
        "decisions": {n: timer.at(n) for n in sorted({*CHECKPOINTS, args.trials}) if n <= args.trials},
        "decision_series": timer.series(),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "storage_bytes": storage.stat().st_size if storage.exists() else None,
        "run_dir_files": sum(len(files) for _, _, files in os.walk(setup.run_dir)),
        "simulation": simulation,
        "quality": quality(setup.run_dir, args.seed),
        "run_dir": str(setup.run_dir),
    }


def timed_child(argv: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=os.environ)
    if proc.returncode:
        raise RuntimeError(f"{argv}: exit {proc.returncode}: {proc.stderr[-2000:]}")
    return time.perf_counter() - started, proc.stdout


def measure(args, algorithm: str) -> dict:
    """One search in a child process, then `automl status` and `--resume` of its run folder."""
    common = ["--trials", str(args.trials), "--gpus", str(args.gpus), "--seed", str(args.seed), "--out", args.out,
              *(["--storage", args.storage] if args.storage else []), *sum((["--setting", s] for s in args.setting), [])]
    _, out = timed_child([__file__, "--child", algorithm, *common])
    figures = json.loads(out.strip().splitlines()[-1])
    status_s, _ = timed_child(["-m", "automl", "status", figures["run_dir"], "--json"])
    _, out = timed_child([__file__, "--child-resume", algorithm, *common])
    figures["status_s"] = round(status_s, 2)
    figures["resume"] = json.loads(out.strip().splitlines()[-1])
    return figures


def resume_search(args, algorithm: str) -> dict:
    """Time ``--resume`` of a finished run (setup + study load + recovery; no trial left to run)."""
    from automl.search.controller import run_search
    from automl.tracking import NullTracker

    started = time.perf_counter()
    setup = setup_for(args, algorithm, resume=True)
    run_search(setup, tracker=NullTracker(), promote_best=False)
    return {"resume_s": round(time.perf_counter() - started, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


class CountingTracker:
    """Passes every hook to the real tracker and counts the events (one per hook call, one per metric)."""

    def __init__(self, tracker):
        self.tracker, self.events = tracker, 0

    def __getattr__(self, name):
        hook = getattr(self.tracker, name)
        if name not in ("start_search", "trial_started", "trial_epoch", "trial_finished", "search_progress",
                        "promoted", "end_search"):
            return hook

        def counted(*args, **kwargs):
            self.events += len(args[2]) if name == "trial_epoch" else 1
            return hook(*args, **kwargs)
        return counted


def tracking_throughput(args, where: str) -> dict:
    """MLflow events/s: a simulated random search (args.tracking_trials trials, 64 slots) with the real
    tracker into the embedded store (``embedded``) or a local ``mlflow server`` (``server``), against
    the same search untracked; run_search returns once the tracker has delivered everything."""
    import tempfile

    from automl.search.controller import resolve_setup, run_search
    from automl.tracking import NullTracker, create_tracker
    from automl.tracking import server as mlflow_server

    proc, walls = None, {}
    with tempfile.TemporaryDirectory() as tmp:
        uri = None
        if where == "server":
            port = mlflow_server.free_port()
            proc = mlflow_server.start_server(f"sqlite:///{tmp}/server.db", f"{tmp}/artifacts", "127.0.0.1", port,
                                              Path(tmp) / "server.log")
            uri = f"http://127.0.0.1:{port}"
            mlflow_server.wait_healthy(uri, proc, 120)
        try:
            for tracked in (False, True):
                setup = resolve_setup(model="toy", budget=args.tracking_trials, seed=args.seed, algorithm="random",
                                      name=f"track-{tracked}", output=tmp, overrides=["train.num_epochs=9"],
                                      command="benchmarks/scale.py")
                tracker = CountingTracker(create_tracker(setup.run_dir, uri)) if tracked else NullTracker()
                started = time.perf_counter()
                run_search(setup, tracker=tracker, promote_best=False,
                           backend_options={"simulation": {"seed": args.seed, "epoch_s": 60.0}})
                walls[tracked] = time.perf_counter() - started
        finally:
            if proc is not None:
                mlflow_server.stop_server(proc)
    events = tracker.events
    return {"store": where, "trials": args.tracking_trials, "events": events, "wall_tracked_s": round(walls[True], 2),
            "wall_untracked_s": round(walls[False], 2), "events_per_s_overall": round(events / walls[True], 1),
            "events_per_s_of_added_time": round(events / max(1e-9, walls[True] - walls[False]), 1)}


def verdicts(figures: dict) -> list[str]:
    lines = []
    decisions = [d for d in figures["decisions"].values() if d]
    last_n = max(int(n) for n, d in figures["decisions"].items() if d)
    p99, p99_cpu = decisions[-1]["decision_p99"], decisions[-1]["decision_cpu_p99"]
    checks = [(f"p99 decision (ask + tell) at {last_n} trials, wall", p99, "ms", "<=", TARGETS["p99_decision_ms_at_10k"]),
              (f"p99 decision (ask + tell) at {last_n} trials, thread CPU", p99_cpu, "ms", "<=",
               TARGETS["p99_decision_ms_at_10k"]),
              ("controller peak RSS", figures["peak_rss_mb"], "MB", "<=", TARGETS["rss_mb"]),
              ("--resume of the finished run", figures["resume"]["resume_s"], "s", "<=", TARGETS["resume_s"]),
              ("simulated utilisation while the budget had trials to start",
               figures["simulation"]["utilisation_while_budget_left"], "", ">=", TARGETS["utilisation"]),
              ("simulated utilisation over the whole run (tail included)", figures["simulation"]["utilisation"], "",
               ">=", TARGETS["utilisation"]),
              ("idle slots with budget left", figures["simulation"]["idle_with_budget_left"], "", "<=", 0)]
    for what, value, unit, op, target in checks:
        met = value <= target if op == "<=" else value >= target
        lines.append(f"{figures['algorithm']}: {what}: {value:.4g}{unit} (target {op} {target:g}{unit}): "
                     f"{'met' if met else 'MISSED'}")
    return lines


def plot(paths: list[Path], out: Path) -> Path:
    """p99 decision latency against the study's size, wall (left) and the deciding thread's CPU (right),
    one line per search figures file: the embedded backend's ``<algorithm>.json`` (solid) and the Ray
    backend's ``ray-<algorithm>.json`` (dashed, benchmarks/scale_ray.py)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for path in paths:
        figures = json.loads(Path(path).read_text())
        ray = figures.get("backend") == "ray"
        settings = figures.get("settings") or []
        # the folder names the run (e.g. before / after a change): same algorithm and size otherwise
        label = (f"{Path(path).parent.name}: {'ray' if ray else 'embedded'} {figures['algorithm']} {' '.join(settings)}, "
                 f"{figures['trials']} trials, {figures['slots']} slots")
        series = figures.get("decision_series") or [[int(n), d["decision_p50"], d["decision_p99"], d["decision_cpu_p99"]]
                                                    for n, d in figures["decisions"].items() if d]
        for ax, column in zip(axes, (2, 3)):
            ax.plot([r[0] for r in series], [r[column] for r in series], label=label.strip(),
                    linestyle="--" if ray else "-")
    for ax, what in zip(axes, ("wall", "thread CPU")):
        ax.axhline(TARGETS["p99_decision_ms_at_10k"], color="grey", linestyle=":", label="target p99 <= 20 ms")
        ax.set_xlabel("trials in the study")
        ax.set_ylabel(f"p99 ask + tell per 100 trials, ms ({what})")
        ax.set_yscale("log")
        ax.legend(fontsize=6)
    axes[0].set_title("wall (loaded 2-core host)", fontsize=9)
    axes[1].set_title("the deciding thread's CPU", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10000)
    parser.add_argument("--gpus", type=int, default=64)
    parser.add_argument("--algorithms", nargs="+", default=["tpe", "asha", "random"])
    parser.add_argument("--setting", action="append", default=[], help="--setting KEY=VALUE for the search")
    parser.add_argument("--storage", default=None, help="--storage of the searches (default: the journal file)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(HERE / "results" / "scale"))
    parser.add_argument("--tracking-trials", type=int, default=300,
                        help="trials of the MLflow throughput searches (0: skip them)")
    parser.add_argument("--child-tracking", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-resume", help=argparse.SUPPRESS)
    parser.add_argument("--plot", nargs="+", metavar="FIGURES_JSON",
                        help="only draw the latency plot of these <algorithm>.json / ray-<algorithm>.json files")
    parser.add_argument("--plot-file", help="where --plot draws (default: --out/latency.png)")
    parser.add_argument("--backends", nargs="+", choices=("optuna", "ray"), default=["optuna"],
                        help="optuna: the embedded controller (default); ray: the same simulation through "
                             "--backend ray (benchmarks/scale_ray.py, its figures in <out>/ray-<algorithm>.json)")
    parser.add_argument("--time-scale", type=float, default=0.02, help="ray: real seconds per simulated second")
    parser.add_argument("--reuse-actors", choices=("auto", "on", "off"), default="auto", help="ray: Tune's reuse_actors")
    args = parser.parse_args(argv)
    if args.plot:
        print(plot([Path(p) for p in args.plot], Path(args.plot_file or Path(args.out) / "latency.png")))
        return 0
    os.environ["AUTOML_SIMULATED_GPUS"] = str(args.gpus)
    if args.child or args.child_resume or args.child_tracking:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        if args.child_tracking:
            result = tracking_throughput(args, args.child_tracking)
        else:
            result = one_search(args, args.child) if args.child else resume_search(args, args.child_resume)
        print(json.dumps(result))
        return 0
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if "ray" in args.backends:
        import scale_ray

        ray_args = scale_ray.parser().parse_args([
            "--trials", str(args.trials), "--gpus", str(args.gpus), "--seed", str(args.seed), "--out", args.out,
            "--time-scale", str(args.time_scale), "--reuse-actors", args.reuse_actors, "--algorithms",
            *args.algorithms, *sum((["--setting", s] for s in args.setting), [])])
        scale_ray.run(ray_args)
        if "optuna" not in args.backends:
            return 0
    report = {"host_load_average_at_start": os.getloadavg(), "gpus": args.gpus, "trials": args.trials, "searches": {}}
    lines = []
    for algorithm in args.algorithms:
        figures = measure(args, algorithm)
        report["searches"][algorithm] = figures
        (Path(args.out) / f"{algorithm}.json").write_text(json.dumps(figures, indent=2))
        lines += verdicts(figures)
        print("\n".join(verdicts(figures)), flush=True)
    if args.tracking_trials:
        report["mlflow"] = {}
        for where in ("embedded", "server"):
            _, out = timed_child([__file__, "--child-tracking", where, "--tracking-trials", str(args.tracking_trials),
                                  "--gpus", str(args.gpus), "--seed", str(args.seed)])
            report["mlflow"][where] = figures = json.loads(out.strip().splitlines()[-1])
            lines.append(f"MLflow into the {where} store: {figures['events']} events, "
                         f"{figures['events_per_s_overall']} events/s overall "
                         f"({figures['events_per_s_of_added_time']} per second the tracking added)")
            print(lines[-1], flush=True)
    report["summary"] = lines
    (Path(args.out) / "scale.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
