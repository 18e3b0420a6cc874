"""Trial overhead of the Ray Tune backend (``automl run --backend ray``) against raw Ray Tune.

N trivial trials (the toy trainer: 1 epoch, no checkpoint files) on one private local Ray instance
(started once, outside the timings):

* raw Ray Tune: ``tune.Tuner`` with a function trainable that runs the same toy trainer on the same
  resolved spec and ``tune.report``s its epoch; ``OptunaSearch`` over the same define-by-run space
  (``space.suggest``) with the same TPE sampler and seed; no loggers;
* automl: :class:`automl.backends.ray.RayBackend` through the controller (run folder, trial
  numbers actor, ``run_trial`` with spec/metrics/result files, tracker hooks with a NullTracker), no
  promotion.

Both run with Tune's actor reuse on and off ("reuse actors where it helps"). Reported: ms per trial
and the ratio automl / raw for the same reuse setting.

Reproduce:  .venv/bin/python benchmarks/overhead.py --backend ray [--trials 40]
       or:  .venv/bin/python benchmarks/overhead_ray.py [--trials 40] [--workers 2]
Numbers depend on the host (here: 2 shared CPU cores); the ratios are measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def raw_tune(space, base_spec: dict, trials: int, seed: int, workers: int, reuse: bool, storage: Path) -> float:
    """The same toy trainer under plain Ray Tune: config -> spec -> ``plugin.train`` with a reporter that
    only calls ``tune.report`` (no run folder, no trial numbers, no tracker)."""
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from automl.trials.algorithms import make_sampler
    from automl.spec import apply_config

    class Report:
        def report(self, epoch, metrics, checkpoint=None):
            tune.report({**metrics, "epoch": epoch})

        def should_stop(self):
            return False

    def trainable(config):
        from automl.plugins import get_trainer

        spec = apply_config(base_spec, space.from_ray(config))
        get_trainer("toy").train(spec, Path(tempfile.mkdtemp()), Report(), None)

    search = OptunaSearch(space=space.suggest, metric="val_score", mode="max",
                          sampler=make_sampler("tpe", seed, space))
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        tune_config=tune.TuneConfig(search_alg=search, num_samples=trials, max_concurrent_trials=workers,
                                    reuse_actors=reuse),
        run_config=tune.RunConfig(name=f"raw-{reuse}", storage_path=str(storage), verbose=0))
    started = time.perf_counter()
    grid = tuner.fit()
    elapsed = time.perf_counter() - started
    assert len(grid) == trials and not grid.errors
    return elapsed


def automl_ray(trials: int, seed: int, workers: int, reuse: bool, out: Path) -> float:
    from automl.trials.records import Progress
    from automl.backends.ray import RayBackend
    from automl.search.controller import resolve_setup, write_header
    from automl.tracking import NullTracker

    setup = resolve_setup(model="toy", budget=trials, workers=workers, seed=seed, name=f"automl-{reuse}",
                          output=out, overrides=["train.num_epochs=1", "toy.noise=0", "toy.checkpoints=false"],
                          command="benchmarks/overhead_ray.py")
    write_header(setup)
    started = time.perf_counter()
    records = RayBackend(reuse_actors=reuse).run(setup, NullTracker(), Progress())
    elapsed = time.perf_counter() - started
    assert len(records) == trials and all(r.state == "complete" for r in records), [r.state for r in records]
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from automl.plugins import get_trainer
    from automl.search.controller import compile_model_space
    from automl.spec import load_yaml

    plugin = get_trainer("toy")
    from automl.spec import apply_config, parse_overrides

    base_spec = apply_config(load_yaml(plugin.spec_template()),
                             parse_overrides(["train.num_epochs=1", "toy.noise=0", "toy.checkpoints=false"]))
    space = compile_model_space(plugin, base_spec, {})
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             namespace="automl")
    report: dict = {"trials": args.trials, "workers": args.workers,
                    "host_note": "2-core CPU shared machine; one local Ray, started before the timings"}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            for reuse in (True, False):
                raw = raw_tune(space, base_spec, args.trials, args.seed, args.workers, reuse, tmp / "raw")
                ours = automl_ray(args.trials, args.seed, args.workers, reuse, tmp / "runs")
                report[f"reuse_actors={reuse}"] = {
                    "raw_ray_tune_ms_per_trial": round(1000 * raw / args.trials, 1),
                    "automl_ms_per_trial": round(1000 * ours / args.trials, 1),
                    "ratio_automl_vs_raw": round(ours / raw, 3),
                }
    finally:
        ray.shutdown()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
