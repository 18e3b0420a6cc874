"""The TPE history window (--setting tpe_window): what the sampler sees, and that it still optimises."""

from __future__ import annotations

import optuna

from automl.trials.algorithms import make_sampler
from automl.trials.window import KEEP_BEST, WindowedSampler


def _study(n: int, direction: str = "maximize") -> optuna.Study:
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=n)
    return study


def test_the_window_holds_the_recent_trials_the_best_ones_and_the_running_ones():
    study = _study(200)
    running = study.ask()  # a trial still running at the end of the history
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=100)
    view = WindowedSampler(optuna.samplers.RandomSampler(), 50)._view(study)
    seen = view._get_trials(deepcopy=False, states=None)
    numbers = [t.number for t in seen]
    assert numbers == sorted(numbers)
    assert numbers[-50:] == list(range(251, 301))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = sorted(complete, key=lambda t: -t.value)[:KEEP_BEST]
    assert {t.number for t in best} <= set(numbers)
    assert running.number in numbers
    assert len(seen) <= 50 + KEEP_BEST + 1
    assert view._get_trials(deepcopy=False, states=None) is not None
    assert WindowedSampler(optuna.samplers.RandomSampler(), 1000)._view(study)._get_trials(deepcopy=False) == \
        study.get_trials(deepcopy=False)


def test_minimising_keeps_the_lowest_values():
    study = _study(120, "minimize")
    seen = WindowedSampler(optuna.samplers.RandomSampler(), 10, keep_best=5)._view(study)._get_trials(deepcopy=False)
    lowest = sorted(study.trials, key=lambda t: t.value)[:5]
    assert {t.number for t in lowest} <= {t.number for t in seen}


def test_the_best_are_kept_from_the_trial_hooks_as_the_study_grows():
    sampler = WindowedSampler(optuna.samplers.RandomSampler(seed=1), 20, keep_best=5)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=150)
    seen = sampler._view(study)._get_trials(deepcopy=False)
    lowest = sorted(study.trials, key=lambda t: (t.value, t.number))[:5]
    older = [t.number for t in seen if t.number < 130]
    assert sorted(older) == sorted(t.number for t in lowest if t.number < 130)
    assert [t.number for t in seen][-20:] == list(range(130, 150))


def test_windowed_tpe_finds_the_optimum_of_a_quadratic():
    sampler = make_sampler("tpe", 0, None, tpe_window=30)
    assert isinstance(sampler, WindowedSampler)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: (t.suggest_float("x", -10, 10) - 3) ** 2, n_trials=120)
    assert abs(study.best_params["x"] - 3) < 0.5
    assert not isinstance(make_sampler("tpe", 0, None), WindowedSampler)
