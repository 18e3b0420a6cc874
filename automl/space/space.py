"""The compiled, backend-neutral search space."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from automl.space.params import Param
from automl.space.sources import RngSource, Source

SPACE_FORMAT = 1


class SearchSpace:
    """Searched parameters in dependency order, plus the fixed values their constraints read.

    A config is a flat mapping ``{dotted name: value}`` of every searched name.
    """

    def __init__(self, params: list[Param], *, context: Mapping[str, Any] | None = None,
                 baseline: Mapping[str, Any] | None = None, skipped: list[tuple[str, str]] | None = None,
                 warnings: list[str] | None = None, schema_path: str | None = None):
        self.params = list(params)
        self.by_name = {p.name: p for p in self.params}
        self.context = dict(context or {})
        self.baseline = dict(baseline or {})
        self.skipped = [tuple(s) for s in (skipped or [])]
        self.warnings = list(warnings or [])
        self.schema_path = schema_path

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def __len__(self) -> int:
        return len(self.params)

    def __contains__(self, name: str) -> bool:
        return name in self.by_name

    def __repr__(self) -> str:
        return f"SearchSpace({len(self.params)} parameters: {', '.join(self.names[:5])}{', ...' if len(self) > 5 else ''})"

    # -- values ---------------------------------------------------------------------------------
    def draw(self, src: Source) -> dict[str, Any]:
        """One config from any :class:`Source`, parents first."""
        ctx = dict(self.context)
        out: dict[str, Any] = {}
        for p in self.params:
            value = p.draw(src, ctx)
            ctx[p.name] = value
            out[p.name] = value
        return out

    def defaults(self) -> dict[str, Any]:
        """The baseline config (trial 0): each name's value from the spec, else the schema default,
        repaired to the nearest value that satisfies every constraint."""
        ctx = dict(self.context)
        out: dict[str, Any] = {}
        for p in self.params:
            base = copy.deepcopy(self.baseline.get(p.name, p.default))
            value = p.repair(base, ctx)
            ctx[p.name] = value
            out[p.name] = value
        return out

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Define-by-run sampling on an ``optuna.Trial``."""
        from automl.space.optuna_adapter import suggest

        return suggest(self, trial)

    def sample(self, rng: np.random.Generator | int | None = None) -> dict[str, Any]:
        """Plain seeded sampling with the same distributions as the backends."""
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        return self.draw(RngSource(rng))

    def to_ray(self) -> dict[str, Any]:
        """``param_space`` for ``ray.tune.Tuner`` (flat, keyed by dotted name, plus ``__u`` helpers)."""
        from automl.space.ray_adapter import to_ray

        return to_ray(self)

    def from_ray(self, config: Mapping[str, Any]) -> dict[str, Any]:
        from automl.space.ray_adapter import from_ray

        return from_ray(self, config)

    def encode(self, config: Mapping[str, Any]) -> list[Any]:
        """The draws that make :meth:`draw` reproduce ``config`` (which must pass :meth:`check`)."""
        problems = self.check(config)
        if problems:
            from automl.errors import SpecError

            raise SpecError(f"config does not fit the search space: {problems[0]}")
        ctx = {**self.context, **dict(config)}
        return [d for p in self.params for d in p.encode(config[p.name], ctx)]

    def optuna_params(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Optuna param values (helpers included) that make :meth:`suggest` return ``config``:
        ``study.enqueue_trial(space.optuna_params(space.defaults()))`` runs the baseline first.
        A value that fails its constraints is passed through under its own name."""
        ctx = {**self.context, **dict(config)}
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name not in config:
                continue
            if p.check(config[p.name], ctx):
                out[p.name] = config[p.name]  # invalid: passed through, so check() reports it
            else:
                out.update({d.key: d.result for d in p.encode(config[p.name], ctx)})
        return out

    def to_ray_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """A Ray config for ``config`` (dotted names plus the ``__u`` helpers of ``to_ray()``), e.g.
        for ``points_to_evaluate``; ``from_ray`` of it gives ``config`` back."""
        from automl.space.ray_adapter import to_ray_config

        return to_ray_config(self, config)

    def check(self, config: Mapping[str, Any]) -> list[str]:
        """Every violated constraint as one readable line; ``[]`` when the config is valid. Keys that are
        not searched names are ignored."""
        ctx = {**self.context, **dict(config)}
        problems: list[str] = []
        for p in self.params:
            if p.name not in config:
                problems.append(f"{p.name}: missing")
                continue
            problems += p.check(config[p.name], ctx)
        return problems

    # -- presentation and storage ----------------------------------------------------------------
    def describe(self) -> list[dict[str, Any]]:
        return [p.describe() for p in self.params]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": SPACE_FORMAT,
            "schema": self.schema_path,
            "params": [p.to_json() for p in self.params],
            "context": _jsonable(self.context),
            "baseline": _jsonable(self.baseline),
            "skipped": [list(s) for s in self.skipped],
            "warnings": self.warnings,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SearchSpace:
        if isinstance(d, (str, bytes)):
            d = json.loads(d)
        return cls([Param.from_json(p) for p in d["params"]], context=d.get("context"),
                   baseline=d.get("baseline"), skipped=d.get("skipped"), warnings=d.get("warnings"),
                   schema_path=d.get("schema"))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
