"""A sliding window over the study's history for Optuna's TPE (``--setting tpe_window=N``).

Why: Optuna's TPE reads every finished trial at every ask (the group decomposition of the space, the
split into good and bad trials, one Parzen kernel per trial), so a decision costs time linear in the
study's size: ~124 ms per ask at 500-1000 trials on this 2-core host under load (benchmarks/scale.py,
2026-12-02), seconds at 10k. TPE's "good" set is the best ``min(ceil(0.1 n), 25)`` trials (Optuna's
default gamma), so the sampler is handed the most recent ``window`` trials plus the best ``keep_best``
complete ones and every running one (constant liar): the good set stays the study's best, the bad set
is a recent sample of it. Below ``window`` trials nothing changes. The sampler itself stays Optuna's.

The window is cut once per decision: TPE asks the study for its trials three times per ask (the
group decomposition, the relative sample, the constant-liar sample), and each of those was a scan of
the whole history in the storage plus a state filter over it (profile at 5,000 trials, 2026-12-02:
~60 % of an ask). The view keeps the window it cut for the trial being sampled until a trial hook
says the study changed; each call then filters only the window. The cut itself reads only the window
from a storage that lends its trials by number (the controller's journal,
:mod:`automl.backends.optuna.journal`); from any other storage it takes the tail of the full list.
"""

from __future__ import annotations

import bisect
import copy
import heapq
from typing import Any

from optuna.samplers import BaseSampler
from optuna.trial import TrialState

#: TPE's default gamma never puts more than 25 trials in its good set
KEEP_BEST = 25


class _StudyWindow:
    """The study as the wrapped sampler sees it: ``trials`` (a window of its history, in number order)
    for every trial query, everything else the study's."""

    def __init__(self, study: Any, trials: list):
        self._study, self._trials = study, trials

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states=None, use_cache: bool = False) -> list:
        trials = self._trials if states is None else [t for t in self._trials if t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials


def _history(study: Any):
    """The study's trials in number order: a storage's ``trials_by_number`` read where it has one (the
    journal's, :mod:`automl.backends.optuna.journal`: no scan of the study), else the whole list."""
    by_number = getattr(study._storage, "trials_by_number", None)
    return by_number(study._study_id) if by_number else study._get_trials(deepcopy=False, use_cache=False)


def _cut(study: Any, window: int, best: _Best) -> list:
    """The window of ``study``'s history: the latest ``window`` trials, plus the best complete ones and
    the running ones before them; the whole history when it is no longer than ``window``."""
    trials = _history(study)
    if len(trials) <= window or study._is_multi_objective():
        return trials[:]
    recent = trials[-window:]
    first_recent = recent[0].number
    wanted = {n for n in best.numbers(study) if n < first_recent}
    wanted |= {n for n in best.running if n < first_recent}
    older = [trials[i] for i in (bisect.bisect_left(trials, n, hi=len(trials) - window,
                                                    key=lambda t: t.number) for n in sorted(wanted))
             if i < len(trials) - window and trials[i].number in wanted]
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
        self._changes = 0  # bumped by every trial hook: a window cut before it is out of date
        self._cut: tuple[tuple, list] | None = None

    def _view(self, study: Any, trial: Any = None) -> _StudyWindow:
        """The window for sampling ``trial``: cut once, reused by the sampler's further calls for the same
        trial while no trial started or finished (``trial`` None: cut afresh)."""
        key = (id(study), trial.number if trial is not None else None, self._changes)
        cut = self._cut
        if trial is None or cut is None or cut[0] != key:
            cut = (key, _cut(study, self.window, self._best))
            self._cut = cut
        return _StudyWindow(study, cut[1])

    def infer_relative_search_space(self, study, trial):
        return self.inner.infer_relative_search_space(self._view(study, trial), trial)

    def sample_relative(self, study, trial, search_space):
        return self.inner.sample_relative(self._view(study, trial), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.inner.sample_independent(self._view(study, trial), trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._changes += 1
        self._best.running.add(trial.number)
        self.inner.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._changes += 1
        self._best.running.discard(trial.number)
        if state == TrialState.COMPLETE and values and not study._is_multi_objective():
            self._best.add(study, trial.number, values[0])
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
