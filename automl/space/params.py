"""The typed, backend-neutral parameters of a search space: one small class per concept.

Each :class:`Param` knows

* ``draw(src, ctx)`` -- its value from named draws of a :class:`~automl.space.sources.Source`, given
  ``ctx`` (the values of its parents: already drawn, or fixed by the user's spec);
* ``check(value, ctx)`` -- every violated constraint as a readable line;
* ``repair(value, ctx)`` -- the nearest valid value (for the baseline trial);
* ``draw_keys()`` -- every draw it may ask for (Ray needs them declared up front);
* ``ray_domain()`` -- a native ``ray.tune`` domain when the parameter depends on nothing;
* ``describe()`` and ``to_json()`` / ``from_json()``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, ClassVar

from automl.space.sources import Source, encode_picks, pick_without_replacement

REGISTRY: dict[str, type[Param]] = {}


def is_int(x: Any) -> bool:
    import numpy as np

    return (isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)))


def is_number(x: Any) -> bool:
    import numpy as np

    return (isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))
            and math.isfinite(float(x)))


def fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


@dataclass(frozen=True)
class Draw:
    """One draw that reproduces a value: ``result`` is what ``Source.<method>(key, *args)`` returned."""

    key: str
    result: Any
    method: str            # "float", "int", "categorical" or "unit"
    args: tuple = ()


@dataclass
class Param:
    """Base class: a searched parameter with a dotted ``name``."""

    name: str
    default: Any = None
    notes: list[str] = field(default_factory=list)   # shown in the condition column

    kind: ClassVar[str] = "param"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        REGISTRY[cls.kind] = cls

    # -- contract -------------------------------------------------------------------------------
    @property
    def parents(self) -> tuple[str, ...]:
        return ()

    def draw(self, src: Source, ctx: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def check(self, value: Any, ctx: Mapping[str, Any]) -> list[str]:
        raise NotImplementedError

    def repair(self, value: Any, ctx: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def draw_keys(self) -> list[tuple[str, str]]:
        """``(key, kind)`` for each draw: kind ``unit`` (from ``unit()``) or ``value`` (the others)."""
        return [(self.name, "value")]

    def encode(self, value: Any, ctx: Mapping[str, Any]) -> list[Draw]:
        """The draws that make ``draw`` return ``value`` (for enqueuing a known config in Optuna or
        giving it to Ray as a point to evaluate). ``value`` must pass ``check``."""
        raise NotImplementedError

    def ray_domain(self) -> Any:
        return None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.kind, "range": "", "scale": "", "weights": "",
                "condition": "; ".join(self.notes)}

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> Param:
        d = dict(d)
        cls = REGISTRY[d.pop("kind")]
        return cls(**d)

    def _bad(self, message: str) -> list[str]:
        return [f"{self.name}: {message}"]


# ------------------------------------------------------------------------------------------------
# numbers
# ------------------------------------------------------------------------------------------------
@dataclass
class Relation:
    """``value OP parent`` (``op`` in > >= < <= !=), ``at_most`` (<=) or ``multiple`` (``/ depends_on``)."""

    op: str
    parent: str

    def holds(self, value: float, parent: float) -> bool:
        from automl.space.conditions import COMPARE

        if self.op == "multiple":
            return parent != 0 and abs(value / parent - round(value / parent)) < 1e-9
        if self.op == "at_most":
            return value <= parent
        return COMPARE[self.op](value, parent)

    def text(self) -> str:
        if self.op == "multiple":
            return f"multiple of {self.parent}"
        if self.op == "at_most":
            return f"<= {self.parent}"
        return f"{self.op} {self.parent}"


def _relations(data: Sequence[Any]) -> list[Relation]:
    return [r if isinstance(r, Relation) else Relation(**r) for r in data]


@dataclass
class FloatParam(Param):
    """A float in ``[low, high]`` (open ends moved inwards by a hair), linear or log-uniform."""

    low: float = 0.0
    high: float = 1.0
    log: bool = False
    low_open: bool = False
    high_open: bool = False
    excluded: list[float] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)

    kind: ClassVar[str] = "float"

    def __post_init__(self) -> None:
        self.relations = _relations(self.relations)

    @property
    def parents(self) -> tuple[str, ...]:
        return tuple(r.parent for r in self.relations)

    def bounds(self, ctx: Mapping[str, Any]) -> tuple[float, float, bool, bool]:
        lo, hi, lo_open, hi_open = self.low, self.high, self.low_open, self.high_open
        for r in self.relations:
            p = ctx.get(r.parent)
            if not is_number(p):
                continue
            if r.op in (">", ">=") and p >= lo:
                lo, lo_open = float(p), r.op == ">" or (p == lo and lo_open)
            elif r.op in ("<", "<=", "at_most") and p <= hi:
                hi, hi_open = float(p), r.op == "<" or (p == hi and hi_open)
        return lo, hi, lo_open, hi_open

    def effective(self, ctx: Mapping[str, Any]) -> tuple[float, float]:
        """The closed interval actually sampled: open ends nudged inwards by 1e-6 of the width."""
        lo, hi, lo_open, hi_open = self.bounds(ctx)
        if self.log:
            eps_lo, eps_hi = lo * 1e-6, hi * 1e-6
        else:
            eps_lo = eps_hi = max((hi - lo) * 1e-6, 1e-12)
        if lo_open:
            lo = lo + eps_lo
        if hi_open:
            hi = hi - eps_hi
        return lo, max(lo, hi)

    def draw(self, src: Source, ctx: Mapping[str, Any]) -> float:
        lo, hi = self.effective(ctx)
        value = float(src.float(self.name, lo, hi, log=self.log))
        if value in self.excluded:  # measure zero, but a sampler may propose an end point
            value = hi if value != hi else lo
        return value

    def encode(self, value: Any, ctx: Mapping[str, Any]) -> list[Draw]:
        lo, hi = self.effective(ctx)
        return [Draw(self.name, float(value), "float", (lo, hi, self.log))]

    def check(self, value: Any, ctx: Mapping[str, Any]) -> list[str]:
        if not is_number(value):
            return self._bad(f"expected a finite number, got {value!r}")
        lo, hi, lo_open, hi_open = self.bounds(ctx)
        out = []
        if value < lo or (lo_open and value == lo):
            out.append(f"{self.name}: {fmt(value)} must be {'>' if lo_open else '>='} {fmt(lo)}")
        if value > hi or (hi_open and value == hi):
            out.append(f"{self.name}: {fmt(value)} must be {'<' if hi_open else '<='} {fmt(hi)}")
        if value in self.excluded:
            out.append(f"{self.name}: {fmt(value)} is not allowed (!= {fmt(value)})")
        for r in self.relations:
            p = ctx.get(r.parent)
            if is_number(p) and not r.holds(value, p):
                out.append(f"{self.name}: {fmt(value)} must be {r.text()} (= {fmt(p)})")
        return out

    def repair(self, value: Any, ctx: Mapping[str, Any]) -> float:
        lo, hi = self.effective(ctx)
        if not is_number(value):
            value = math.sqrt(lo * hi) if self.log else (lo + hi) / 2
        value = min(max(float(value), lo), hi)
        if value in self.excluded:
            value = hi if value != hi else lo
        return value

    def ray_domain(self) -> Any:
        if self.relations or self.excluded:
            return None
        from ray import tune

        lo, hi = self.effective({})
        if hi <= lo:
            return lo
        return tune.loguniform(lo, hi) if self.log else tune.uniform(lo, hi)

    def describe(self) -> dict[str, Any]:
        lo, hi, lo_open, hi_open = self.bounds({})
        row = super().describe()
        row.update(range=f"{'(' if lo_open else '['}{fmt(lo)}, {fmt(hi)}{')' if hi_open else ']'}",
                   scale="log" if self.log else "linear")
        extra = [f"!= {fmt(x)}" for x in self.excluded] + [r.text() for r in self.relations]
        row["condition"] = "; ".join(extra + self.notes)
        return row


@dataclass
class IntParam(Param):
    """An int in ``[low, high]``: a step (``/ k``), powers of a base (``^ k``), exclusions (``!= c``),
    relations to parents (``> depends_on``, ``<= parent``, ``multiple of parent``) and divisors of a
    fixed dependent's value."""

    low: int = 0
    high: int = 1
    step: int = 1
    power: float | None = None
    log: bool = False
    excluded: list[int] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    divides: list[int] = field(default_factory=list)

    kind: ClassVar[str] = "int"

    def __post_init__(self) -> None:
        self.relations = _relations(self.relations)

    @property
    def parents(self) -> tuple[str, ...]:
        return tuple(r.parent for r in self.relations)

    @property
    def listed(self) -> bool:
        return self.power is not None or bool(self.divides) or bool(self.excluded)

    def plan(self, ctx: Mapping[str, Any]) -> tuple[int, int, int] | list[int]:
        """The allowed values: ``(low, high, step)`` (an arithmetic progression, maybe empty) or a list."""
        lo, hi, step = self.low, self.high, self.step
        for r in self.relations:
            p = ctx.get(r.parent)
            if not is_number(p):
                continue
            if r.op == ">":
                lo = max(lo, math.floor(p) + 1)
            elif r.op == ">=":
                lo = max(lo, math.ceil(p))
            elif r.op == "<":
                hi = min(hi, math.ceil(p) - 1)
            elif r.op in ("<=", "at_most"):
                hi = min(hi, math.floor(p))
            elif r.op == "multiple" and is_int(p) and p > 0:
                step = step * int(p) // math.gcd(step, int(p))
        if self.power is not None:
            values, x = [], 1
            while x <= hi:
                if x >= lo:
                    values.append(int(x))
                x = x * self.power
            return [v for v in values if v % step == 0 and self._extra_ok(v, ctx)]
        lo = -(-lo // step) * step
        hi = (hi // step) * step
        if self.divides or self.excluded:
            return [v for v in range(lo, hi + 1, step) if self._extra_ok(v, ctx)]
        return lo, hi, step

    def _extra_ok(self, v: int, ctx: Mapping[str, Any]) -> bool:
        if v in self.excluded or any(d % v if v else True for d in self.divides):
            return False
        return all(r.holds(v, ctx[r.parent]) for r in self.relations
                   if r.op == "!=" and is_number(ctx.get(r.parent)))

    def draw(self, src: Source, ctx: Mapping[str, Any]) -> int:
        plan = self.plan(ctx)
        if isinstance(plan, list):
            if not plan:
                return self.repair(None, ctx)
            if not self.relations:
                return int(src.categorical(self.name, plan))
            return plan[src.int(f"{self.name}__idx", 0, len(plan) - 1)]
        lo, hi, step = plan
        if hi < lo:
            return self.repair(None, ctx)
        return int(src.int(self.name, lo, hi, step=step, log=self.log and step == 1 and lo >= 1))

    def encode(self, value: Any, ctx: Mapping[str, Any]) -> list[Draw]:
        plan = self.plan(ctx)
        if isinstance(plan, list):
            if not self.relations:
                return [Draw(self.name, int(value), "categorical", (tuple(plan),))]
            return [Draw(f"{self.name}__idx", plan.index(value), "int", (0, len(plan) - 1, 1, False))]
        lo, hi, step = plan
        return [Draw(self.name, int(value), "int", (lo, hi, step, self.log and step == 1 and lo >= 1))]

    def draw_keys(self) -> list[tuple[str, str]]:
        if self.listed and self.relations:
            return [(f"{self.name}__idx", "value")]
        return [(self.name, "value")]

    def allowed(self, value: int, ctx: Mapping[str, Any]) -> bool:
        plan = self.plan(ctx)
        if isinstance(plan, list):
            return value in plan
        lo, hi, step = plan
        return lo <= value <= hi and (value - lo) % step == 0

    def check(self, value: Any, ctx: Mapping[str, Any]) -> list[str]:
        if not is_int(value):
            return self._bad(f"expected an int, got {value!r}")
        out = []
        if not self.low <= value <= self.high:
            out.append(f"{self.name}: {value} is outside [{self.low}, {self.high}]")
        if value % self.step:
            out.append(f"{self.name}: {value} is not a multiple of {self.step}")
        if self.power is not None:
            from automl.space.conditions import is_power

            if not is_power(value, self.power):
                out.append(f"{self.name}: {value} is not a power of {fmt(self.power)}")
        if value in self.excluded:
            out.append(f"{self.name}: {value} is not allowed (!= {value})")
        for d in self.divides:
            if value == 0 or d % value:
                out.append(f"{self.name}: {value} must divide {d} (a fixed dependent's value)")
        for r in self.relations:
            p = ctx.get(r.parent)
            if is_number(p) and not r.holds(value, p):
                out.append(f"{self.name}: {value} must be {r.text()} (= {fmt(p)})")
        return out

    def repair(self, value: Any, ctx: Mapping[str, Any]) -> int:
        plan = self.plan(ctx)
        target = value if is_number(value) else (self.low + self.high) / 2
        if isinstance(plan, list):
            candidates = plan or [self.low]
        else:
            lo, hi, step = plan
            if hi < lo:
                return int(lo)
            k = round((target - lo) / step)
            return int(min(max(lo + k * step, lo), hi))
        return int(min(candidates, key=lambda v: (abs(v - target), v)))

    def ray_domain(self) -> Any:
        if self.relations:
            return None
        from ray import tune

        plan = self.plan({})
        if isinstance(plan, list):
            return tune.choice(plan) if len(plan) > 1 else plan[0]
        lo, hi, step = plan
        if hi <= lo:
            return lo
        if step == 1:
            return tune.lograndint(lo, hi + 1) if self.log and lo >= 1 else tune.randint(lo, hi + 1)
        return tune.qrandint(lo, hi, step)

    def describe(self) -> dict[str, Any]:
        row = super().describe()
        plan = self.plan({})
        if isinstance(plan, list) and len(plan) <= 12:
            row["range"] = "{" + ", ".join(map(str, plan)) + "}"
        elif isinstance(plan, list):
            row["range"] = f"[{plan[0]}, {plan[-1]}] ({len(plan)} values)" if plan else "(empty)"
        else:
            row["range"] = f"[{plan[0]}, {plan[1]}]" + (f" step {plan[2]}" if plan[2] != 1 else "")
        row["scale"] = "log" if self.log else "linear"
        extra = []
        if self.power is not None:
            extra.append(f"power of {fmt(self.power)}")
        if self.step != 1:
            extra.append(f"multiple of {self.step}")
        extra += [f"!= {x}" for x in self.excluded] + [r.text() for r in self.relations]
        extra += [f"divides {d}" for d in self.divides]
        row["condition"] = "; ".join(extra + self.notes)
        return row


# ------------------------------------------------------------------------------------------------
# choices
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# structured lists
# ------------------------------------------------------------------------------------------------
@dataclass
class MilestonesParam(Param):
    """Learning-rate milestones (``list_2`` named like lr_steps/steps/milestones/decay_step*):
    1..``max_count`` sorted distinct ints inside (0, epoch budget). The budget is the searched or
    fixed value of ``budget_param`` (the nearest num_epochs/epochs/epoch key), else ``budget``."""

    budget_param: str | None = None
    budget: int = 10
    max_count: int = 4
    budget_searched: bool = False
    default_budget: int | None = None   # the schema's default epochs: the default milestones' scale

    kind: ClassVar[str] = "milestones"

    @property
    def parents(self) -> tuple[str, ...]:
        return (self.budget_param,) if self.budget_param and self.budget_searched else ()

    def _budget(self, ctx: Mapping[str, Any]) -> int:
        b = ctx.get(self.budget_param) if self.budget_param else None
        return int(b) if is_number(b) else int(self.budget)

    def draw(self, src: Source, ctx: Mapping[str, Any]) -> list[int]:
        budget = self._budget(ctx)
        pool = list(range(1, budget))
        if not pool:
            return []
        n = src.int(f"{self.name}__n", 1, self.max_count)
        return sorted(pick_without_replacement(src, self.name, pool, min(n, len(pool))))

    def draw_keys(self) -> list[tuple[str, str]]:
        return [(f"{self.name}__n", "value")] + [(f"{self.name}__u{i}", "unit") for i in range(self.max_count)]

    def encode(self, value: Any, ctx: Mapping[str, Any]) -> list[Draw]:
        pool = list(range(1, self._budget(ctx)))
        if not pool:
            return []
        return ([Draw(f"{self.name}__n", len(value), "int", (1, self.max_count, 1, False))]
                + encode_picks(self.name, pool, list(value)))

    def check(self, value: Any, ctx: Mapping[str, Any]) -> list[str]:
        budget = self._budget(ctx)
        if not isinstance(value, list) or not all(is_int(v) for v in value):
            return self._bad(f"expected a list of ints, got {value!r}")
        out = []
        if budget >= 2 and not 1 <= len(value) <= self.max_count:
            out.append(f"{self.name}: needs 1 to {self.max_count} milestones, got {len(value)}")
        if any(b <= a for a, b in zip(value, value[1:])):
            out.append(f"{self.name}: milestones {value} must be sorted and distinct")
        if any(not 0 < v < budget for v in value):
            out.append(f"{self.name}: milestones {value} must lie inside (0, {budget}) epochs")
        return out

    def repair(self, value: Any, ctx: Mapping[str, Any]) -> list[int]:
        budget = self._budget(ctx)
        if not self.check(value, ctx):
            return value
        kept = sorted({int(v) for v in (value or []) if is_number(v) and 0 < v < budget})[: self.max_count]
        if not kept and budget >= 2:
            # scale the default's milestones into the budget, keeping their fraction of training
            src = [v for v in (value or []) if is_number(v) and v > 0]
            scale = self.default_budget if self.default_budget and self.default_budget > max(src or [0]) \
                else max(src or [0]) + 1
            kept = sorted({min(max(1, round(v / scale * budget)), budget - 1) for v in src} or {budget // 2})
            kept = kept[: self.max_count]
        return kept

    def describe(self) -> dict[str, Any]:
        row = super().describe()
        where = self.budget_param or "no epoch key"
        row.update(type="milestones", range=f"1..{self.max_count} sorted ints in (0, {where})",
                   condition="; ".join([f"budget {self.budget_param}={self.budget}"
                                        + (" (searched)" if self.budget_searched else "")] + self.notes))
        return row


@dataclass
class SubsetParam(Param):
    """A subset of ``choices`` (kept in their order) with ``min_count..max_count`` entries, drawn
    uniformly by size then members. Used for subset_list (non-empty), optional_list (may be empty),
    a ``list`` with an enum, and ``list_2`` sizes (``choices`` is the default's grid)."""

    choices: list[Any] = field(default_factory=list)
    min_count: int = 1
    max_count: int = 0
    label: str = "subset_list"

    kind: ClassVar[str] = "subset"

    def __post_init__(self) -> None:
        if self.max_count <= 0 or self.max_count > len(self.choices):
            self.max_count = len(self.choices)
        self.min_count = min(self.min_count, self.max_count)

    def draw(self, src: Source, ctx: Mapping[str, Any]) -> list[Any]:
        n = src.int(f"{self.name}__n", self.min_count, self.max_count)
        picked = pick_without_replacement(src, self.name, list(range(len(self.choices))), n)
        return [self.choices[i] for i in sorted(picked)]

    def draw_keys(self) -> list[tuple[str, str]]:
        return [(f"{self.name}__n", "value")] + [(f"{self.name}__u{i}", "unit") for i in range(self.max_count)]

    def encode(self, value: Any, ctx: Mapping[str, Any]) -> list[Draw]:
        indices = [self.choices.index(v) for v in value]
        return ([Draw(f"{self.name}__n", len(value), "int", (self.min_count, self.max_count, 1, False))]
                + encode_picks(self.name, list(range(len(self.choices))), indices))

    def check(self, value: Any, ctx: Mapping[str, Any]) -> list[str]:
        if not isinstance(value, list):
            return self._bad(f"expected a list, got {value!r}")
        out = []
        if not self.min_count <= len(value) <= self.max_count:
            out.append(f"{self.name}: needs {self.min_count} to {self.max_count} entries, got {len(value)}")
        unknown = [v for v in value if v not in self.choices]
        if unknown:
            out.append(f"{self.name}: {unknown} not among {self.choices}")
        elif [self.choices.index(v) for v in value] != sorted({self.choices.index(v) for v in value}):
            out.append(f"{self.name}: {value} must be distinct and in the order of {self.choices}")
        return out

    def repair(self, value: Any, ctx: Mapping[str, Any]) -> list[Any]:
        if not self.check(value, ctx):
            return value
        kept = [c for c in self.choices if isinstance(value, list) and c in value][: self.max_count]
        if len(kept) < self.min_count:
            kept = self.choices[: self.min_count]
        return kept

    def describe(self) -> dict[str, Any]:
        row = super().describe()
        shown = ", ".join(map(fmt, self.choices[:12])) + (", ..." if len(self.choices) > 12 else "")
        row.update(type=self.label, range=f"{self.min_count}..{self.max_count} of {{{shown}}}")
        return row


@dataclass
class BoundedListParam(Param):
    """A fixed-length list, element ``i`` in ``[low[i], high[i]]`` (list_2 with list bounds, e.g. betas)."""

    low: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)
    integer: bool = False

    kind: ClassVar[str] = "bounded_list"

    def draw(self, src: Source, ctx: Mapping[str, Any]) -> list[Any]:
        if self.integer:
            return [int(src.int(f"{self.name}__{i}", int(a), int(b))) for i, (a, b) in enumerate(zip(self.low, self.high))]
        return [float(src.float(f"{self.name}__{i}", a, b)) for i, (a, b) in enumerate(zip(self.low, self.high))]

    def draw_keys(self) -> list[tuple[str, str]]:
        return [(f"{self.name}__{i}", "value") for i in range(len(self.low))]

    def encode(self, value: Any, ctx: Mapping[str, Any]) -> list[Draw]:
        if self.integer:
            return [Draw(f"{self.name}__{i}", int(v), "int", (int(a), int(b), 1, False))
                    for i, (v, a, b) in enumerate(zip(value, self.low, self.high))]
        return [Draw(f"{self.name}__{i}", float(v), "float", (a, b, False))
                for i, (v, a, b) in enumerate(zip(value, self.low, self.high))]

    def check(self, value: Any, ctx: Mapping[str, Any]) -> list[str]:
        if not isinstance(value, list) or len(value) != len(self.low):
            return self._bad(f"expected a list of {len(self.low)} numbers, got {value!r}")
        out = []
        for i, (v, a, b) in enumerate(zip(value, self.low, self.high)):
            if not (is_int(v) if self.integer else is_number(v)) or not a <= v <= b:
                out.append(f"{self.name}[{i}]: {v!r} must be {'an int' if self.integer else 'a number'} in [{fmt(a)}, {fmt(b)}]")
        return out

    def repair(self, value: Any, ctx: Mapping[str, Any]) -> list[Any]:
        if not self.check(value, ctx):
            return value
        value = value if isinstance(value, list) and len(value) == len(self.low) else [None] * len(self.low)
        out = []
        for v, a, b in zip(value, self.low, self.high):
            v = (a + b) / 2 if not is_number(v) else min(max(v, a), b)
            out.append(int(round(v)) if self.integer else float(v))
        return out

    def describe(self) -> dict[str, Any]:
        row = super().describe()
        row.update(type="list", range=" x ".join(f"[{fmt(a)}, {fmt(b)}]" for a, b in zip(self.low, self.high)),
                   scale="linear")
        return row


@dataclass
class KernelParam(Param):
    """A square odd kernel ``[k, k]`` (list_3): ``k`` odd in [3, min(height, width) // 10]
    (at least 3; ``[1, 1]`` for images smaller than 3 px)."""

    size_params: list[str] = field(default_factory=list)
    size_defaults: list[int] = field(default_factory=list)
    searched_parents: list[str] = field(default_factory=list)

    kind: ClassVar[str] = "kernel"

    @property
    def parents(self) -> tuple[str, ...]:
        return tuple(self.searched_parents)

    def kmax(self, ctx: Mapping[str, Any]) -> int:
        sizes = []
        for p, d in zip(self.size_params, self.size_defaults):
            v = ctx.get(p, d)
            sizes.append(int(v) if is_number(v) else int(d))
        smallest = min(sizes) if sizes else 224
        if smallest < 3:
            return 1
        k = max(3, smallest // 10)
        return k if k % 2 else k - 1

    def draw(self, src: Source, ctx: Mapping[str, Any]) -> list[int]:
        kmax = self.kmax(ctx)
        lo = 1 if kmax == 1 else 3
        k = int(src.int(f"{self.name}__k", lo, kmax, step=2))
        return [k, k]

    def draw_keys(self) -> list[tuple[str, str]]:
        return [(f"{self.name}__k", "value")]

    def encode(self, value: Any, ctx: Mapping[str, Any]) -> list[Draw]:
        kmax = self.kmax(ctx)
        return [Draw(f"{self.name}__k", int(value[0]), "int", (1 if kmax == 1 else 3, kmax, 2, False))]

    def check(self, value: Any, ctx: Mapping[str, Any]) -> list[str]:
        kmax = self.kmax(ctx)
        if not isinstance(value, list) or len(value) != 2 or not all(is_int(v) for v in value):
            return self._bad(f"expected [k, k] with odd int k, got {value!r}")
        out = []
        if value[0] != value[1]:
            out.append(f"{self.name}: kernel {value} must be square")
        for v in value:
            if v % 2 == 0 or not (1 if kmax == 1 else 3) <= v <= kmax:
                out.append(f"{self.name}: kernel size {v} must be odd in [3, {kmax}] (image-size bound)")
                break
        return out

    def repair(self, value: Any, ctx: Mapping[str, Any]) -> list[int]:
        if not self.check(value, ctx):
            return value
        kmax = self.kmax(ctx)
        v = value[0] if isinstance(value, list) and value and is_number(value[0]) else 3
        v = int(min(max(v, 1 if kmax == 1 else 3), kmax))
        if v % 2 == 0:
            v -= 1
        return [v, v]

    def describe(self) -> dict[str, Any]:
        row = super().describe()
        row.update(type="kernel", range=f"[k, k], k odd in [3, {self.kmax({})}]",
                   condition="; ".join([f"k <= min({', '.join(self.size_params)}) // 10"] + self.notes))
        return row


@dataclass
class ConsecutiveListParam(Param):
    """list_1_backbone / list_1_normal: the consecutive ints ``[start, start+1, ..., start+n-1]``
    with ``n`` in ``[min_count, max_count]``; ``empty`` (e.g. ``[-1]`` = freeze nothing) when n == 0."""

    start: int = 0
    min_count: int = 0
    max_count: int = 4
    empty: list[int] = field(default_factory=list)

    kind: ClassVar[str] = "consecutive"

    def draw(self, src: Source, ctx: Mapping[str, Any]) -> list[int]:
        n = int(src.int(f"{self.name}__n", self.min_count, self.max_count))
        return list(range(self.start, self.start + n)) if n else list(self.empty)

    def draw_keys(self) -> list[tuple[str, str]]:
        return [(f"{self.name}__n", "value")]

    def encode(self, value: Any, ctx: Mapping[str, Any]) -> list[Draw]:
        n = 0 if self.min_count == 0 and list(value) == list(self.empty) else len(value)
        return [Draw(f"{self.name}__n", n, "int", (self.min_count, self.max_count, 1, False))]

    def _valid(self) -> list[list[int]]:
        return [list(range(self.start, self.start + n)) if n else list(self.empty)
                for n in range(self.min_count, self.max_count + 1)]

    def check(self, value: Any, ctx: Mapping[str, Any]) -> list[str]:
        if value not in self._valid():
            return self._bad(f"{value!r} is not a consecutive range from {self.start} of "
                             f"{self.min_count}..{self.max_count} entries" + (f" or {self.empty}" if self.min_count == 0 else ""))
        return []

    def repair(self, value: Any, ctx: Mapping[str, Any]) -> list[int]:
        if not self.check(value, ctx):
            return value
        n = len(value) if isinstance(value, list) and value != self.empty else self.min_count
        n = min(max(n, self.min_count), self.max_count)
        return list(range(self.start, self.start + n)) if n else list(self.empty)

    def describe(self) -> dict[str, Any]:
        row = super().describe()
        row.update(type="consecutive", range=f"[{self.start}..{self.start}+n), n in [{self.min_count}, {self.max_count}]"
                   + (f"; n=0 -> {self.empty}" if self.min_count == 0 else ""))
        return row
