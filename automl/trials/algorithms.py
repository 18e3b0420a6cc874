"""The algorithm registry: every ``--algorithm`` with its TAO aliases, its settings (types, defaults,
ranges), the backends that run it and whether it optimises several objectives; plus the Optuna samplers
and pruners and the multi-fidelity rung ladder (:class:`Rungs`).

The CLI (``--help``), the controller (names, settings, objectives), both backends and README read the
registry; no other module lists algorithms or setting defaults.

Sampling in the embedded backend always goes through Optuna's samplers. Stopping decisions for the
single-fidelity algorithms use Optuna's pruners (median by default). The multi-fidelity algorithms
(asha, hyperband, bohb) use our own rung/promotion logic (:class:`Rungs`) because Optuna's pruners
(SuccessiveHalvingPruner, HyperbandPruner) can only *stop* a running trial at a rung; they cannot pause
it and resume it later from its checkpoint, which is what makes promotion cost only the extra epochs.
bohb = hyperband rungs + TPE (Optuna's recommended BOHB-like pairing). pbt has its own scheduler in the
embedded backend; the Ray backend maps each algorithm to Ray Tune's searchers and schedulers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from automl.errors import AutomlError, did_you_mean

OPTUNA, RAY = "optuna", "ray"


@dataclass(frozen=True)
class Setting:
    """One ``--setting KEY=VALUE``. ``default`` is a value or a function of (max_epochs, budget)."""

    name: str
    type: type
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    #: a computed default's rule, as the user reads it
    rule: str = ""

    def default_text(self) -> str:
        return self.rule or str(self.default)

    def default_for(self, max_epochs: int, budget: int) -> Any:
        return self.default(max_epochs, budget) if callable(self.default) else self.default

    def parse(self, value: Any) -> Any:
        """The value as this setting's type, within its range; a one-line AutomlError otherwise."""
        where = f"--setting {self.name}={value!r}"
        try:
            if self.type is bool:
                text = str(value).strip().lower()
                if text not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                out: Any = text in ("true", "1", "yes")
            elif self.type is int:
                if isinstance(value, bool) or float(value) != int(float(value)):
                    raise ValueError
                out = int(float(value))
            else:
                out = self.type(value)
        except (TypeError, ValueError):
            raise AutomlError(f"{where}: expected {self.type.__name__} ({self.help})") from None
        if self.choices and str(out).lower() not in self.choices:
            raise AutomlError(f"{where}: allowed: {', '.join(self.choices)}")
        if self.low is not None and out < self.low or self.high is not None and out > self.high:
            bounds = f"between {self.low:g} and {self.high:g}" if self.high is not None else f"at least {self.low:g}"
            raise AutomlError(f"{where}: must be {bounds}")
        return str(out).lower() if self.choices else out


# Defaults, one per rule (the backends used to disagree; each choice says why):
#   min_epochs (first rung): max(1, max_epochs // 9). With eta 3 that is a ladder of three rungs
#     ending at the full budget (9 -> 1, 3, 9; 30 -> 3, 9, 27, 30); a fixed first rung of 1 epoch judges a
#     CNN that needs ~3 epochs to separate its configurations on noise.
#   perturbation_interval (pbt): max(1, max_epochs // 3). Each segment is a trial of the budget in the
#     embedded backend, so three segments per member lets a population of 4 finish within 12 trials;
#     Ray exploits at the same epochs, so the two backends explore the same schedule.
#   quantile_fraction (pbt): Ray Tune's name for it (the PBT paper's 25 %), where PBT users look for it.
SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("min_epochs", int, lambda max_epochs, budget: max(1, max_epochs // 9),
            "epochs of the first rung (multi-fidelity; sha/hyperband pruners)", low=1, rule="max(1, max_epochs // 9)"),
    Setting("reduction_factor", int, 3, "eta: a rung keeps the top 1/eta (multi-fidelity, sha/hyperband pruners)", low=2),
    Setting("population", int, lambda max_epochs, budget: max(2, min(4, budget)),
            "members trained side by side (pbt, embedded backend; Ray's population is --workers)", low=2,
            rule="max(2, min(4, budget))"),
    Setting("perturbation_interval", int, lambda max_epochs, budget: max(1, max_epochs // 3),
            "epochs between exploit/explore steps (pbt)", low=1, rule="max(1, max_epochs // 3)"),
    Setting("quantile_fraction", float, 0.25, "the bottom fraction that copies the top one (pbt)", low=0.0, high=0.5),
    Setting("resample_probability", float, 0.25, "chance that explore resamples a categorical (pbt)", low=0.0, high=1.0),
    Setting("grid_points", int, 3, "values per float/int parameter (grid)", low=2),
    Setting("pruner", str, "median", "early stopping of single-fidelity trials (embedded backend)",
            choices=("median", "sha", "successive_halving", "hyperband", "percentile", "none")),
    Setting("pruner_startup_trials", int, 3, "trials before the median pruner acts", low=0),
    Setting("pruner_warmup_epochs", int, 1, "epochs of a trial before it can be pruned", low=0),
    Setting("percentile", float, 25.0, "the percentile pruner's cut", low=0.0, high=100.0),
    # 250: a decision's cost stops growing with the study, and the best configs found on the simulated
    # objective match TPE seeing the whole study within seed noise (benchmarks/tpe_window.py, 2 seeds)
    Setting("tpe_window", int, 250, "TPE sees the latest N trials plus the 25 best (0: all)",
            low=0),
)}
#: settings every algorithm accepts: the warm start's size and the Ray backend's trial plumbing
COMMON_SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("warm_start_top", int, 3, "configs taken from --warm-start's search", low=1),
    Setting("retries", int, 0, "Ray: retries of a failed trial from its checkpoint (FailureConfig)", low=0),
    Setting("cpus_per_trial", float, 1.0, "Ray: CPUs requested per trial", low=0.0),
    Setting("reuse_actors", bool, None, "Ray: reuse a trial's process for the next one (default: where Tune never stops trials)"),
    Setting("ray_checkpoints_to_keep", int, 4, "Ray: Tune checkpoints kept per trial", low=1),
)}
_PRUNED = ("pruner", "pruner_startup_trials", "pruner_warmup_epochs", "percentile", "min_epochs", "reduction_factor")
_RUNGS = ("min_epochs", "reduction_factor")
_PBT = ("population", "perturbation_interval", "quantile_fraction", "resample_probability")


@dataclass(frozen=True)
class Algorithm:
    name: str
    help: str
    #: "single": a trial trains to the end unless pruned; "multi": trials pause at rungs and are
    #: promoted; "population": pbt's segments
    fidelity: str
    settings: tuple[str, ...]
    backends: tuple[str, ...] = (OPTUNA, RAY)
    multi_objective: bool = False
    aliases: tuple[str, ...] = field(default=())


REGISTRY: dict[str, Algorithm] = {a.name: a for a in (
    Algorithm("tpe", "Optuna's TPE (the default); median pruner", "single", (*_PRUNED, "tpe_window"), multi_objective=True,
              aliases=("bayesian", "bayes", "bo")),
    Algorithm("gp", "Gaussian-process Bayesian optimisation", "single", _PRUNED, aliases=("gaussian_process",)),
    Algorithm("random", "random search", "single", _PRUNED, multi_objective=True, aliases=("random_search",)),
    Algorithm("grid", "a few values per parameter, every valid combination", "single", ("grid_points", *_PRUNED),
              backends=(OPTUNA,), aliases=("grid_search",)),
    Algorithm("cmaes", "CMA-ES (categoricals by TPE)", "single", _PRUNED, aliases=("cma-es", "cma_es")),
    Algorithm("qmc", "quasi-Monte-Carlo (Sobol) sampling", "single", _PRUNED, multi_objective=True, aliases=("sobol",)),
    Algorithm("nsga2", "NSGA-II, a Pareto front over --objectives", "single", (), multi_objective=True,
              aliases=("nsga-ii", "nsgaii")),
    Algorithm("asha", "asynchronous successive halving: pause at rungs, promote the top 1/eta", "multi", _RUNGS,
              aliases=("successive_halving",)),
    Algorithm("hyperband", "hyperband brackets of ASHA rungs, random configs", "multi", _RUNGS),
    Algorithm("bohb", "hyperband rungs + TPE (Ray: TuneBOHB, needs hpbandster)", "multi", (*_RUNGS, "tpe_window")),
    Algorithm("pbt", "population based training: segments resume from (better) members' checkpoints", "population", _PBT),
)}
ALGORITHMS = tuple(REGISTRY)
MULTI_FIDELITY = tuple(a.name for a in REGISTRY.values() if a.fidelity == "multi")
MULTI_OBJECTIVE = tuple(a.name for a in REGISTRY.values() if a.multi_objective)
#: TAO's names and common spellings
ALIASES = {alias: a.name for a in REGISTRY.values() for alias in a.aliases}
#: TAO's AutoML settings (in a spec, top level or under ``automl:``, or as ``automl_*=`` overrides) and
#: the setting each becomes here; any other ``automl_*`` key is refused. ``hyperparameters`` (the
#: names to search, exactly), ``delete_intermediate_ckpt`` (false: keep every trial's checkpoints)
#: and ``enabled`` (false: refused, `automl run --automl off` trains once) are read by the controller.
TAO_SETTINGS = {"automl_algorithm": "algorithm", "automl_max_recommendations": "budget",
                "automl_max_epochs": "max_epochs", "automl_reduction_factor": "reduction_factor",
                "automl_min_epochs": "min_epochs", "automl_hyperparameters": "hyperparameters",
                "automl_delete_intermediate_ckpt": "delete_intermediate_ckpt", "automl_enabled": "enabled"}


def canonical(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in ALGORITHMS:
        raise AutomlError(f"--algorithm '{name}': unknown{did_you_mean(name, ALGORITHMS)}; "
                          f"allowed: {', '.join(ALGORITHMS)} (TAO names: {', '.join(sorted(ALIASES))})")
    return key


def check_backend(algorithm: str, backend: str) -> None:
    """The algorithm runs on this backend, or a one-line error naming the ones that do."""
    if backend not in REGISTRY[algorithm].backends:
        offered = [a.name for a in REGISTRY.values() if backend in a.backends]
        raise AutomlError(f"--algorithm {algorithm} is not available with --backend {backend}; "
                          f"allowed: {', '.join(offered)} (use --backend {REGISTRY[algorithm].backends[0]} for it)")


def check_objectives(algorithm: str, n_objectives: int) -> None:
    if n_objectives > 1 and not REGISTRY[algorithm].multi_objective:
        raise AutomlError(f"--objectives with {n_objectives} metrics needs --algorithm "
                          f"{' or '.join(MULTI_OBJECTIVE)}; '{algorithm}' optimises one metric")


def setting_names() -> list[str]:
    """Every ``--setting`` name (any algorithm's, and the common ones)."""
    return [*SETTINGS, *COMMON_SETTINGS]


def check_setting_names(names: Iterable[str], algorithm: str) -> None:
    """Every ``--setting`` name is one the registry knows (TAO spec keys are not checked: a TAO spec
    may carry keys of TAO's own AutoML service that mean nothing here)."""
    known = {**SETTINGS, **COMMON_SETTINGS}
    for key in names:
        if key not in known:
            raise AutomlError(f"--setting {key}: unknown{did_you_mean(key, list(known))}; "
                              f"{algorithm} takes: {', '.join(REGISTRY[algorithm].settings) or 'none'}; "
                              f"every algorithm: {', '.join(COMMON_SETTINGS)}")


def resolve_settings(algorithm: str, given: Mapping[str, Any], *, max_epochs: int, budget: int) -> dict[str, Any]:
    """The algorithm's settings with every default filled in and every known value typed and in range
    (other keys pass through as given). What ``search.json`` records and the backends read."""
    known = {**SETTINGS, **COMMON_SETTINGS}
    out = {key: known[key].parse(value) if key in known and value is not None else value
           for key, value in given.items()}
    for name in REGISTRY[algorithm].settings:
        if out.get(name) is None:
            out[name] = SETTINGS[name].default_for(max_epochs, budget)
    for name, setting in COMMON_SETTINGS.items():
        out.setdefault(name, setting.default_for(max_epochs, budget))
    if REGISTRY[algorithm].fidelity == "multi" and not 1 <= out["min_epochs"] <= max_epochs:
        raise AutomlError(f"--setting min_epochs={out['min_epochs']}: must be between 1 and max_epochs ({max_epochs})")
    return out


def settings_help() -> str:
    """The ``--setting`` help: the settings of each group of algorithms (``automl algorithms`` has
    their defaults)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for a in REGISTRY.values():
        if a.settings:
            groups.setdefault(a.settings, []).append(a.name)
    parts = [f"{'/'.join(names)}: {', '.join(settings)}" for settings, names in groups.items()]
    return "; ".join(parts) + f"; any: {', '.join(COMMON_SETTINGS)} (defaults: `automl algorithms`)"


def make_sampler(algorithm: str, seed: int | None, space: Any, n_objectives: int = 1, tpe_window: int | None = None):
    """The Optuna sampler of an algorithm; ``tpe_window`` > 0: TPE sees a window of the history
    (:mod:`automl.trials.window`)."""
    import optuna

    if algorithm in ("asha", "hyperband", "pbt"):
        # sampled at random, as in the papers; bohb (below) models the results with TPE
        return optuna.samplers.RandomSampler(seed=seed)
    if algorithm in ("tpe", "bohb"):
        # constant_liar: parallel workers do not all sample the same promising point
        tpe = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                         n_startup_trials=5)
        if tpe_window:
            from automl.trials.window import WindowedSampler

            return WindowedSampler(tpe, tpe_window)
        return tpe
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
        # picklable: the Ray backend pickles its searcher (see automl.trials.samplers)
        from automl.trials.samplers import NSGAIISampler

        return NSGAIISampler(seed=seed)
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


def make_pruner(algorithm: str, settings: Mapping[str, Any]):
    """Optuna pruner for single-fidelity algorithms (multi-fidelity ones use :class:`Rungs`);
    ``settings`` as :func:`resolve_settings` returns them."""
    import optuna

    if REGISTRY[algorithm].fidelity != "single" or "pruner" not in REGISTRY[algorithm].settings:
        return optuna.pruners.NopPruner()
    name = settings["pruner"]
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=settings["pruner_startup_trials"],
                                           n_warmup_steps=settings["pruner_warmup_epochs"])
    if name in ("sha", "successive_halving"):
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=settings["min_epochs"],
                                                      reduction_factor=settings["reduction_factor"])
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=settings["min_epochs"],
                                              reduction_factor=settings["reduction_factor"])
    if name == "percentile":
        return optuna.pruners.PercentilePruner(settings["percentile"])
    return optuna.pruners.NopPruner()  # "none"


def rungs_of(setup: Any) -> Rungs:
    """The rung ladder of a multi-fidelity search (hyperband and bohb split it into brackets)."""
    s = setup.algorithm_settings
    return Rungs(setup.max_epochs, s["min_epochs"], s["reduction_factor"], brackets=setup.algorithm in ("hyperband", "bohb"))


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
