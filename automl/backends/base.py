"""The :class:`SearchBackend` base class. The records a backend reads and returns
(:class:`~automl.trials.records.SearchSetup`, :class:`~automl.trials.records.TrialRecord`,
:class:`~automl.trials.records.Progress`) live in :mod:`automl.trials.records`, below both the backends
and the controller.

The controller (:mod:`automl.search.controller`) resolves the user's command into a
:class:`SearchSetup`, writes the run folder header (``search.json``, ``base_spec.yaml``,
``space.json``) and hands the setup to a backend. A backend runs the trials and returns one
:class:`TrialRecord` per trial; the controller then promotes the winner and writes the summary. The
Optuna backend (:mod:`automl.backends.optuna`) and the Ray Tune backend
(:mod:`automl.backends.ray`) sit side by side behind this class; neither calls the other.

Shared helpers a backend should use instead of re-implementing them:

* :func:`automl.trials.worker.run_trial` runs one trial inside whatever process the backend provides
  (writes ``spec.yaml``, ``train.log``, ``metrics.jsonl``, ``result.json`` in the trial folder);
* :mod:`automl.trials.rundir` knows the run-folder layout (``trial_dir``, ``write_result``,
  ``read_trials``, ...);
* :mod:`automl.trials.slots` turns ``--gpus/--gpus-per-trial/--trials-per-gpu/--workers`` into slots,
  each with the ``CUDA_VISIBLE_DEVICES`` value its trials run under;
* :mod:`automl.trials.algorithms` is the algorithm registry (settings and their defaults, rungs) and
  :mod:`automl.trials.outcome` the rules about outcomes (best value, ranking, failure streak, a
  trial's record rebuilt from its folder).
"""

from __future__ import annotations

import abc
from typing import Any

from automl.trials.records import Progress, SearchSetup, TrialRecord


class SearchBackend(abc.ABC):
    """Runs the trials of a :class:`SearchSetup`.

    A backend must:

    * run trial 0 with ``setup.space.defaults()`` (the baseline), then ``setup.warm_start_configs``,
      then sampled configs, ``setup.budget_trials`` in all (counting trials done before a resume);
    * give every trial a number unique within the run folder (never reused after a resume) and run it
      in ``rundir.trial_dir(setup.run_dir, number)`` through :func:`automl.trials.worker.run_trial`
      in a process of its own (a crash must not take the search down);
    * never start a config for which ``setup.space.check(config)`` returns problems (record it failed
      with the problems as reason instead);
    * record a raising, crashing, killed or timed-out trial as ``failed`` with a reason and go on, and
      stop after ``setup.max_consecutive_failures`` failures in a row (raising
      :class:`automl.errors.AutomlError` is not needed: return the records, set no trial running);
    * call the tracker hooks (:class:`automl.tracking.Tracker`) ``trial_started``, ``trial_epoch``,
      ``trial_finished``, ``search_progress`` from the driver process, and the ``progress`` hooks;
    * with ``setup.resume``, keep finished trials and rerun interrupted ones from their last checkpoint.

    The controller calls ``start_search``/``promoted``/``end_search`` itself and does the promotion.
    """

    #: name used by ``--backend``
    name: str = ""
    #: set by :meth:`run`: why the search stopped before spending its budget (consecutive failures,
    #: time budget), None when it ran to the end
    stop_reason: str | None = None

    def check(self, setup: SearchSetup) -> None:
        """Raise :class:`automl.errors.AutomlError` (one line) for anything about ``setup`` this
        backend would refuse (its storage, its cluster, a name a shared storage already holds). The
        controller calls it before the run folder exists, so a refused command leaves nothing behind
        and can be corrected under the same name."""

    @abc.abstractmethod
    def run(self, setup: SearchSetup, tracker: Any, progress: Progress) -> list[TrialRecord]:
        """Run the search; return every trial of the run folder (resumed ones included), by number."""
