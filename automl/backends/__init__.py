"""Search backends side by side: ``optuna`` (embedded, :mod:`automl.backends.optuna`) and
``ray`` (:mod:`automl.backends.ray`). Both implement :class:`automl.backends.base.SearchBackend`
and are found by name through :mod:`automl.trials.registry`."""

from __future__ import annotations

from automl.backends.base import SearchBackend
from automl.trials.registry import BACKENDS, get_backend
from automl.trials.records import Progress, SearchSetup, TrialRecord

__all__ = ["BACKENDS", "Progress", "SearchBackend", "SearchSetup", "TrialRecord", "get_backend"]
