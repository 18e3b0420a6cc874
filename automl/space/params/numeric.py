"""Numbers: floats and ints in a range, with the constraints TAO's ``math_cond`` and ``depends_on``
put on them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from automl.space.conditions import COMPARE, is_power
from automl.space.params.base import Param, fmt, is_int, is_number
from automl.space.sources import Draw, Source


@dataclass
class Relation:
    """``value OP parent`` (``op`` in > >= < <= !=), ``at_most`` (<=) or ``multiple`` (``/ depends_on``)."""

    op: str
    parent: str

    def holds(self, value: float, parent: float) -> bool:
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
class NumberParam(Param):
    """A number whose range may depend on its parents' values through ``relations``."""

    relations: list[Relation] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.relations = _relations(self.relations)

    @property
    def parents(self) -> tuple[str, ...]:
        return tuple(r.parent for r in self.relations)

    def _relation_problems(self, value: float, ctx: Mapping[str, Any]) -> list[str]:
        """The relations ``value`` breaks, given its parents' values in ``ctx``."""
        return [f"{self.name}: {fmt(value)} must be {r.text()} (= {fmt(ctx[r.parent])})"
                for r in self.relations if is_number(ctx.get(r.parent)) and not r.holds(value, ctx[r.parent])]


@dataclass
class FloatParam(NumberParam):
    """A float in ``[low, high]`` (open ends moved inwards by a hair), linear or log-uniform."""

    low: float = 0.0
    high: float = 1.0
    log: bool = False
    low_open: bool = False
    high_open: bool = False
    excluded: list[float] = field(default_factory=list)

    kind: ClassVar[str] = "float"

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
        return out + self._relation_problems(value, ctx)

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
class IntParam(NumberParam):
    """An int in ``[low, high]``: a step (``/ k``), powers of a base (``^ k``), exclusions (``!= c``),
    relations to parents (``> depends_on``, ``<= parent``, ``multiple of parent``) and divisors of a
    fixed dependent's value."""

    low: int = 0
    high: int = 1
    step: int = 1
    power: float | None = None
    log: bool = False
    excluded: list[int] = field(default_factory=list)
    divides: list[int] = field(default_factory=list)

    kind: ClassVar[str] = "int"

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
            if not is_power(value, self.power):
                out.append(f"{self.name}: {value} is not a power of {fmt(self.power)}")
        if value in self.excluded:
            out.append(f"{self.name}: {value} is not allowed (!= {value})")
        for d in self.divides:
            if value == 0 or d % value:
                out.append(f"{self.name}: {value} must divide {d} (a fixed dependent's value)")
        return out + self._relation_problems(value, ctx)

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


