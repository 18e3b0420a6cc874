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

import bisect
import heapq
from typing import Any

from optuna.samplers import BaseSampler
from optuna.trial import TrialState

#: TPE's default gamma never puts more than 25 trials in its good set
KEEP_BEST = 25


class _StudyWindow:
    """The study as the wrapped sampler sees it: a window of its trials, everything else the study's."""

    def __init__(self, study: Any, window: int, best: _Best):
        self._study, self._window, self._best = study, window, best

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states=None, use_cache: bool = False) -> list:
        trials = self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        if len(trials) <= self._window or self._study._is_multi_objective():
            return trials
        recent = trials[-self._window:]
        first_recent = recent[0].number
        wanted = {n for n in self._best.numbers(self._study) if n < first_recent}
        wanted |= {n for n in self._best.running if n < first_recent}
        older = [trials[i] for i in (bisect.bisect_left(trials, n, hi=len(trials) - self._window,
                                                        key=lambda t: t.number) for n in sorted(wanted))
                 if i < len(trials) - self._window and trials[i].number in wanted]
        return older + recent


class _Best:
    """The numbers of the study's best complete trials and of its running ones, kept from the sampler's
    trial hooks (one scan of the study at the first use, e.g. after a resume): a scan of every trial at
    every sampler call was the window's own largest cost (profile at 2,000 trials)."""

    def __init__(self, keep: int):
        self.keep, self.running = keep, set()
        self._heap: list[tuple[float, int]] | None = None  # (loss, -number): the worst of the kept on top

    def numbers(self, study: Any) -> list[int]:
        if self._heap is None:
            self._heap = []
            for t in study._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
                if t.state == TrialState.RUNNING:
                    self.running.add(t.number)
                elif t.values:
                    self.add(study, t.number, t.values[0])
        return [-n for _, n in self._heap]

    def add(self, study: Any, number: int, value: float) -> None:
        if self._heap is None:
            return  # the first numbers() call scans the study
        loss = -value if study.direction.name == "MAXIMIZE" else value
        # a max-heap of losses through negation: the kept trial with the largest loss is popped first
        item = (-loss, -number)
        if len(self._heap) < self.keep:
            heapq.heappush(self._heap, item)
        elif item > self._heap[0]:
            heapq.heapreplace(self._heap, item)


class WindowedSampler(BaseSampler):
    """Optuna ``inner`` sampler over :class:`_StudyWindow`; trial hooks see the whole study."""

    def __init__(self, inner: BaseSampler, window: int, keep_best: int = KEEP_BEST):
        self.inner, self.window, self.keep_best = inner, int(window), int(keep_best)
        self._best = _Best(self.keep_best)

    def _view(self, study: Any) -> Any:
        return _StudyWindow(study, self.window, self._best)

    def infer_relative_search_space(self, study, trial):
        return self.inner.infer_relative_search_space(self._view(study), trial)

    def sample_relative(self, study, trial, search_space):
        return self.inner.sample_relative(self._view(study), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.inner.sample_independent(self._view(study), trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._best.running.add(trial.number)
        self.inner.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._best.running.discard(trial.number)
        if state == TrialState.COMPLETE and values and not study._is_multi_objective():
            self._best.add(study, trial.number, values[0])
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
