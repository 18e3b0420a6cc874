"""A sliding window over the study's history for Optuna's TPE (``--setting tpe_window=N``).

Why: Optuna's TPE reads every finished trial at every ask (the group decomposition of the space, the
split into good and bad trials, one Parzen kernel per trial), so a decision costs time linear in the
study's size: ~124 ms per ask at 500-1000 trials on this 2-core host under load (benchmarks/scale.py,
2026-12-02), seconds at 10k. TPE's "good" set is the best ``min(ceil(0.1 n), 25)`` trials (Optuna's
default gamma), so the sampler is handed the most recent ``window`` trials plus the best ``keep_best``
complete ones and every running one (constant liar): the good set stays the study's best, the bad set
is a recent sample of it. Below ``window`` trials nothing changes. The sampler itself stays Optuna's.
"""

from __future__ import annotations

import heapq
from typing import Any

from optuna.samplers import BaseSampler
from optuna.trial import TrialState

#: TPE's default gamma never puts more than 25 trials in its good set
KEEP_BEST = 25


class _StudyWindow:
    """The study as the wrapped sampler sees it: a window of its trials, everything else the study's."""

    def __init__(self, study: Any, window: int, keep_best: int):
        self._study, self._window, self._keep_best = study, window, keep_best

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states=None, use_cache: bool = False) -> list:
        trials = self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        if len(trials) <= self._window or self._study._is_multi_objective():
            return trials
        recent = trials[-self._window:]
        first_recent = recent[0].number
        older = trials[:-self._window]
        complete = [t for t in older if t.state == TrialState.COMPLETE and t.value is not None]
        pick = heapq.nlargest if self._study.direction.name == "MAXIMIZE" else heapq.nsmallest
        best = pick(self._keep_best, complete, key=lambda t: t.value)
        running = [t for t in older if t.state == TrialState.RUNNING]
        kept = {t.number: t for t in (*best, *running) if t.number < first_recent}
        return [kept[n] for n in sorted(kept)] + recent


class WindowedSampler(BaseSampler):
    """Optuna ``inner`` sampler over :class:`_StudyWindow`; trial hooks see the whole study."""

    def __init__(self, inner: BaseSampler, window: int, keep_best: int = KEEP_BEST):
        self.inner, self.window, self.keep_best = inner, int(window), int(keep_best)

    def _view(self, study: Any) -> Any:
        return _StudyWindow(study, self.window, self.keep_best)

    def infer_relative_search_space(self, study, trial):
        return self.inner.infer_relative_search_space(self._view(study), trial)

    def sample_relative(self, study, trial, search_space):
        return self.inner.sample_relative(self._view(study), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.inner.sample_independent(self._view(study), trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
