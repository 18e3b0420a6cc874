"""Optuna: define-by-run sampling of a :class:`SearchSpace` on an ``optuna.Trial``.

Each draw becomes one ``trial.suggest_*`` call named after the parameter (helpers carry a ``__``
suffix: ``__u`` for a weighted choice's uniform, ``__n``/``__u{i}`` for list sizes and members,
``__k`` for kernel sizes, ``__idx`` for a dependent list's index). Ranges that depend on a parent
(``> depends_on``, ``<= parent``) are dynamic, which Optuna's define-by-run API allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from automl.space.sources import _BELOW_ONE, Source

if TYPE_CHECKING:
    import optuna


class DrawableSpace(Protocol):
    """What this module reads of a :class:`automl.space.space.SearchSpace` (which imports this module,
    so this one names only the methods it calls)."""

    def draw(self, src: Source) -> dict[str, Any]: ...

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]: ...


class TrialSource(Source):
    def __init__(self, trial: optuna.Trial):
        self.trial = trial

    def float(self, key: str, low: float, high: float, log: bool = False) -> float:
        if high <= low:
            return low
        return float(self.trial.suggest_float(key, low, high, log=log))

    def int(self, key: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        if high <= low:
            return int(low)
        high = low + ((high - low) // step) * step
        return int(self.trial.suggest_int(key, int(low), int(high), step=int(step), log=log and step == 1))

    def categorical(self, key: str, choices: Sequence[Any]) -> Any:
        if len(choices) == 1:
            return choices[0]
        return self.trial.suggest_categorical(key, list(choices))

    def unit(self, key: str) -> float:
        # Optuna's float range is closed; [0, 1) keeps inverse-CDF maps exact at the top end
        return min(float(self.trial.suggest_float(key, 0.0, 1.0)), _BELOW_ONE)


def suggest(space: DrawableSpace, trial: optuna.Trial) -> dict[str, Any]:
    return space.draw(TrialSource(trial))


def sample_optuna(space: DrawableSpace, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` configs from an in-memory study with ``RandomSampler(seed)`` (reproducible by seed)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    configs = []
    for _ in range(n):
        trial = study.ask()
        configs.append(space.suggest(trial))
        study.tell(trial, 0.0)
    return configs
