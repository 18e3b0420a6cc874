"""Optuna samplers made fit for the Ray backend, which pickles its searcher (with the sampler in it)
into the Tune experiment (``tuner.pkl``, what ``Tuner.restore`` reads on ``--resume``).

Why: Optuna 5.1's genetic-algorithm samplers hold a ``threading.Lock`` (``_thread_lock``, guarding their
generation cache), which cannot be pickled, so ``--backend ray --algorithm nsga2`` failed at
``tune.Tuner(...)``. The lock is dropped from the pickled state and made anew on load; the cache it
guards is rebuilt from the study as the sampler's first call after a load does anyway.
"""

from __future__ import annotations

import threading
from typing import Any

import optuna


class NSGAIISampler(optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II sampler, picklable whatever the Optuna version."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if "_thread_lock" in state:
            state["_thread_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "_thread_lock" in state:
            self._thread_lock = threading.Lock()
