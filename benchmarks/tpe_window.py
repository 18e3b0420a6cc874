"""TPE's ask + suggest CPU as the study grows, with and without the history window (issue 18).

A loop of ``--trials`` asks on the toy space with ``--in-flight`` trials running (told in order, the
value from the simulated curve model at its last epoch), journal storage on ``--dir``; prints the
main thread's CPU ms of ask + ``space.suggest``, p50 and max over the ``--block`` asks before each
checkpoint, for each sampler variant:

    default   automl's TPE with ``tpe_window`` 500 (what ``--algorithm tpe`` uses)
    nowindow  the same TPE seeing the whole study (``tpe_window=0``)

Reproduce:  .venv/bin/python benchmarks/tpe_window.py [--trials 2000] [--variants default nowindow]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

CHECKPOINTS = (100, 500, 1000, 2000, 5000, 10000)


def run(variant: str, trials: int, in_flight: int, block: int, folder: Path) -> dict:
    from automl.plugins import get_trainer
    from automl.search.controller import compile_model_space
    from automl.spec import load_yaml
    from automl.testing.simulated import CurveModel
    from automl.trials.algorithms import make_sampler

    plugin = get_trainer("toy")
    space = compile_model_space(plugin, load_yaml(plugin.spec_template()), {})
    model = CurveModel()
    sampler = make_sampler("tpe", 0, space, tpe_window=500 if variant == "default" else 0)
    study = optuna.create_study(direction="maximize", sampler=sampler, study_name=variant,
                                storage=JournalStorage(JournalFileBackend(str(folder / f"{variant}.journal"))))
    cpu_ms, running = [], []
    for _ in range(trials):
        started = time.thread_time()
        trial = study.ask()
        config = space.suggest(trial)
        cpu_ms.append(1000 * (time.thread_time() - started))
        running.append((trial, config))
        if len(running) > in_flight:
            done, done_config = running.pop(0)
            study.tell(done, model.value(done_config, 8, 9))
    out = {}
    for n in CHECKPOINTS:
        if n <= trials:
            window = cpu_ms[n - block:n]
            out[n] = {"p50": round(statistics.median(window), 2), "max": round(max(window), 2)}
    return {"variant": variant, "ask_suggest_cpu_ms": out, "best_value": round(study.best_value, 4)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--block", type=int, default=50)
    parser.add_argument("--variants", nargs="+", default=["default", "nowindow"], choices=("default", "nowindow"))
    parser.add_argument("--dir", default=None, help="where the journals go (default: a temporary folder)")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for variant in args.variants:
            print(json.dumps(run(variant, args.trials, args.in_flight, args.block, Path(tmp))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
