"""Search backends by name (``--backend``): where each one's class lives, imported on use.

The controller (:mod:`automl.search`) picks a backend here by name, so it never imports
:mod:`automl.backends` (nor Ray, for an embedded search); the backends import the records from
:mod:`automl.trials` and never the controller.
"""

from __future__ import annotations

import importlib
from typing import Any

from automl.errors import AutomlError

BACKENDS = {"optuna": "automl.backends.optuna:OptunaBackend",
            "ray": "automl.backends.ray:RayBackend"}


def get_backend(name: str, **options: Any):
    """A new :class:`automl.backends.base.SearchBackend` of this name; ``options`` go to its
    constructor (e.g. the Ray backend's ``address``)."""
    if name not in BACKENDS:
        raise AutomlError(f"--backend '{name}': allowed: {', '.join(BACKENDS)}")
    module, attr = BACKENDS[name].split(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise AutomlError(f"--backend {name} is not available ({exc})") from None
    return cls(**options)
