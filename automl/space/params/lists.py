"""Structured lists, each sampled to a value a trainer can use: learning-rate milestones, subsets,
element-wise bounded lists, square kernels, consecutive stage indices."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from automl.space.params.base import Param, fmt, is_int, is_number
from automl.space.sources import Draw, Source, encode_picks, pick_without_replacement


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

