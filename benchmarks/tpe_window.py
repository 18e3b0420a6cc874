"""TPE's ask + suggest CPU as the study grows, with and without the history window (issue 18).

A loop of ``--trials`` asks on the toy space with ``--in-flight`` trials running (told in order, the
value from the simulated curve model at its last epoch), journal storage on ``--dir``; prints the
main thread's CPU ms of ask + ``space.suggest``, p50, p99 and max over the ``--block`` asks before each
checkpoint, for each window size (``--windows``; 0: TPE sees the whole study), and the quality of what it
found on the simulated objective: the best measured value, the noise-free value of that config, and the
mean noise-free value of the 10 best measured configs (less luck than the single best).

Reproduce:  .venv/bin/python benchmarks/tpe_window.py [--trials 2000] [--windows 500 200 0] [--seeds 0 1]
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
from optuna.storages.journal import JournalFileBackend

CHECKPOINTS = (100, 500, 1000, 2000, 5000, 10000)


def run(window: int, trials: int, in_flight: int, block: int, folder: Path, seed: int = 0) -> dict:
    from automl.backends.optuna.journal import IndexedJournalStorage
    from automl.plugins import get_trainer
    from automl.search.controller import compile_model_space
    from automl.spec import load_yaml
    from automl.testing.simulated import CurveModel
    from automl.trials.algorithms import make_sampler

    plugin = get_trainer("toy")
    space = compile_model_space(plugin, load_yaml(plugin.spec_template()), {})
    model = CurveModel()
    sampler = make_sampler("tpe", seed, space, tpe_window=window)
    name = f"window{window}-seed{seed}"
    study = optuna.create_study(direction="maximize", sampler=sampler, study_name=name,
                                storage=IndexedJournalStorage(JournalFileBackend(str(folder / f"{name}.journal"))))
    cpu_ms, running, told = [], [], []
    for _ in range(trials):
        started = time.thread_time()
        trial = study.ask()
        config = space.suggest(trial)
        cpu_ms.append(1000 * (time.thread_time() - started))
        running.append((trial, config))
        if len(running) > in_flight:
            done, done_config = running.pop(0)
            value = model.value(done_config, 8, 9)
            study.tell(done, value)
            told.append((value, done_config))
    out = {}
    for n in CHECKPOINTS:
        if n <= trials:
            ordered = sorted(cpu_ms[max(0, n - block):n])
            out[n] = {"p50": round(statistics.median(ordered), 2),
                      "p99": round(ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))], 2),
                      "max": round(ordered[-1], 2)}
    top = sorted(told, key=lambda vc: -vc[0])[:10]
    return {"window": window, "seed": seed, "ask_suggest_cpu_ms": out, "best_value": round(top[0][0], 4),
            "best_true_value": round(model.true_value(top[0][1]), 4),
            "top10_mean_true_value": round(statistics.mean(model.true_value(c) for _, c in top), 4)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--block", type=int, default=200)
    parser.add_argument("--windows", nargs="+", type=int, default=[500, 200, 0],
                        help="tpe_window sizes to compare (0: the whole study)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--dir", default=None, help="where the journals go (default: a temporary folder)")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for seed in args.seeds:
            for window in args.windows:
                print(json.dumps(run(window, args.trials, args.in_flight, args.block, Path(tmp), seed)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
