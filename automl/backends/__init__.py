"""Search backends side by side: ``optuna`` (embedded, :mod:`automl.backends.optuna_backend`) and
``ray`` (:mod:`automl.backends.ray_backend`). Both implement :class:`automl.backends.base.SearchBackend`."""

from __future__ import annotations

import importlib

from automl.backends.base import Progress, SearchBackend, SearchSetup, TrialRecord
from automl.errors import AutomlError

BACKENDS = {"optuna": "automl.backends.optuna_backend:OptunaBackend",
            "ray": "automl.backends.ray_backend:RayBackend"}


def get_backend(name: str) -> SearchBackend:
    if name not in BACKENDS:
        raise AutomlError(f"--backend '{name}': allowed: {', '.join(BACKENDS)}")
    module, attr = BACKENDS[name].split(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise AutomlError(f"--backend {name} is not available ({exc})") from None
    return cls()


__all__ = ["BACKENDS", "Progress", "SearchBackend", "SearchSetup", "TrialRecord", "get_backend"]
