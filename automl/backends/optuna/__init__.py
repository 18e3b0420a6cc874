"""The embedded backend (``--backend optuna``), one job per module: :mod:`.storage` (the study),
:mod:`.workers` (one long-lived worker process per slot), :mod:`.jobs` (a job and Optuna's states),
:mod:`.search` (the scheduling loop, :class:`OptunaBackend`), :mod:`.promotion` (multi-fidelity
rungs), :mod:`.pbt` (population based training) and :mod:`.recovery` (resume)."""

from automl.backends.optuna.search import OptunaBackend

__all__ = ["OptunaBackend"]
