"""The controller's journal storage (automl.backends.optuna.journal): its two fast reads give what
Optuna's own JournalStorage gives, on the same file, while trials are enqueued, asked, told and written
by a second opener; and the windowed TPE samples the same configs over it."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from automl.backends.optuna.journal import IndexedJournalStorage
from automl.backends.optuna.storage import open_storage
from automl.trials.window import WindowedSampler

WAITING = (TrialState.WAITING,)


def _pair(path):
    """The fast storage and Optuna's own, both on the journal at ``path``."""
    return IndexedJournalStorage(JournalFileBackend(str(path))), JournalStorage(JournalFileBackend(str(path)))


def _same(fast, plain, study_id):
    waiting = [t.number for t in fast.get_all_trials(study_id, deepcopy=False, states=WAITING)]
    assert waiting == [t.number for t in plain.get_all_trials(study_id, deepcopy=False, states=WAITING)]
    by_number = fast.trials_by_number(study_id)
    every = plain.get_all_trials(study_id, deepcopy=False)
    assert len(by_number) == len(every)
    assert [(t.number, t.state, t.params) for t in by_number] == [(t.number, t.state, t.params) for t in every]
    for n in {0, len(every) // 2, len(every) - 1} if every else ():
        assert by_number[n].number == n
    assert [t.number for t in by_number[-5:]] == [t.number for t in every[-5:]]
    return waiting


def test_waiting_trials_and_trials_by_number_match_optunas_own_reads(tmp_path):
    fast, plain = _pair(tmp_path / "journal")
    study = optuna.create_study(storage=fast, study_name="s", sampler=optuna.samplers.RandomSampler(seed=0))
    sid = study._study_id
    assert _same(fast, plain, sid) == []
    study.enqueue_trial({"x": 0.5})
    study.enqueue_trial({"x": 0.25})
    assert _same(fast, plain, sid) == [0, 1]
    for _ in range(30):  # the enqueued ones first, then sampled ones; some left running
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        if trial.number % 3:
            study.tell(trial, trial.number / 10)
    assert _same(fast, plain, sid) == []
    # a second opener (another process, as far as the journal goes) enqueues after the lookup moved on
    other = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(tmp_path / "journal"))))
    other.enqueue_trial({"x": 0.75})
    assert _same(fast, plain, sid) == [30]
    assert study.ask().suggest_float("x", 0, 1) == 0.75  # popped from the queue, not sampled
    assert _same(fast, plain, sid) == []
    # a fresh opener replays the file from the start
    reopened, _ = _pair(tmp_path / "journal")
    assert _same(reopened, plain, sid) == []


def test_an_unknown_study_is_optunas_key_error(tmp_path):
    fast, _ = _pair(tmp_path / "journal")
    with pytest.raises(KeyError):
        fast.get_all_trials(7, states=WAITING)
    with pytest.raises(KeyError):
        fast.trials_by_number(7)


def test_windowed_tpe_samples_the_same_over_both_storages(tmp_path):
    """The window cut from trials_by_number is the one cut from Optuna's full list: same seed, same configs."""

    def params(storage):
        sampler = WindowedSampler(optuna.samplers.TPESampler(seed=3, multivariate=True, constant_liar=True,
                                                             n_startup_trials=5), 20, keep_best=5)
        study = optuna.create_study(storage=storage, sampler=sampler, study_name="w")
        running = []
        for _ in range(120):
            trial = study.ask()
            x, y = trial.suggest_float("x", -5, 5), trial.suggest_int("y", 0, 9)
            running.append((trial, (x - 1) ** 2 + y))
            if len(running) > 4:  # a few in flight, as on a cluster: the window keeps them
                done, value = running.pop(0)
                study.tell(done, value)
        return [t.params for t in study.trials]

    fast = params(IndexedJournalStorage(JournalFileBackend(str(tmp_path / "fast"))))
    assert fast == params(JournalStorage(JournalFileBackend(str(tmp_path / "plain"))))
    assert len({tuple(p.items()) for p in fast}) > 100  # it sampled, it did not repeat one point


def test_the_controller_opens_its_journals_with_the_fast_reads(tmp_path):
    assert isinstance(open_storage(SimpleNamespace(storage=None, run_dir=tmp_path)), IndexedJournalStorage)
    journal = open_storage(SimpleNamespace(storage=f"journal://{tmp_path / 'shared.journal'}", run_dir=tmp_path))
    assert isinstance(journal, IndexedJournalStorage)
