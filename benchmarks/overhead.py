"""Search overhead and worker utilisation of the embedded (Optuna) backend.

1. Overhead: N trivial trials (the toy trainer, 1 epoch, no checkpoint files) through ``automl``
   (controller + persistent worker processes + run folder + journal storage) against raw Optuna
   running the same objective in-process with the same sampler (TPE, same seed) and the same space
   (``space.suggest``), in-memory and on a journal file. Reported: ms per trial and the ratio
   (target <= 1.2x against raw Optuna on the same journal storage).
2. Utilisation: 2 workers on trials of mixed length (toy ``sleep_s`` scaled by width: 0.25x..2x);
   utilisation = sum of trial durations / (workers x wall time of the search), target >= 0.9.

Reproduce:  .venv/bin/python benchmarks/overhead.py [--trials 200] [--util-trials 24]
Numbers depend on the host; they are ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import optuna


def _toy_value(config: dict, num_epochs: int = 1) -> float:
    from automl.testing.toy import quality, schedule

    return quality(config["toy.lr"], config["toy.width"], config["toy.activation"], config["toy.momentum"]) * \
        schedule(0, num_epochs)


def raw_optuna(space, trials: int, seed: int, storage=None) -> float:
    """Seconds for ``trials`` trials of raw Optuna: ask/suggest/report/tell, objective in-process."""
    from automl.search.algorithms import make_sampler

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", sampler=make_sampler("tpe", seed, space), storage=storage,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))

    def objective(trial):
        config = space.suggest(trial)
        value = _toy_value(config)
        trial.report(value, 0)
        return value

    started = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return time.perf_counter() - started


def automl_search(trials: int, seed: int, workers: int, overrides: list[str], out: Path, name: str):
    from automl.search.controller import resolve_setup, run_search
    from automl.tracking import NullTracker

    setup = resolve_setup(model="toy", budget=trials, workers=workers, seed=seed, name=name, output=out,
                          overrides=overrides, command="benchmarks/overhead.py")
    started = time.perf_counter()
    summary = run_search(setup, tracker=NullTracker(), promote_best=False)
    return time.perf_counter() - started, summary, setup


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--util-trials", type=int, default=24)
    parser.add_argument("--util-sleep", type=float, default=0.4, help="seconds per epoch at width 4")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from automl.plugins import get_trainer
    from automl.search.controller import compile_model_space
    from automl.spec import load_yaml

    plugin = get_trainer("toy")
    space = compile_model_space(plugin, load_yaml(plugin.spec_template()), {})
    report: dict = {"host_note": "2-core CPU shared machine; ratios are measured in the same run"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        raw_mem = raw_optuna(space, args.trials, args.seed)
        raw_journal = raw_optuna(space, args.trials, args.seed,
                                 storage=JournalStorage(JournalFileBackend(str(tmp / "raw.journal"))))
        # worker start-up (python + torch import) is paid once per slot; measure it apart
        warm, _, _ = automl_search(1, args.seed, 1, ["train.num_epochs=1", "toy.noise=0", "toy.checkpoints=false"],
                                   tmp / "runs", "startup")
        total, summary, _ = automl_search(args.trials, args.seed, 1,
                                          ["train.num_epochs=1", "toy.noise=0", "toy.checkpoints=false"],
                                          tmp / "runs", "overhead")
        assert summary["trials_used"] == args.trials
        per_trial = (total - warm) / (args.trials - 1) if args.trials > 1 else total
        report["overhead"] = {
            "trials": args.trials,
            "raw_optuna_inmemory_ms_per_trial": round(1000 * raw_mem / args.trials, 2),
            "raw_optuna_journal_ms_per_trial": round(1000 * raw_journal / args.trials, 2),
            "automl_ms_per_trial_incl_startup": round(1000 * total / args.trials, 2),
            "automl_ms_per_trial_steady": round(1000 * per_trial, 2),
            "worker_startup_s": round(warm, 2),
            "ratio_vs_raw_journal": round(per_trial / (raw_journal / args.trials), 3),
            "ratio_vs_raw_inmemory": round(per_trial / (raw_mem / args.trials), 3),
            "target": "ratio_vs_raw_journal <= 1.2",
        }

        wall, summary, setup = automl_search(
            args.util_trials, args.seed, 2,
            ["train.num_epochs=1", "toy.noise=0", f"toy.sleep_s={args.util_sleep}", "toy.sleep_by_width=true",
             "toy.checkpoints=false"], tmp / "runs", "util")
        from automl.search.rundir import read_trials

        records = read_trials(setup.run_dir)
        busy = sum(r.duration_s for r in records)
        lengths = [r.duration_s for r in records]
        report["utilisation"] = {
            "workers": 2, "trials": len(records),
            "trial_seconds_min_max": [round(min(lengths), 3), round(max(lengths), 3)],
            "busy_s": round(busy, 2), "wall_s": round(wall, 2),
            "utilisation": round(busy / (2 * wall), 3),
            "note": "wall includes the one-off start of 2 worker processes",
            "target": ">= 0.9",
        }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
