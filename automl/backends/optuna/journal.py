"""Optuna's ``JournalStorage``, with the two reads a TPE decision makes costing O(new trials), not O(study).

Why: at 10,000 trials, two full scans of the journal's trial list per ask were ~40 % of a TPE decision
(``benchmarks/profile_tpe_ask.py`` on a 10k-trial journal, 2026-12-02): ``Study.ask`` looking for
enqueued (WAITING) trials, and the history window (:mod:`automl.trials.window`) taking the tail of the
list. Each is a Python loop over every trial of the study. Optuna's own ``InMemoryStorage`` already
skips the trials before the first WAITING one in that lookup; this does the same for the journal, and
lends the window the trial list by number without building it.

Both read the replay state the journal keeps in memory (``_replay_result``: the study's trial ids in
number order and the trials by id), which Optuna does not expose; ``tests/test_journal_index.py``
checks them against the public reads, so an Optuna release that moves them fails there, not silently.
"""

from __future__ import annotations

import copy
from collections.abc import Container, Sequence

from optuna.storages import JournalStorage
from optuna.storages.journal._storage import NOT_FOUND_MSG
from optuna.trial import FrozenTrial, TrialState


class TrialsByNumber(Sequence):
    """A study's trials, indexed by trial number, read from the journal's replay state on access."""

    def __init__(self, trial_ids: list[int], trials: dict[int, FrozenTrial]):
        self._ids, self._trials = trial_ids, trials

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._trials[i] for i in self._ids[index]]
        return self._trials[self._ids[index]]


class IndexedJournalStorage(JournalStorage):
    """A ``JournalStorage`` (same file, same format, same other reads) with an O(new trials) lookup of
    WAITING trials and :meth:`trials_by_number`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # per study: no trial numbered below this one is WAITING. The invariant Optuna's InMemoryStorage
        # relies on for the same lookup: a trial is WAITING only from its creation (enqueue_trial, the
        # retry callback), and trials are created at the end of the list
        self._first_waiting: dict[int, int] = {}

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        if states is None or tuple(states) != (TrialState.WAITING,):
            return super().get_all_trials(study_id, deepcopy, states)
        with self._thread_lock:
            self._sync_with_backend()
            replay = self._replay_result
            ids = replay._study_id_to_trial_ids.get(study_id)
            if ids is None:
                raise KeyError(NOT_FOUND_MSG)  # what Optuna's own read raises
            start = self._first_waiting.get(study_id, 0)
            waiting = [t for t in (replay._trials[i] for i in ids[start:]) if t.state == TrialState.WAITING]
            self._first_waiting[study_id] = waiting[0].number if waiting else len(ids)
        return copy.deepcopy(waiting) if deepcopy else waiting

    def trials_by_number(self, study_id: int) -> TrialsByNumber:
        """The study's trials as they are now, without copying them: ``[n]`` is trial ``n``, ``[-k:]`` the
        latest ``k``. The trials are Optuna's own (as ``get_all_trials(deepcopy=False)``): do not change them."""
        with self._thread_lock:
            self._sync_with_backend()
            replay = self._replay_result
            if study_id not in replay._study_id_to_trial_ids:
                raise KeyError(NOT_FOUND_MSG)
            # a copy of the id list (C speed), so that trials created later do not shift the indices
            return TrialsByNumber(list(replay._study_id_to_trial_ids[study_id]), replay._trials)
