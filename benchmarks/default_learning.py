"""Does a model's default config learn, and how noisy is it? Train the template's defaults over several
seeds on the demo data and compare with the untrained network, on validation and on the held-out split.

Reproduce (CPU; one line per seed, then mean +- std; JSON to --out):

    .venv/bin/python benchmarks/default_learning.py --model ml_recog --seeds 5
    .venv/bin/python benchmarks/default_learning.py --model ml_recog --seeds 5 --source fashion-mnist

What varies between seeds is ``train.seed`` only (initial weights, sampler order, augmentation); the data
is generated once with ``--data-seed``. The std printed here is the seed-to-seed noise a search result
has to beat (``automl run`` measures it again on its own baseline, see README "Running searches").
``OMP_NUM_THREADS``/``--threads`` change float reduction order, so single runs differ across machines;
the spread over seeds is the number to compare with.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from automl.plugins import get_trainer
from automl.spec import apply_config, load_yaml, parse_overrides


def _held_out(plugin: Any, data: Path, checkpoint: str) -> float | None:
    keys = getattr(plugin, "evaluation_keys", None)
    metric = getattr(plugin, "evaluation_metric", None)
    if not callable(keys) or not metric:
        return None
    ev_spec = apply_config(load_yaml(plugin.spec_template("evaluate")), {**keys(data), "evaluate.checkpoint": checkpoint})
    with tempfile.TemporaryDirectory() as tmp:
        return float(plugin.evaluate(ev_spec, Path(tmp))["metrics"][metric])


def _untrained(plugin: Any, data: Path, spec: dict[str, Any], out: Path) -> dict[str, float | None]:
    """The same network before its first update: one run stopped after zero optimiser steps is not
    something Lightning offers, so train with every learning rate at 0 for one epoch instead (BatchNorm
    statistics still adapt to the data, as they would at the start of any run)."""
    frozen = apply_config(spec, {k: 0.0 for k in _lr_keys(spec)} | {"train.num_epochs": 1})
    result = plugin.train(frozen, out)
    return {"val": result.get("best_value"), "held_out": _held_out(plugin, data, result["best_checkpoint"])}


def _lr_keys(spec: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            keys += _lr_keys(value, name + ".")
        elif key in ("base_lr", "lr") and isinstance(value, (int, float)):
            keys.append(name)
    return keys


def _stats(values: list[float]) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} +- {std:.3f} (min {min(values):.3f}, max {max(values):.3f})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="ml_recog")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--source", default=None, help="dataset source for `automl data make` (e.g. fashion-mnist)")
    ap.add_argument("--out", default="benchmarks/results/default_learning")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for every run")
    ap.add_argument("overrides", nargs="*", help="spec overrides KEY=VALUE applied to the defaults")
    args = ap.parse_args(argv)

    import logging
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    plugin = get_trainer(args.model)
    out = Path(args.out) / f"{args.model}-{args.source or 'default'}"
    data = out / "data"
    if not (data / ".complete").exists():
        plugin.make_dataset(data, seed=args.data_seed, **({"source": args.source} if args.source else {}))
        (data / ".complete").write_text("ok")
    spec = apply_config(load_yaml(plugin.spec_template("train")), {**plugin.data_keys(data), **parse_overrides(args.overrides)})
    monitor = plugin.monitor.metric

    untrained = _untrained(plugin, data, spec, out / "untrained")
    print(f"untrained: {monitor} {untrained['val']:.3f}, held-out {untrained['held_out']}")
    runs = []
    for k in range(args.seeds):
        seed = 1234 + k
        started = time.perf_counter()
        result = plugin.train(apply_config(spec, {"train.seed": seed}), out / f"seed{seed}")
        wall = time.perf_counter() - started
        held = _held_out(plugin, data, result["best_checkpoint"])
        runs.append({"seed": seed, "val": result["best_value"], "held_out": held, "wall_s": round(wall, 1),
                     "curve": [round(h.get(monitor, float("nan")), 4) for h in result.get("history", [])]})
        print(f"seed {seed}: val {result['best_value']:.3f}  held-out {held if held is None else round(held, 3)}  "
              f"{wall:.0f} s  curve {runs[-1]['curve']}")
    vals = [r["val"] for r in runs]
    helds = [r["held_out"] for r in runs if r["held_out"] is not None]
    print(f"default over {len(runs)} seeds: val {_stats(vals)}")
    print(f"                     held-out {_stats(helds)}")
    print(f"untrained: val {untrained['val']:.3f}, held-out {untrained['held_out']}")
    summary = {"model": args.model, "source": args.source, "overrides": args.overrides, "monitor": monitor,
               "untrained": untrained, "runs": runs, "torch_threads": torch.get_num_threads(),
               "val_mean": statistics.mean(vals), "val_std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
               "held_out_mean": statistics.mean(helds) if helds else None,
               "held_out_std": statistics.stdev(helds) if len(helds) > 1 else None}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    # non-zero when the default does not beat the untrained network: nothing useful came out
    return 0 if statistics.mean(vals) > (untrained["val"] or 0.0) else 1


if __name__ == "__main__":
    raise SystemExit(main())
