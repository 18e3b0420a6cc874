"""Search overhead in CPU time: what a noisy host cannot hide (issue 18).

``benchmarks/overhead.py`` compares wall time per trial, which on a shared 2-vCPU VM moved between
0.87x and 2.31x for identical code. CPU time that a process or thread spends itself does not depend on
what the neighbours do (to first order: caches and SMT siblings still leak), so this benchmark counts
CPU seconds instead:

1. Controller and worker CPU per trivial trial (toy trainer, 1 epoch, no checkpoint), ``--trials``
   trials through ``automl`` with one worker. The controller's process CPU (``getrusage(RUSAGE_SELF)``,
   all its threads) and the sampler's share of it (``time.thread_time`` around every call into the
   Optuna sampler: TPE's ask-time and suggest-time work, which raw Optuna does the same way); the
   worker process's CPU from ``/proc`` (psutil). Beside it raw Optuna in-process with the same sampler,
   space, journal storage and trainer, split the same way (sampler / trainer / the rest: storage and
   Optuna's bookkeeping). Steady state: from the first trial's end to the last one's.
   Target: the controller's own CPU beyond the sampler <= 1 ms per trial.
2. End-to-end overhead on 5-second trials, 2 workers: per slot, the time from one trial's end to the
   next one's end minus the trial's 5 s, as a fraction of 5 s (wall; the trial length dwarfs the
   host's noise), and the controller + worker CPU per trial beyond the trainer's sleep, as a fraction
   of 5 s. Target <= 1 %.
3. Utilisation after start-up on mixed-length trials (2 workers, 0.1-0.8 s x width/4): sum of trial
   durations / (2 x the window from the first trial's start to the last one's end). Target >= 0.95.

Reproduce:  .venv/bin/python benchmarks/overhead_cpu.py [--trials 500] [--long-trials 8] [--util-trials 40]
Writes the figures as JSON to ``--out`` (default benchmarks/results/overhead_cpu.json).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import TRIVIAL, _OptunaReporter, automl_search  # noqa: E402

from automl.trials.records import Progress  # noqa: E402

SAMPLER_METHODS = ("infer_relative_search_space", "sample_relative", "sample_independent", "before_trial",
                   "after_trial")


class SamplerClock:
    """Thread CPU seconds spent inside the sampler's methods (outermost calls only: TPE's own methods
    call each other)."""

    def __init__(self):
        self.seconds, self._depth = 0.0, 0

    def wrap(self, sampler):
        for name in SAMPLER_METHODS:
            setattr(sampler, name, self._timed(getattr(sampler, name)))
        return sampler

    def _timed(self, method):
        def call(*args, **kwargs):
            self._depth += 1
            started = time.thread_time() if self._depth == 1 else None
            try:
                return method(*args, **kwargs)
            finally:
                if started is not None:
                    self.seconds += time.thread_time() - started
                self._depth -= 1
        return call


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class ChildrenCpu:
    """CPU seconds of this process's child processes (the slot workers). The children are listed once
    (listing walks all of /proc, several ms that would count as the controller's own CPU); a worker
    replaced later is not followed, which a trivial-trial run never does."""

    def __init__(self):
        self.children: list[psutil.Process] | None = None

    def __call__(self) -> float:
        if not self.children:
            self.children = psutil.Process().children()
        total = 0.0
        for child in self.children:
            try:
                times = child.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
        return total


class CpuAtTrialEnds(Progress):
    """At each trial's end: wall clock, controller CPU, sampler CPU, workers' CPU."""

    def __init__(self, clock: SamplerClock):
        self.clock, self.marks = clock, []
        self.slot_of: dict[int, int] = {}
        self.children_cpu = ChildrenCpu()

    def trial_started(self, number, params, slot) -> None:
        self.slot_of[number] = slot

    def trial_finished(self, record) -> None:
        self.marks.append((time.perf_counter(), process_cpu(), self.clock.seconds, self.children_cpu(),
                           self.slot_of.get(record.number)))


def per_trial_ms(marks: list[tuple]) -> dict[str, float]:
    first, last, n = marks[0], marks[-1], len(marks) - 1
    controller = 1000 * (last[1] - first[1]) / n
    sampler = 1000 * (last[2] - first[2]) / n
    return {"controller_cpu": controller, "sampler_cpu": sampler, "controller_beyond_sampler": controller - sampler,
            "worker_cpu": 1000 * (last[3] - first[3]) / n, "wall": 1000 * (last[0] - first[0]) / n}


def automl_cpu(trials: int, seed: int, workers: int, overrides: list[str], out: Path, name: str):
    """Per-trial CPU marks of one search through automl (the sampler of the study timed)."""
    import automl.backends.optuna.storage as storage

    clock = SamplerClock()
    make = storage.make_sampler
    storage.make_sampler = lambda *a, **k: clock.wrap(make(*a, **k))
    progress = CpuAtTrialEnds(clock)
    try:
        from automl.search.controller import resolve_setup, run_search
        from automl.tracking import NullTracker

        setup = resolve_setup(model="toy", budget=trials, workers=workers, seed=seed, name=name, output=out,
                              overrides=overrides, command="benchmarks/overhead_cpu.py")
        run_search(setup, tracker=NullTracker(), progress=progress, promote_best=False)
    finally:
        storage.make_sampler = make
    return progress.marks


def raw_optuna_cpu(space, trials: int, seed: int, storage, trainer_spec, out: Path) -> dict[str, float]:
    """Raw Optuna with the toy trainer in-process: CPU ms per trial, split sampler / trainer / rest."""
    from automl.plugins import get_trainer
    from automl.spec import apply_config
    from automl.trials.algorithms import make_sampler

    clock = SamplerClock()
    study = optuna.create_study(direction="maximize", sampler=clock.wrap(make_sampler("tpe", seed, space)),
                                storage=storage,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    plugin = get_trainer("toy")
    trainer = [0.0]

    def objective(trial):
        config = space.suggest(trial)
        reporter = _OptunaReporter(trial, plugin.monitor.metric)
        folder = out / f"{trial.number:04d}"
        folder.mkdir(parents=True)
        started = time.thread_time()
        output = plugin.train(apply_config(trainer_spec, config), folder, reporter, None)
        trainer[0] += time.thread_time() - started
        return output["best_value"]

    marks = []
    study.optimize(objective, n_trials=trials, callbacks=[lambda s, t: marks.append(
        (time.perf_counter(), process_cpu(), clock.seconds, trainer[0], None))])
    ms = per_trial_ms(marks)
    ms["trainer_cpu"] = ms.pop("worker_cpu")  # the 4th mark is the trainer's CPU here
    ms["rest_cpu"] = ms["controller_cpu"] - ms["sampler_cpu"] - ms["trainer_cpu"]
    return ms


def trivial_trials(args, tmp: Path) -> dict:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from automl.plugins import get_trainer
    from automl.search.controller import compile_model_space
    from automl.spec import apply_config, load_yaml, parse_overrides

    plugin = get_trainer("toy")
    space = compile_model_space(plugin, load_yaml(plugin.spec_template()), {})
    trainer_spec = apply_config(load_yaml(plugin.spec_template()), parse_overrides(TRIVIAL))
    rounds = []
    for i in range(args.rounds):
        raw = raw_optuna_cpu(space, args.trials, args.seed, JournalStorage(JournalFileBackend(str(tmp / f"raw{i}.journal"))),
                             trainer_spec, tmp / f"raw{i}")
        ours = per_trial_ms(automl_cpu(args.trials, args.seed, 1, TRIVIAL, tmp / "runs", f"cpu{i}"))
        rounds.append({"raw_optuna": raw, "automl": ours})
    median = {who: {k: round(statistics.median(r[who][k] for r in rounds), 3) for k in rounds[0][who]}
              for who in ("raw_optuna", "automl")}
    ours, raw = median["automl"], median["raw_optuna"]
    return {
        "trials": args.trials, "rounds": args.rounds, "ms_per_trial_median_of_rounds": median,
        "ms_per_trial_each_round": [{w: {k: round(v, 3) for k, v in r[w].items()} for w in r} for r in rounds],
        "controller_beyond_sampler_ms": ours["controller_beyond_sampler"],
        "controller_beyond_raw_optuna_non_trainer_ms": round(ours["controller_beyond_sampler"] - raw["rest_cpu"], 3),
        "worker_beyond_trainer_ms": round(ours["worker_cpu"] - raw["trainer_cpu"], 3),
        "target": "controller_beyond_sampler_ms <= 1.0",
        "met": ours["controller_beyond_sampler"] <= 1.0,
        "note": "raw_optuna.rest_cpu: what raw Optuna spends outside sampler and trainer (journal writes of "
                "ask/report/tell, Optuna's bookkeeping); the controller does the same writes, so "
                "controller_beyond_raw_optuna_non_trainer_ms is what automl adds on top of them",
    }


def long_trials(args, tmp: Path) -> dict:
    """End-to-end overhead on 5-second trials with 2 workers."""
    overrides = ["train.num_epochs=1", "toy.noise=0", f"toy.sleep_s={args.long_s}", "toy.checkpoints=false"]
    marks = automl_cpu(args.long_trials, args.seed, 2, overrides, tmp / "runs", "long")
    by_slot: dict[int, list[float]] = {}
    for mark in marks:
        by_slot.setdefault(mark[4], []).append(mark[0])
    gaps = [b - a - args.long_s for ends in by_slot.values() for a, b in zip(ends, ends[1:])]
    cpu = per_trial_ms(marks)
    # the worker's CPU includes what the trainer does around its sleep (raw Optuna pays that too)
    cpu_fraction = (cpu["controller_cpu"] + cpu["worker_cpu"]) / 1000 / args.long_s
    wall_fraction = statistics.median(gaps) / args.long_s
    return {
        "trial_s": args.long_s, "workers": 2, "trials": args.long_trials,
        "wall_overhead_per_trial_ms_each": [round(1000 * g, 2) for g in gaps],
        "wall_overhead_fraction_median": round(wall_fraction, 5),
        "cpu_per_trial_ms": {k: round(v, 3) for k, v in cpu.items()},
        "cpu_overhead_fraction": round(cpu_fraction, 5),
        "target": "<= 0.01 of the trial's wall time", "met": max(wall_fraction, cpu_fraction) <= 0.01,
    }


def utilisation(args, tmp: Path) -> dict:
    from automl.trials.rundir import read_trials

    overrides = ["train.num_epochs=1", "toy.noise=0", f"toy.sleep_s={args.util_sleep}", "toy.sleep_by_width=true",
                 "toy.checkpoints=false"]
    wall, _, setup, _ = automl_search(args.util_trials, args.seed, 2, overrides, tmp / "runs", "util")
    records = read_trials(setup.run_dir)
    busy = sum(r.duration_s for r in records)
    ends = [Path(r.trial_dir, "result.json").stat().st_mtime for r in records]
    window = max(ends) - min(e - r.duration_s for e, r in zip(ends, records))
    value = busy / (2 * window)
    return {"workers": 2, "trials": len(records), "busy_s": round(busy, 2), "window_s": round(window, 2),
            "wall_s": round(wall, 2), "utilisation_after_startup": round(value, 4),
            "utilisation_whole_wall": round(busy / (2 * wall), 4), "target": ">= 0.95", "met": value >= 0.95}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--long-trials", type=int, default=8)
    parser.add_argument("--long-s", type=float, default=5.0)
    parser.add_argument("--util-trials", type=int, default=40)
    parser.add_argument("--util-sleep", type=float, default=0.4, help="seconds per epoch at width 4")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", nargs="*", default=[], choices=("trivial", "long", "util"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "overhead_cpu.json"))
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    report: dict = {"host": f"{psutil.cpu_count()} CPUs, load average {psutil.getloadavg()} at start"}
    with tempfile.TemporaryDirectory() as tmp:
        for name, part in (("trivial", trivial_trials), ("long", long_trials), ("util", utilisation)):
            if name not in args.skip:
                report[name] = part(args, Path(tmp))
    lines = []
    if "trivial" in report:
        t = report["trivial"]
        lines.append(f"controller CPU beyond the sampler: {t['controller_beyond_sampler_ms']:.3f} ms/trial "
                     f"(target <= 1 ms): {'met' if t['met'] else 'MISSED'}")
    if "long" in report:
        t = report["long"]
        lines.append(f"overhead on {t['trial_s']:g}-s trials, 2 workers: wall {100 * t['wall_overhead_fraction_median']:.3f} %, "
                     f"CPU {100 * t['cpu_overhead_fraction']:.3f} % (target <= 1 %): {'met' if t['met'] else 'MISSED'}")
    if "util" in report:
        t = report["util"]
        lines.append(f"utilisation after start-up: {t['utilisation_after_startup']:.4f} (target >= 0.95): "
                     f"{'met' if t['met'] else 'MISSED'}")
    report["summary"] = lines
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
