"""Where a TPE decision's CPU goes on a large study: cProfile of ``--asks`` asks (ask + ``space.suggest``,
with ``--in-flight`` trials running, told with the simulated curve's value) on a *copy* of a finished
search's journal, with the sampler ``--algorithm tpe`` uses (history window included).

Reproduce (after ``benchmarks/scale.py --trials 10000 --algorithms tpe --out /tmp/scale10k-tpe``):
    cp /tmp/scale10k-tpe/tpe-10000/journal /dev/shm/journal
    .venv/bin/python benchmarks/profile_tpe_ask.py /dev/shm/journal [--asks 150] [--window 250]
The journal is changed (new trials are added): never point it at a run you want to keep.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
import warnings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("journal")
    parser.add_argument("--asks", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=30, help="asks before the profiler starts")
    parser.add_argument("--in-flight", type=int, default=10)
    parser.add_argument("--window", type=int, default=250)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)

    import optuna
    from optuna.storages.journal import JournalFileBackend

    from automl.backends.optuna.journal import IndexedJournalStorage
    from automl.plugins import get_trainer
    from automl.search.controller import compile_model_space
    from automl.spec import load_yaml
    from automl.testing.simulated import CurveModel
    from automl.trials.algorithms import make_sampler

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    plugin = get_trainer("toy")
    space = compile_model_space(plugin, load_yaml(plugin.spec_template()), {})
    storage = IndexedJournalStorage(JournalFileBackend(args.journal))  # the controller's journal
    name = optuna.get_all_study_names(storage)[0]
    study = optuna.load_study(study_name=name, storage=storage,
                              sampler=make_sampler("tpe", 0, space, tpe_window=args.window))
    model = CurveModel()
    print(f"{len(study.get_trials(deepcopy=False))} trials in the study", flush=True)
    profile, cpu_ms, running = cProfile.Profile(), [], []
    for i in range(args.warmup + args.asks):
        if i == args.warmup:
            profile.enable()
        started = time.thread_time()
        trial = study.ask()
        config = space.suggest(trial)
        cpu_ms.append(1000 * (time.thread_time() - started))
        running.append((trial, config))
        if len(running) > args.in_flight:
            done, done_config = running.pop(0)
            study.tell(done, model.value(done_config, 8, 9))
    profile.disable()
    from scale import percentile  # benchmarks/scale.py, beside this script

    unprofiled = cpu_ms[:args.warmup]
    print(f"ask + suggest thread CPU before profiling ({len(unprofiled)} asks): p50 {percentile(unprofiled, 50):.1f} ms, "
          f"p99 {percentile(unprofiled, 99):.1f} ms", flush=True)
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
