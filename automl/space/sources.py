"""Where a parameter's random draws come from.

A parameter never talks to Optuna, Ray or numpy directly: it asks a :class:`Source` for named draws
(``float``, ``int``, ``categorical``, ``unit``) and turns them into its value. One source per
backend, side by side:

* :class:`RngSource` -- a numpy ``Generator`` (``SearchSpace.sample``),
* :class:`automl.space.optuna_adapter.TrialSource` -- an ``optuna.Trial`` (define-by-run),
* :class:`UnitSource` -- a resolved Ray config whose helper keys hold ``U[0, 1)`` draws; each draw is
  mapped through the same inverse CDF, so Ray samples the same distributions as the other two.

Every source gives the same distribution for the same call; keys name the draws so that a sampler
(TPE, CMA-ES, ...) can model them across trials.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: largest float below 1.0: a unit draw is always in [0, 1)
_BELOW_ONE = math.nextafter(1.0, 0.0)


@dataclass(frozen=True)
class Draw:
    """One draw that reproduces a value: ``result`` is what ``Source.<method>(key, *args)`` returned."""

    key: str
    result: Any
    method: str            # "float", "int", "categorical" or "unit"
    args: tuple = ()


class Source(abc.ABC):
    @abc.abstractmethod
    def float(self, key: str, low: float, high: float, log: bool = False) -> float: ...

    @abc.abstractmethod
    def int(self, key: str, low: int, high: int, step: int = 1, log: bool = False) -> int: ...

    @abc.abstractmethod
    def categorical(self, key: str, choices: Sequence[Any]) -> Any: ...

    @abc.abstractmethod
    def unit(self, key: str) -> float:
        """A uniform draw in [0, 1)."""


def from_unit(u: float, low: float, high: float, log: bool) -> float:
    if high <= low:
        return low
    if log:
        value = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    else:
        value = low + u * (high - low)
    return min(max(value, low), high)


def int_from_unit(u: float, low: int, high: int, step: int, log: bool) -> int:
    n = (high - low) // step + 1
    if n <= 1:
        return low
    if log and step == 1 and low >= 1:
        # log-uniform over [low, high + 1), floored: each integer gets its share of log space
        value = int(math.floor(math.exp(math.log(low) + u * (math.log(high + 1) - math.log(low)))))
        return min(max(value, low), high)
    return low + step * min(int(u * n), n - 1)


class RngSource(Source):
    """Plain seeded sampling with numpy."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def unit(self, key: str) -> float:
        return float(self.rng.random())

    def float(self, key: str, low: float, high: float, log: bool = False) -> float:
        return from_unit(self.unit(key), low, high, log)

    def int(self, key: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        return int_from_unit(self.unit(key), low, high, step, log)

    def categorical(self, key: str, choices: Sequence[Any]) -> Any:
        return choices[int(self.rng.integers(len(choices)))]


class UnitSource(Source):
    """Draws read from a mapping of unit values: ``key`` for ``unit()``, ``key + '__u'`` otherwise."""

    def __init__(self, units: Mapping[str, Any]):
        self.units = units

    @staticmethod
    def helper(key: str, kind: str) -> str:
        return key if kind == "unit" else f"{key}__u"

    def unit(self, key: str) -> float:
        return min(max(float(self.units[key]), 0.0), _BELOW_ONE)

    def _u(self, key: str) -> float:
        return self.unit(self.helper(key, "value"))

    def float(self, key: str, low: float, high: float, log: bool = False) -> float:
        return from_unit(self._u(key), low, high, log)

    def int(self, key: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        return int_from_unit(self._u(key), low, high, step, log)

    def categorical(self, key: str, choices: Sequence[Any]) -> Any:
        return choices[min(int(self._u(key) * len(choices)), len(choices) - 1)]


def pick_without_replacement(src: Source, key: str, pool: list[Any], k: int) -> list[Any]:
    """``k`` distinct items of ``pool``, uniformly, from ``k`` named unit draws ``key__u{i}``."""
    pool = list(pool)
    out = []
    for i in range(min(k, len(pool))):
        u = src.unit(f"{key}__u{i}")
        out.append(pool.pop(min(int(u * len(pool)), len(pool) - 1)))
    return out


def encode_picks(key: str, pool: list[Any], picked: list[Any]) -> list[Draw]:
    """The unit draws ``key__u{i}`` that make :func:`pick_without_replacement` return ``picked``."""
    pool = list(pool)
    out = []
    for i, item in enumerate(picked):
        j = pool.index(item)
        out.append(Draw(f"{key}__u{i}", (j + 0.5) / len(pool), "unit"))
        pool.pop(j)
    return out


def unit_of(draw: Draw) -> float:
    """The ``U[0, 1)`` value that :class:`UnitSource` maps to ``draw.result`` (inverse CDFs)."""
    if draw.method == "unit":
        return float(draw.result)
    if draw.method == "float":
        lo, hi, log = draw.args
        if hi <= lo:
            return 0.0
        if log:
            u = (math.log(draw.result) - math.log(lo)) / (math.log(hi) - math.log(lo))
        else:
            u = (draw.result - lo) / (hi - lo)
        return min(max(u, 0.0), _BELOW_ONE)
    if draw.method == "int":
        lo, hi, step, log = draw.args
        n = (hi - lo) // step + 1
        if n <= 1:
            return 0.0
        if log and step == 1 and lo >= 1:
            mid = (math.log(draw.result) + math.log(draw.result + 1)) / 2
            return min(max((mid - math.log(lo)) / (math.log(hi + 1) - math.log(lo)), 0.0), _BELOW_ONE)
        return ((draw.result - lo) // step + 0.5) / n
    choices = list(draw.args[0])
    return (choices.index(draw.result) + 0.5) / len(choices)
