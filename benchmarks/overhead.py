"""Search overhead and worker utilisation of the embedded (Optuna) backend.

1. Overhead: N trivial trials (the toy trainer, 1 epoch, no checkpoint files) through ``automl``
   (controller + persistent worker process + run folder + journal storage) against raw Optuna with the
   same sampler (TPE, same seed), the same space (``space.suggest``), the same storage (a journal file,
   what automl uses; in-memory reported too) and the same objective: the toy trainer's ``train`` called
   in-process with a reporter that does ``trial.report`` / ``should_prune``, each trial in a folder of
   its own -- what a raw-Optuna user writes for this trainer. A stricter variant whose objective is
   only the toy's formula (no trainer call, no folder) is reported beside it.
   ms per trial is the steady state: from the first trial's end to the last one's, over N-1 trials
   (worker start-up and the trainer's first import excluded on both sides). Rounds alternate the
   contestants so a load change on the shared host hits all of them; reported are the median of the
   per-round ratios (the target's figure), the per-round figures, and the ratio of each contestant's
   fastest round (as ``timeit`` reports the best of its repeats: load on the host only ever adds time).
   Target: ratio <= 1.2.
2. Utilisation: 2 workers on trials of mixed length (toy ``sleep_s`` scaled by width: 0.25x..2x);
   utilisation = sum of trial durations / (workers x wall time of the search), target >= 0.9.

Reproduce:  .venv/bin/python benchmarks/overhead.py [--trials 200] [--rounds 7] [--util-trials 40]
Without the disk (Optuna's journal fsyncs every write):  TMPDIR=/dev/shm .venv/bin/python benchmarks/overhead.py
The Ray Tune backend against raw Ray Tune:  .venv/bin/python benchmarks/overhead.py --backend ray [--trials 20]
Numbers depend on the host (its disk above all: Optuna's journal fsyncs every write); they are
ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna

from automl.trials.records import Progress

TRIVIAL = ["train.num_epochs=1", "toy.noise=0", "toy.checkpoints=false"]


def steady_ms(ends: list[float]) -> float:
    """ms per trial between the first trial's end and the last one's."""
    return 1000 * (ends[-1] - ends[0]) / (len(ends) - 1)


class _OptunaReporter:
    """The reporter a raw-Optuna objective hands the trainer: report and ask the pruner each epoch."""

    def __init__(self, trial, metric: str):
        self.trial, self.metric, self.pruned = trial, metric, False

    def report(self, epoch, metrics, checkpoint=None):
        self.trial.report(float(metrics[self.metric]), int(epoch))

    def should_stop(self) -> bool:
        self.pruned = self.trial.should_prune()
        return self.pruned


def raw_optuna(space, trials: int, seed: int, storage=None, *, trainer_spec=None, out: Path | None = None) -> float:
    """Steady-state ms per trial of raw Optuna (ask/suggest/report/tell, objective in-process).

    ``trainer_spec``: the objective runs the toy trainer with this spec in ``out/<number>``; without
    it the objective is the toy's formula only.
    """
    from automl.plugins import get_trainer
    from automl.trials.algorithms import make_sampler
    from automl.spec import apply_config

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", sampler=make_sampler("tpe", seed, space), storage=storage,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    plugin = get_trainer("toy")

    def objective(trial):
        config = space.suggest(trial)
        if trainer_spec is None:
            value = _toy_value(config)
            trial.report(value, 0)
            return value
        reporter = _OptunaReporter(trial, plugin.monitor.metric)
        folder = out / f"{trial.number:04d}"
        folder.mkdir(parents=True)
        output = plugin.train(apply_config(trainer_spec, config), folder, reporter, None)
        if reporter.pruned:
            raise optuna.TrialPruned()
        return output["best_value"]

    ends: list[float] = []
    study.optimize(objective, n_trials=trials, callbacks=[lambda study, trial: ends.append(time.perf_counter())])
    return steady_ms(ends)


def _toy_value(config: dict, num_epochs: int = 1) -> float:
    from automl.testing.toy import quality, schedule

    return quality(config["toy.lr"], config["toy.width"], config["toy.activation"], config["toy.momentum"]) * \
        schedule(0, num_epochs)


class _TrialEnds(Progress):
    def __init__(self):
        self.ends: list[float] = []

    def trial_finished(self, record) -> None:
        self.ends.append(time.perf_counter())


def automl_search(trials: int, seed: int, workers: int, overrides: list[str], out: Path, name: str):
    """(wall seconds, summary, setup, steady-state ms per trial) of one search through automl."""
    from automl.search.controller import resolve_setup, run_search
    from automl.tracking import NullTracker

    setup = resolve_setup(model="toy", budget=trials, workers=workers, seed=seed, name=name, output=out,
                          overrides=overrides, command="benchmarks/overhead.py")
    ends = _TrialEnds()
    started = time.perf_counter()
    summary = run_search(setup, tracker=NullTracker(), progress=ends, promote_best=False)
    return time.perf_counter() - started, summary, setup, steady_ms(ends.ends) if len(ends.ends) > 1 else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--util-trials", type=int, default=40)
    parser.add_argument("--util-sleep", type=float, default=0.4, help="seconds per epoch at width 4")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--backend", choices=("optuna", "ray"), default="optuna",
                        help="ray: the Ray Tune backend against raw Ray Tune (benchmarks/overhead_ray.py)")
    args = parser.parse_args(argv)
    if args.backend == "ray":
        from overhead_ray import main as ray_main

        passed = sys.argv[1:] if argv is None else list(argv)
        return ray_main([a for a in passed if a not in ("--backend", "ray", "--backend=ray")])

    from automl.plugins import get_trainer
    from automl.search.controller import compile_model_space
    from automl.spec import load_yaml

    plugin = get_trainer("toy")
    space = compile_model_space(plugin, load_yaml(plugin.spec_template()), {})
    report: dict = {"host_note": "2-core CPU shared machine; ratios are measured in the same run"}
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        from automl.spec import apply_config, parse_overrides

        trainer_spec = apply_config(load_yaml(plugin.spec_template()), parse_overrides(TRIVIAL))

        def journal(name: str):
            return JournalStorage(JournalFileBackend(str(tmp / f"{name}.journal")))

        contestants = {
            "raw_journal": lambda i: raw_optuna(space, args.trials, args.seed, journal(f"raw{i}"),
                                                trainer_spec=trainer_spec, out=tmp / f"raw{i}"),
            "automl": lambda i: _automl_round(args, tmp, i),
            "raw_journal_formula_only": lambda i: raw_optuna(space, args.trials, args.seed, journal(f"formula{i}")),
            "raw_inmemory": lambda i: raw_optuna(space, args.trials, args.seed, trainer_spec=trainer_spec,
                                                 out=tmp / f"mem{i}"),
        }
        rounds: dict[str, list[float]] = {k: [] for k in contestants}
        for i in range(args.rounds):
            for name, run in contestants.items():
                # each contestant starts with no dirty pages of the one before it: on ext4 a journal
                # fsync also commits whatever file metadata is pending, whoever wrote it
                os.sync()
                rounds[name].append(run(i))

        def ratio(base: str) -> float:
            return round(statistics.median(a / b for a, b in zip(rounds["automl"], rounds[base])), 3)

        report["overhead"] = {
            "trials": args.trials, "rounds": args.rounds,
            "ms_per_trial_each_round": {k: [round(x, 2) for x in v] for k, v in rounds.items()},
            "median_ms_per_trial": {k: round(statistics.median(v), 2) for k, v in rounds.items()},
            "ratio_vs_raw_journal": ratio("raw_journal"),
            "ratio_vs_raw_journal_formula_only": ratio("raw_journal_formula_only"),
            "ratio_vs_raw_inmemory": ratio("raw_inmemory"),
            "ratio_vs_raw_journal_fastest_rounds": round(min(rounds["automl"]) / min(rounds["raw_journal"]), 3),
            "ratio_note": "median over rounds of automl / baseline measured in the same round; baselines run the "
                          "toy trainer in-process (formula_only: the toy's formula, no trainer call); "
                          "fastest_rounds: each contestant's fastest round, as timeit reports the best repeat",
            "target": "ratio_vs_raw_journal <= 1.2",
        }

        wall, summary, setup, _ = automl_search(
            args.util_trials, args.seed, 2,
            ["train.num_epochs=1", "toy.noise=0", f"toy.sleep_s={args.util_sleep}", "toy.sleep_by_width=true",
             "toy.checkpoints=false"], tmp / "runs", "util")
        from automl.trials.rundir import read_trials

        records = read_trials(setup.run_dir)
        busy = sum(r.duration_s for r in records)
        lengths = [r.duration_s for r in records]
        # the window from the first trial's start to the last one's end (worker start-up excluded)
        ends = [Path(r.trial_dir, "result.json").stat().st_mtime for r in records]
        window = max(ends) - min(e - r.duration_s for e, r in zip(ends, records))
        report["utilisation"] = {
            "workers": 2, "trials": len(records),
            "trial_seconds_min_max": [round(min(lengths), 3), round(max(lengths), 3)],
            "busy_s": round(busy, 2), "wall_s": round(wall, 2),
            "utilisation": round(busy / (2 * wall), 3),
            "utilisation_after_startup": round(busy / (2 * window), 3),
            "note": "utilisation counts the whole search wall time, including the one-off start of the 2 "
                    "worker processes (python + torch import); utilisation_after_startup counts from the "
                    "first trial's start to the last trial's end",
            "target": ">= 0.9",
        }
    print(json.dumps(report, indent=2))
    return 0


def _automl_round(args, tmp: Path, i: int) -> float:
    _, summary, _, ms = automl_search(args.trials, args.seed, 1, TRIVIAL, tmp / "runs", f"overhead{i}")
    assert summary["trials_used"] == args.trials
    return ms


if __name__ == "__main__":
    sys.exit(main())
