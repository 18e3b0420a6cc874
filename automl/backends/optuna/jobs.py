"""A job of the embedded backend (one trial, or one more stretch of it) and the translations between
our configs and states and Optuna's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automl.trials import rundir
from automl.trials.records import TrialState
from automl.trials.rundir import CONFIG


@dataclass
class Job:
    number: int
    config: dict[str, Any]
    kind: str = "new"  # new | promote | rerun | pbt
    max_epochs: int | None = None
    resume_from: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: epochs the worker reported for this job so far (what a killed stretch trained)
    reported: int = 0


def plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value


def enqueue_params(space: Any, config: dict[str, Any]) -> dict[str, Any]:
    """The Optuna params that make ``space.suggest`` return ``config`` (spaces that sample through
    helper parameters translate; otherwise the dotted names are the Optuna names)."""
    translate = getattr(space, "optuna_params", None)
    return dict(translate(config)) if callable(translate) else dict(config)


def saved_config(folder: Path) -> dict[str, Any] | None:
    """The trial's config.json, None when it was never written (a corrupt one raises)."""
    return rundir.read_json(folder / CONFIG) if (folder / CONFIG).exists() else None


def optuna_state(state: str):
    from optuna.trial import TrialState as OptunaState

    return {TrialState.COMPLETE: OptunaState.COMPLETE, TrialState.PRUNED: OptunaState.PRUNED, TrialState.FAILED: OptunaState.FAIL}[state]


def our_state(state) -> str:
    from optuna.trial import TrialState as OptunaState

    return {OptunaState.COMPLETE: TrialState.COMPLETE, OptunaState.PRUNED: TrialState.PRUNED, OptunaState.FAIL: TrialState.FAILED}.get(state, TrialState.FAILED)
