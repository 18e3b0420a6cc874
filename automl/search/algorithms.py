"""Algorithm names -> Optuna samplers and pruners, and the multi-fidelity rung ladder.

Sampling always goes through Optuna's samplers. Stopping decisions for the single-fidelity algorithms
use Optuna's pruners (median by default). The multi-fidelity algorithms (asha, hyperband, bohb) use
our own rung/promotion logic (:class:`Rungs`) because Optuna's pruners (SuccessiveHalvingPruner,
HyperbandPruner) can only *stop* a running trial at a rung; they cannot pause it and resume it later
from its checkpoint, which is what makes promotion cost only the extra epochs. bohb = hyperband rungs
+ TPE (Optuna's recommended BOHB-like pairing). pbt has its own scheduler in the backend.
"""

from __future__ import annotations

import math
from typing import Any

from automl.errors import AutomlError, did_you_mean

SINGLE_FIDELITY = ("tpe", "gp", "random", "grid", "cmaes", "qmc", "nsga2")
MULTI_FIDELITY = ("asha", "hyperband", "bohb")
ALGORITHMS = SINGLE_FIDELITY + MULTI_FIDELITY + ("pbt",)
#: TAO's names and common spellings
ALIASES = {"bayesian": "tpe", "bayes": "tpe", "bo": "tpe", "gaussian_process": "gp", "random_search": "random",
           "grid_search": "grid", "cma-es": "cmaes", "cma_es": "cmaes", "sobol": "qmc", "nsga-ii": "nsga2",
           "nsgaii": "nsga2", "successive_halving": "asha"}
#: TAO's AutoML settings and what they mean here
TAO_SETTINGS = {"automl_max_recommendations": "budget", "automl_max_epochs": "max_epochs",
                "automl_reduction_factor": "reduction_factor", "automl_min_epochs": "min_epochs"}


def canonical(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in ALGORITHMS:
        raise AutomlError(f"--algorithm '{name}': unknown{did_you_mean(name, ALGORITHMS)}; "
                          f"allowed: {', '.join(ALGORITHMS)} (TAO names: {', '.join(sorted(ALIASES))})")
    return key


def make_sampler(algorithm: str, seed: int | None, space: Any, n_objectives: int = 1):
    import optuna

    if algorithm in ("asha", "hyperband", "pbt"):
        # sampled at random, as in the papers; bohb (below) models the results with TPE
        return optuna.samplers.RandomSampler(seed=seed)
    if algorithm in ("tpe", "bohb"):
        # constant_liar: parallel workers do not all sample the same promising point
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                          n_startup_trials=5)
    if algorithm == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if algorithm == "cmaes":
        # CMA-ES handles float/int; categorical parameters fall back to an independent TPE sampler
        return optuna.samplers.CmaEsSampler(seed=seed, independent_sampler=optuna.samplers.TPESampler(seed=seed),
                                            warn_independent_sampling=False)
    if algorithm == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    if algorithm == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if algorithm == "grid":
        # the grid points are enqueued as fixed configs (see grid_configs); helpers sample at random
        return optuna.samplers.RandomSampler(seed=seed)
    raise AutomlError(f"no sampler for algorithm '{algorithm}'")


def grid_configs(space: Any, points: int = 3, seed: int | None = None) -> list[dict[str, Any]]:
    """Every valid combination of a few values per parameter, in seeded random order.

    Optuna's GridSampler needs a static space of Optuna parameter names; our spaces are
    define-by-run with helper parameters (weighted choices, lists) and ranges that depend on parents,
    so the grid is built here from the typed parameters and each point is enqueued as a fixed config
    (helpers are then sampled at random, which does not change the config). Floats and wide ints get
    ``points`` evenly spaced values (log-spaced for log params), categoricals all choices, structured
    lists their default. Combinations failing ``space.check`` are dropped.
    """
    import itertools
    import random

    axes = []
    for p in space.params:
        kind = getattr(p, "kind", "")
        if kind == "categorical":
            values = list(p.choices)
        elif kind in ("float", "int"):
            lo, hi = float(p.low), float(p.high)
            if getattr(p, "log", False) and lo > 0:
                vals = [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / max(points - 1, 1)) for i in range(points)]
            else:
                vals = [lo + (hi - lo) * i / max(points - 1, 1) for i in range(points)]
            if kind == "int":
                step = int(getattr(p, "step", 1) or 1)
                if (hi - lo) / step + 1 <= points + 2:
                    vals = list(range(int(lo), int(hi) + 1, step))
                vals = sorted({int(lo + round((v - lo) / step) * step) for v in vals})
            values = vals
        else:
            values = [p.default]
        axes.append((p.name, values))
    names = [n for n, _ in axes]
    grid = [dict(zip(names, combo)) for combo in itertools.product(*[v for _, v in axes])]
    grid = [g for g in grid if not space.check(g)]
    random.Random(seed).shuffle(grid)
    return grid


def make_pruner(algorithm: str, settings: dict[str, Any]):
    """Optuna pruner for single-fidelity algorithms (multi-fidelity ones use :class:`Rungs`)."""
    import optuna

    name = str(settings.get("pruner", "median")).lower()
    if algorithm in MULTI_FIDELITY or algorithm in ("pbt", "nsga2") or name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=int(settings.get("pruner_startup_trials", 3)),
                                           n_warmup_steps=int(settings.get("pruner_warmup_epochs", 1)))
    if name in ("sha", "successive_halving"):
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=int(settings.get("min_epochs", 1)), reduction_factor=int(settings.get("reduction_factor", 3)))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=int(settings.get("min_epochs", 1)),
                                              reduction_factor=int(settings.get("reduction_factor", 3)))
    if name == "percentile":
        return optuna.pruners.PercentilePruner(float(settings.get("percentile", 25.0)))
    raise AutomlError(f"pruner '{name}': allowed: median, sha, hyperband, percentile, none")


class Rungs:
    """The epochs at which multi-fidelity trials pause: ``min * eta**k`` up to ``max_epochs``.

    hyperband/bohb split trials over brackets (trial number modulo the number of brackets); bracket s
    starts at rung s, so brackets trade the number of configurations against their first budget.
    Promotion is ASHA's asynchronous rule: a trial paused at rung k is promoted when it is among the
    top ``floor(n_k / eta)`` of the ``n_k`` trials of its bracket that reached rung k.
    """

    def __init__(self, max_epochs: int, min_epochs: int = 1, reduction_factor: int = 3, brackets: bool = False):
        if reduction_factor < 2:
            raise AutomlError(f"reduction_factor {reduction_factor}: must be at least 2")
        if min_epochs < 1 or min_epochs > max_epochs:
            raise AutomlError(f"min_epochs {min_epochs}: must be between 1 and max_epochs ({max_epochs})")
        self.eta = reduction_factor
        ladder = []
        r = min_epochs
        while r < max_epochs:
            ladder.append(int(r))
            r *= reduction_factor
        ladder.append(int(max_epochs))
        self.ladder = ladder
        self.n_brackets = len(ladder) if brackets else 1

    def bracket(self, number: int) -> int:
        return number % self.n_brackets

    def rungs(self, number: int) -> list[int]:
        return self.ladder[self.bracket(number):]

    def first(self, number: int) -> int:
        return self.rungs(number)[0]

    def next_after(self, number: int, epochs_done: int) -> int | None:
        for r in self.rungs(number):
            if r > epochs_done:
                return r
        return None
