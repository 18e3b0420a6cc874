"""The setup's algorithm as Ray Tune's searcher and scheduler: the fixed points (baseline, warm
start), the searcher that redraws configs failing ``space.check``, and PBT's mutations and repair.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ray
from ray.tune.search import Searcher

from automl.trials.records import SearchSetup
from automl.errors import AutomlError
from automl.trials.algorithms import RAY, check_backend, make_sampler
from automl.backends.ray.trial import _params_of


#: Optuna-sampler algorithms that OptunaSearch can drive
OPTUNA_ALGORITHMS = ("tpe", "gp", "cmaes", "qmc", "nsga2")


#: algorithms whose trials Tune samples from ``space.to_ray()`` (the rest are driven by OptunaSearch)
RAY_DOMAIN_ALGORITHMS = ("random", "hyperband", "bohb", "pbt")


def _fixed_points(setup: SearchSetup, param_space: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Trial 0 (the defaults) then the warm-start configs, in the space's Tune form.

    With a ``param_space`` Tune resolves every ``tune.sample_from`` entry of a trial's config after the
    searcher's point is merged in, and a plain value where it expects the entry's placeholder crashes
    it (``'int' object is not subscriptable`` in ``ray.tune.impl.placeholder``). A parameter that
    depends on another is such an entry: its point carries the helper units it decodes from
    (``to_ray_config``) and leaves the value itself to Tune's resolution, which decodes the same value.
    """
    from ray.tune.search.sample import Function

    points = [dict(setup.space.defaults()), *[dict(c) for c in setup.warm_start_configs]]
    points = [setup.space.to_ray_config(p) for p in points]
    if param_space is None:  # a searcher without a param_space: its point is the trial's whole config
        return points
    derived = {name for name, domain in param_space.items() if isinstance(domain, Function)}
    return [{k: v for k, v in p.items() if k not in derived} for p in points]


class CheckedSearcher(Searcher):
    """Serves the fixed points first (baseline, warm start), then the inner searcher's suggestions,
    re-asking it (and telling it the rejected one failed) when a suggestion fails ``space.check``."""

    def __init__(self, inner, space, fixed: list[dict[str, Any]], metric, mode, max_redraws: int = 50):
        super().__init__(metric=metric, mode=mode)
        self.inner, self.space, self.fixed = inner, space, list(fixed)
        self.max_redraws = max_redraws
        self.fixed_trials: set[str] = set()

    def set_search_properties(self, metric, mode, config, **spec):
        return self.inner.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id):
        if self.fixed:
            self.fixed_trials.add(trial_id)
            return self.fixed.pop(0)
        for attempt in range(self.max_redraws + 1):
            inner_id = trial_id if attempt == 0 else f"{trial_id}-redraw{attempt}"
            config = self.inner.suggest(inner_id)
            if config is None or config == Searcher.FINISHED:
                return config
            if not self.space.check(_params_of(self.space, config)):
                if attempt:  # tell Tune's bookkeeping about the id it will report under
                    self._alias(trial_id, inner_id)
                return config
            self.inner.on_trial_complete(inner_id, error=True)
        return config  # the trial records the problems and fails without training

    def _alias(self, trial_id, inner_id):
        self.__dict__.setdefault("aliases", {})[trial_id] = inner_id

    def _inner_id(self, trial_id):
        return self.__dict__.get("aliases", {}).get(trial_id, trial_id)

    def on_trial_result(self, trial_id, result):
        if trial_id not in self.fixed_trials:
            self.inner.on_trial_result(self._inner_id(trial_id), result)

    def on_trial_complete(self, trial_id, result=None, error=False):
        if trial_id not in self.fixed_trials:
            self.inner.on_trial_complete(self._inner_id(trial_id), result=result, error=error)

    def on_pause(self, trial_id):  # HyperBandForBOHB
        if hasattr(self.inner, "on_pause") and trial_id not in self.fixed_trials:
            self.inner.on_pause(self._inner_id(trial_id))

    def on_unpause(self, trial_id):
        if hasattr(self.inner, "on_unpause") and trial_id not in self.fixed_trials:
            self.inner.on_unpause(self._inner_id(trial_id))

    def save(self, checkpoint_path):

        with open(checkpoint_path, "wb") as fh:
            ray.cloudpickle.dump(self.__dict__, fh)

    def restore(self, checkpoint_path):

        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(ray.cloudpickle.load(fh))


def _plain_domains(space: Any, param_space: Mapping[str, Any]) -> dict[str, Any]:
    """PBT's ``hyperparam_mutations``: the searched names with a sampling domain (not derived values,
    and not the helper units a derived value was decoded from: the trial's config holds the decoded
    value, so mutating its helper would change nothing). A choice goes in as the list of its options:
    PBT resamples or shifts a list, but multiplies a Domain's value by 0.8/1.2, which for a string
    choice is a TypeError inside Tune."""
    from ray.tune.search.sample import Categorical, Float, Integer

    out: dict[str, Any] = {}
    for name, domain in param_space.items():
        if name not in set(space.names) or not isinstance(domain, (Float, Integer, Categorical)):
            continue
        if isinstance(domain, Categorical):
            options: list[Any] = []
            for option in domain.categories:  # a weighted choice repeats its options
                if option not in options:
                    options.append(option)
            out[name] = options
        else:
            out[name] = domain
    return out


class _ExploreRepair:
    """PBT's ``custom_explore_fn``: keep an explored config that passes ``space.check``; otherwise
    resample the whole config from the space's always-valid define-by-run sampler."""

    def __init__(self, space, seed: int | None):
        self.space, self.seed, self.count = space, seed, 0

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        if not self.space.check(_params_of(self.space, config)):
            return config
        self.count += 1
        seed = None if self.seed is None else self.seed * 7919 + self.count
        fresh = self.space.to_ray_config(self.space.sample(seed))
        return {**config, **fresh}


def build_search(setup: SearchSetup, skip_fixed: int = 0) -> tuple[Any, Any, dict[str, Any] | None]:
    """(search_alg, scheduler, param_space) for the setup's algorithm; the first ``skip_fixed`` fixed
    points (baseline, warm start) are left out because those trials exist already."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, PopulationBasedTraining
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    algorithm, settings, space = setup.algorithm, setup.algorithm_settings, setup.space
    metric = setup.monitor.metric if not setup.multi_objective else [m.metric for m in setup.objectives]
    mode = setup.monitor.mode if not setup.multi_objective else [m.mode for m in setup.objectives]
    max_t = max(1, int(setup.max_epochs))
    param_space = space.to_ray() if algorithm in RAY_DOMAIN_ALGORITHMS else None
    fixed = _fixed_points(setup, param_space)[skip_fixed:]

    def optuna_search(name: str):
        sampler = make_sampler(name, setup.seed, space, len(setup.objectives), tpe_window=settings.get("tpe_window"))
        # define-by-run: the space's own suggest keeps option weights and conditions
        inner = OptunaSearch(space=space.suggest, metric=metric, mode=mode, sampler=sampler)
        return CheckedSearcher(inner, space, fixed, metric, mode)

    if algorithm in OPTUNA_ALGORITHMS:
        return optuna_search(algorithm), FIFOScheduler(), None
    if algorithm == "random":
        return (BasicVariantGenerator(points_to_evaluate=fixed, random_state=setup.seed,
                                      max_concurrent=setup.workers), FIFOScheduler(), param_space)
    if algorithm == "asha":
        return (optuna_search("asha"),
                ASHAScheduler(time_attr="training_iteration", metric=metric, mode=mode, max_t=max_t,
                              grace_period=settings["min_epochs"], reduction_factor=settings["reduction_factor"]),
                None)
    if algorithm == "hyperband":
        # Tune's HyperBand pauses trials at a rung and resumes the promoted ones from their checkpoint
        return (BasicVariantGenerator(points_to_evaluate=fixed, random_state=setup.seed),
                HyperBandScheduler(time_attr="training_iteration", metric=metric, mode=mode, max_t=max_t,
                                   reduction_factor=settings["reduction_factor"]), param_space)
    if algorithm == "bohb":
        from ray.tune.schedulers import HyperBandForBOHB
        from ray.tune.search.bohb import TuneBOHB

        inner = TuneBOHB(metric=metric, mode=mode, seed=setup.seed)
        return (CheckedSearcher(inner, space, fixed, metric, mode),
                HyperBandForBOHB(time_attr="training_iteration", metric=metric, mode=mode, max_t=max_t,
                                 reduction_factor=settings["reduction_factor"]), param_space)
    if algorithm == "pbt":
        mutations = _plain_domains(space, param_space)
        if not mutations:
            raise AutomlError("--algorithm pbt: the space has no parameter PBT can perturb")
        return (BasicVariantGenerator(points_to_evaluate=fixed, random_state=setup.seed,
                                      max_concurrent=setup.workers),
                PopulationBasedTraining(time_attr="training_iteration", metric=metric, mode=mode,
                                        perturbation_interval=settings["perturbation_interval"],
                                        hyperparam_mutations=mutations,
                                        custom_explore_fn=_ExploreRepair(space, setup.seed),
                                        quantile_fraction=settings["quantile_fraction"],
                                        resample_probability=settings["resample_probability"], synch=False),
                param_space)
    check_backend(algorithm, RAY)  # raises: the registry names the backends an algorithm runs on
    raise AssertionError(f"the registry offers {algorithm} on Ray but build_search does not map it")
