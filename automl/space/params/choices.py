"""Choices: a (weighted) pick from a list of options."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, ClassVar

from automl.space.params.base import Param, is_int
from automl.space.sources import Draw, Source


@dataclass
class CategoricalParam(Param):
    """A choice from ``choices``; ``weights`` (TAO's option_weights) make it a weighted choice.

    Optuna has no weighted categorical, so a weighted choice is drawn as one float ``name__u`` in
    [0, 1) mapped through the cumulative weights (inverse CDF). This keeps the exact probabilities
    under random sampling and lets model-based samplers learn which interval of ``u`` is good; a
    categorical with repeated entries would not, because Optuna stores a choice by its first index.
    """

    choices: list[Any] = field(default_factory=list)
    weights: list[float] | None = None
    label: str = "categorical"

    kind: ClassVar[str] = "categorical"

    def _pick(self, u: float) -> Any:
        total = sum(self.weights)
        acc = 0.0
        last = max(i for i, w in enumerate(self.weights) if w > 0)
        for i, w in enumerate(self.weights):
            acc += w / total
            if w > 0 and (u < acc or i == last):
                return self.choices[i]
        return self.choices[last]

    def draw(self, src: Source, ctx: Mapping[str, Any]) -> Any:
        if self.weights is None:
            return src.categorical(self.name, list(self.choices))
        return self._pick(src.unit(f"{self.name}__u"))

    def draw_keys(self) -> list[tuple[str, str]]:
        return [(self.name, "value")] if self.weights is None else [(f"{self.name}__u", "unit")]

    def encode(self, value: Any, ctx: Mapping[str, Any]) -> list[Draw]:
        index = next(i for i, c in enumerate(self.choices) if c == value and type(c) is type(value)
                     or is_int(c) and is_int(value) and c == value)
        if self.weights is None:
            return [Draw(self.name, self.choices[index], "categorical", (tuple(self.choices),))]
        total = sum(self.weights)
        before = sum(self.weights[:index]) / total
        return [Draw(f"{self.name}__u", before + self.weights[index] / total / 2, "unit")]

    def allowed_choices(self) -> list[Any]:
        if self.weights is None:
            return list(self.choices)
        return [c for c, w in zip(self.choices, self.weights) if w > 0]

    def check(self, value: Any, ctx: Mapping[str, Any]) -> list[str]:
        allowed = self.allowed_choices()
        if not any(value == c and type(value) is type(c) or (is_int(value) and is_int(c) and value == c)
                   for c in allowed):
            return self._bad(f"{value!r} is not one of {allowed}")
        return []

    def repair(self, value: Any, ctx: Mapping[str, Any]) -> Any:
        if not self.check(value, ctx):
            return value
        if self.weights is not None:
            return self.choices[max(range(len(self.choices)), key=lambda i: self.weights[i])]
        return self.choices[0]

    def ray_domain(self) -> Any:
        from ray import tune

        if self.weights is None:
            return tune.choice(list(self.choices))
        expanded = expand_weights(self.choices, self.weights)
        return tune.choice(expanded) if expanded is not None else None

    def describe(self) -> dict[str, Any]:
        row = super().describe()
        row.update(type=self.label, range="{" + ", ".join(map(str, self.choices)) + "}", scale="")
        if self.weights is not None:
            total = sum(self.weights)
            row["weights"] = ", ".join(f"{w / total:.3g}" for w in self.weights)
        return row


def expand_weights(choices: Sequence[Any], weights: Sequence[float], limit: int = 200) -> list[Any] | None:
    """A list with each choice repeated in proportion to its weight, when that is exact in ``limit``
    entries (Ray's ``tune.choice`` is uniform); ``None`` otherwise."""
    total = sum(weights)
    fracs = [Fraction(w / total).limit_denominator(limit) for w in weights]
    if any(abs(float(f) - w / total) > 1e-12 for f, w in zip(fracs, weights)):
        return None
    denom = math.lcm(*[f.denominator for f in fracs])
    if denom > limit:
        return None
    out = []
    for c, f in zip(choices, fracs):
        out += [c] * int(f * denom)
    return out


