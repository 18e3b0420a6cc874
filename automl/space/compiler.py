"""Compiling a schema's leaves into typed parameters (the rules are listed in ``automl.space``)."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from automl.errors import SpecError, did_you_mean
from automl.space.feasibility import (
    bound_parent, child_feasible, filter_parent, fold_fixed_parents, nonempty, static_range,
)
from automl.space.params import (
    BoundedListParam, CategoricalParam, ConsecutiveListParam, FloatParam, IntParam, KernelParam,
    MilestonesParam, Param, Relation, SubsetParam, is_int, is_number,
)
from automl.space.schema import Leaf, Schema
from automl.space.selection import is_milestones, select, unsearchable

NUMERIC_TYPES = ("int", "float", "ordered_int")
EPOCH_KEYS = ("num_epochs", "epochs", "epoch", "max_epochs", "total_epochs")
OVERRIDE_KEYS = ("min", "max", "scale", "choices", "weights", "step")
#: log scale when the range spans this ratio around a positive default ...
LOG_SPAN = 100.0
#: ... and the window is [default / LOG_WINDOW, default * LOG_WINDOW] clipped to the schema range
LOG_WINDOW = 100.0
#: an Infinity maximum on an int searches up to max(INF_FACTOR * default, 2 * minimum, INF_MIN_WIDTH)
INF_FACTOR = 4
INF_MIN_WIDTH = 16
#: at most this many learning-rate milestones
MAX_MILESTONES = 4
#: a backbone's stage count when list_1_backbone gives no maximum
DEFAULT_STAGES = 4


def auto_log(lo: float, hi: float, default: float | None) -> bool:
    """The log-scale rule: a positive default in a range spanning >= LOG_SPAN (a range starting at or
    below 0 spans infinitely), unless it looks like a probability/momentum/factor (range from <= 0
    and a default >= 5% of a finite maximum)."""
    if default is None or not default > 0:
        return False
    ratio = math.inf if lo <= 0 else hi / lo
    prob_like = lo <= 0 and math.isfinite(hi) and default >= 0.05 * hi
    return ratio >= LOG_SPAN and not prob_like


def _flat(fixed: Mapping[str, Any] | None) -> dict[str, Any]:
    if not fixed:
        return {}
    out: dict[str, Any] = {}
    for key, value in fixed.items():
        if isinstance(value, Mapping) and value:
            out.update({f"{key}.{k}": v for k, v in _flat(value).items()})
        else:
            out[key] = value
    return out


class Compiler:
    def __init__(self, schema: Schema, include, overrides, fixed):
        self.schema = schema
        self.fixed = _flat(fixed)
        self.overrides = {k: dict(v) for k, v in (overrides or {}).items()}
        known = list(schema.leaves)
        for name, ov in self.overrides.items():
            if name not in schema.leaves:
                raise SpecError(f"{schema.path}: unknown parameter '{name}' in overrides{did_you_mean(name, known)}")
            bad = [k for k in ov if k not in OVERRIDE_KEYS]
            if bad:
                raise SpecError(f"override for '{name}': unknown key '{bad[0]}'{did_you_mean(bad[0], OVERRIDE_KEYS)}; "
                                f"allowed: {', '.join(OVERRIDE_KEYS)}")
            if "scale" in ov and ov["scale"] not in ("log", "linear"):
                raise SpecError(f"override for '{name}': scale must be 'log' or 'linear', got {ov['scale']!r}")
        self.searched, self.skipped = select(schema, include)
        # overriding a parameter means searching it
        for name in self.overrides:
            if name not in self.searched:
                reason = unsearchable(schema.leaves[name])
                if reason:
                    raise SpecError(f"{schema.path}: parameter '{name}' cannot be searched: {reason}")
                self.searched.append(name)
                self.skipped = [s for s in self.skipped if s[0] != name]
        self.searched_set = set(self.searched)

    def value_of(self, name: str) -> Any:
        """A parameter's value outside the search: the user's spec, else the schema default."""
        if name in self.fixed:
            return copy.deepcopy(self.fixed[name])
        return self.schema.default_value(name)

    def anchor(self, leaf: Leaf) -> float | None:
        """The value a window is centred on: the user's spec value, else the schema default."""
        value = self.fixed.get(leaf.name, leaf.default)
        if not is_number(value):
            value = leaf.default
        return value if is_number(value) else None

    def error(self, name: str, message: str) -> SpecError:
        return SpecError(f"{self.schema.path}: parameter '{name}': {message}")

    # -- per leaf -------------------------------------------------------------------------------
    def build(self, leaf: Leaf) -> Param:
        ov = self.overrides.get(leaf.name, {})
        if leaf.search_range is not None:  # narrows the search only; a spec may still hold any valid value
            ov = {"min": leaf.search_range[0], "max": leaf.search_range[1], **ov}
        t = leaf.type
        if "choices" in ov or t in ("categorical", "ordered_int", "bool") or (t == "string" and leaf.enum):
            return self.categorical(leaf, ov)
        if t == "float":
            return self.float(leaf, ov)
        if t == "int":
            return self.int(leaf, ov)
        if t in ("subset_list", "optional_list") or (t in ("list", "list_2") and leaf.enum):
            return SubsetParam(name=leaf.name, default=leaf.default, choices=list(leaf.enum),
                               min_count=0 if t == "optional_list" else 1,
                               label=t if t != "list_2" else "subset_list")
        if t in ("list", "list_2") and isinstance(leaf.minimum, list):
            integer = all(is_int(v) for v in leaf.minimum + leaf.maximum + list(leaf.default or []))
            return BoundedListParam(name=leaf.name, default=leaf.default, low=list(leaf.minimum),
                                    high=list(leaf.maximum), integer=integer)
        if t == "list_2" and is_milestones(leaf.name):
            return self.milestones(leaf)
        if t == "list_2":
            return self.sizes(leaf)
        if t == "list_3":
            return self.kernel(leaf)
        if t in ("list_1_backbone", "list_1_normal"):
            return self.consecutive(leaf)
        raise self.error(leaf.name, f"type '{t}' cannot be searched")

    def categorical(self, leaf: Leaf, ov: dict[str, Any]) -> Param:
        if leaf.type == "bool" and "choices" not in ov:
            choices, label = [True, False], "bool"
        else:
            choices, label = list(ov.get("choices", leaf.enum or [])), leaf.type if leaf.type != "string" else "categorical"
        if not choices:
            raise self.error(leaf.name, "no choices to search")
        weights = ov.get("weights", leaf.option_weights if "choices" not in ov else None)
        if weights is not None:
            if len(weights) != len(choices) or any(not is_number(w) or w < 0 for w in weights) or sum(weights) <= 0:
                raise self.error(leaf.name, f"weights {weights} must be {len(choices)} non-negative numbers with a positive sum")
            weights = [float(w) for w in weights]
        return CategoricalParam(name=leaf.name, default=leaf.default, choices=choices, weights=weights, label=label)

    def _numeric_bounds(self, leaf: Leaf, ov: dict[str, Any], integer: bool):
        lo = _num_or(ov.get("min", leaf.minimum), -math.inf)
        hi = _num_or(ov.get("max", leaf.maximum), math.inf)
        lo_open = hi_open = False
        excluded: list[float] = []
        notes: list[str] = []
        cond = leaf.condition
        for c in cond.constants() if cond else []:
            v = float(c.operand)
            if c.op in (">", ">=") and (v > lo or (v == lo and c.op == ">")):
                lo, lo_open = v, c.op == ">"
            elif c.op in ("<", "<=") and (v < hi or (v == hi and c.op == "<")):
                hi, hi_open = v, c.op == "<"
            elif c.op == "!=":
                excluded.append(v)
            elif c.op == "==":
                lo = hi = v
        if integer:
            if lo_open:
                lo, lo_open = math.floor(lo) + 1, False
            if hi_open:
                hi, hi_open = math.ceil(hi) - 1, False
        return lo, hi, lo_open, hi_open, excluded, notes

    def _relations(self, leaf: Leaf) -> list[Relation]:
        numeric_parents = [p for p in leaf.depends_on if self.schema.leaves[p].type in NUMERIC_TYPES]
        if not numeric_parents:
            return []
        rels = leaf.condition.relations() if leaf.condition else []
        out = []
        for parent in numeric_parents:
            if rels:
                out += [Relation("multiple" if c.op == "/" else c.op, parent) for c in rels if c.op != "^"]
            else:  # a bare depends_on on a number: the value may not exceed the parent's
                out.append(Relation("at_most", parent))
        return out

    def float(self, leaf: Leaf, ov: dict[str, Any]) -> FloatParam:
        lo, hi, lo_open, hi_open, excluded, notes = self._numeric_bounds(leaf, ov, integer=False)
        d = self.anchor(leaf)
        scale = ov.get("scale", leaf.scale)
        auto = scale is None
        if auto:
            scale = "log" if auto_log(lo, hi, d) else "linear"
            if scale == "log":
                notes.append(f"auto log: default {_f(d)}, schema range [{_f(lo)}, {_f(hi)}]")
        if scale == "log":
            anchor = d if d is not None and d > 0 else (hi if math.isfinite(hi) and hi > 0 else 1.0)
            w_lo, w_hi = anchor / LOG_WINDOW, anchor * LOG_WINDOW
            if auto and "min" not in ov and "max" not in ov:
                # TAO's wide range is narrowed to a window around the default
                new_lo, new_hi = max(lo, w_lo), min(hi, w_hi)
                notes.append(f"window [d/{LOG_WINDOW:g}, d*{LOG_WINDOW:g}]")
            else:
                # an explicit log scale keeps its range; only a 0 or Infinity end needs a window
                new_lo = lo if lo > 0 else w_lo
                new_hi = hi if math.isfinite(hi) else w_hi
                if new_lo != lo or new_hi != hi:
                    notes.append(f"log needs a positive finite range: [{_f(new_lo)}, {_f(new_hi)}] around {_f(anchor)}")
            if new_lo > lo:
                lo, lo_open = new_lo, False
            if new_hi < hi:
                hi, hi_open = new_hi, False
        else:
            if not math.isfinite(hi):
                base = d if d is not None else max(lo, 0.0)
                hi = max(INF_FACTOR * abs(base), 2 * lo if math.isfinite(lo) else 0.0, 1.0)
                notes.append(f"maximum Infinity: window up to {_f(hi)} = max({INF_FACTOR} d, 2 min, 1)")
            if not math.isfinite(lo):
                base = d if d is not None else min(hi, 0.0)
                lo = 0.0 if base >= 0 else INF_FACTOR * base
                notes.append(f"no finite minimum: searching from {_f(lo)}")
        if lo > hi or (lo == hi and (lo_open or hi_open)):
            raise self.error(leaf.name, f"empty range [{lo}, {hi}] after applying math_cond/overrides")
        return FloatParam(name=leaf.name, default=leaf.default, low=lo, high=hi, log=scale == "log",
                          low_open=lo_open, high_open=hi_open, excluded=excluded,
                          relations=self._relations(leaf), notes=notes)

    def int(self, leaf: Leaf, ov: dict[str, Any]) -> IntParam:
        lo, hi, _, _, excluded, notes = self._numeric_bounds(leaf, ov, integer=True)
        d = self.anchor(leaf)
        if not math.isfinite(lo):
            lo = 0 if d is None or d >= 0 else int(INF_FACTOR * d)
            notes.append(f"no finite minimum: searching from {lo}")
        lo = math.ceil(lo)
        cond = leaf.condition
        scale = ov.get("scale", leaf.scale)
        plain = (not (cond and (cond.power() is not None or cond.multiple() is not None)) and "step" not in ov
                 and not leaf.depends_on)
        if scale is None and plain and math.isfinite(hi) and auto_log(lo, hi, d):
            scale = "log"
            notes.append(f"auto log: default {d}, schema range [{lo}, {_f(hi)}]")
            if "min" not in ov and "max" not in ov:
                lo, hi = max(lo, 1, math.ceil(d / LOG_WINDOW)), min(hi, math.floor(d * LOG_WINDOW))
                notes.append(f"window [d/{LOG_WINDOW:g}, d*{LOG_WINDOW:g}]")
        if scale == "log":
            lo = max(lo, 1)
        if not math.isfinite(hi):
            base = d if d is not None else lo
            hi = max(int(INF_FACTOR * base), 2 * lo, INF_MIN_WIDTH)
            notes.append(f"maximum Infinity: window up to {hi} = max({INF_FACTOR} d, 2 min, {INF_MIN_WIDTH})")
        hi = math.floor(hi)
        step = ov.get("step", cond.multiple() if cond else None) or 1
        if not (is_number(step) and float(step).is_integer() and step >= 1):
            raise self.error(leaf.name, f"an int step must be a positive integer, got {step!r}")
        power = cond.power() if cond else None
        p = IntParam(name=leaf.name, default=leaf.default, low=int(lo), high=int(hi), step=int(step), power=power,
                     log=scale == "log", excluded=[int(e) for e in excluded if float(e).is_integer()],
                     relations=self._relations(leaf), notes=notes)
        if p.log and p.low < 1:
            raise self.error(leaf.name, "log scale on an int needs a minimum >= 1")
        if not nonempty(p):
            raise self.error(leaf.name, f"no int in [{lo}, {hi}] satisfies math_cond '{leaf.math_cond}'")
        return p

    def epoch_key(self, name: str) -> str | None:
        prefixes = list(self.schema.ancestors(name)) + [""]
        for prefix in prefixes:
            for key in EPOCH_KEYS:
                cand = f"{prefix}.{key}" if prefix else key
                leaf = self.schema.leaves.get(cand)
                if leaf is not None and leaf.type in ("int", "float"):
                    return cand
        for cand, leaf in self.schema.leaves.items():
            if cand.rsplit(".", 1)[-1] in EPOCH_KEYS and leaf.type in ("int", "float"):
                return cand
        return None

    def milestones(self, leaf: Leaf) -> MilestonesParam:
        key = self.epoch_key(leaf.name)
        default = leaf.default if isinstance(leaf.default, list) else []
        if key is not None:
            budget = self.value_of(key)
            budget = int(budget) if is_number(budget) else 10
        else:
            top = max([v for v in default if is_number(v)] or [5])
            budget = int(2 * top)
        notes = [] if key else [f"no epoch key in the schema: budget 2 x max(default) = {budget}"]
        default_budget = self.schema.default_value(key) if key else None
        return MilestonesParam(name=leaf.name, default=leaf.default, budget_param=key, budget=budget,
                               default_budget=int(default_budget) if is_number(default_budget) else None,
                               max_count=MAX_MILESTONES, budget_searched=key in self.searched_set, notes=notes)

    def sizes(self, leaf: Leaf) -> SubsetParam:
        values = list(leaf.default)
        if all(is_int(v) for v in values):
            g = 0
            for v in values:
                g = math.gcd(g, int(v))
            g = g or 1
            grid = list(range(min(values), max(values) + 1, g)) if len(values) > 1 else values
            note = f"sorted distinct multiples of {g} in [{min(values)}, {max(values)}] (the default's range and gcd)"
        else:
            grid = sorted(set(values))
            note = "sorted distinct values of the default"
        return SubsetParam(name=leaf.name, default=leaf.default, choices=grid, min_count=1,
                           max_count=max(1, len(set(values))), label="sizes", notes=[note])

    def kernel(self, leaf: Leaf) -> KernelParam:
        size_params = [p for p in leaf.depends_on if self.schema.leaves[p].type in NUMERIC_TYPES]
        defaults = []
        for p in size_params:
            v = self.value_of(p)
            defaults.append(int(v) if is_number(v) else 224)
        return KernelParam(name=leaf.name, default=leaf.default, size_params=size_params, size_defaults=defaults,
                           searched_parents=[p for p in size_params if p in self.searched_set])

    def consecutive(self, leaf: Leaf) -> ConsecutiveListParam:
        default = leaf.default if isinstance(leaf.default, list) else []
        top = int(leaf.maximum) if is_number(leaf.maximum) else DEFAULT_STAGES
        if leaf.type == "list_1_backbone":
            empty = [-1] if default == [-1] else []
            return ConsecutiveListParam(name=leaf.name, default=leaf.default, start=0, min_count=0,
                                        max_count=max(top, 1), empty=empty,
                                        notes=[f"freeze the first n stages; n=0 -> {empty}"])
        start = int(leaf.minimum) if is_number(leaf.minimum) else (int(default[0]) if default and is_number(default[0]) else 0)
        return ConsecutiveListParam(name=leaf.name, default=leaf.default, start=start, min_count=1,
                                    max_count=max(top - start + 1 if is_number(leaf.maximum) else DEFAULT_STAGES, 1))

    # -- cross-parameter feasibility -------------------------------------------------------------
    def tighten(self, params: dict[str, Param]) -> None:
        """Shrink searched parents so that every dependent (searched or fixed) stays feasible."""
        for name in reversed([n for n in self.schema.topological(list(params)) if n in params]):
            child = params[name]
            if isinstance(child, KernelParam):
                for size in child.searched_parents:
                    if isinstance(params.get(size), (IntParam, FloatParam)):
                        bound_parent(params[size], "at_most", 3, 3, f"so that {name} fits a 3x3 kernel")
            if isinstance(child, MilestonesParam) and child.budget_searched:
                budget = params.get(child.budget_param)
                if isinstance(budget, (IntParam, FloatParam)):
                    bound_parent(budget, "<", 1, 1, f"so that {name} has a milestone")
            for rel in getattr(child, "relations", []):
                parent = params.get(rel.parent)
                why = f"so that {name} can be {rel.text()}"
                if isinstance(parent, (IntParam, FloatParam)) and rel.op != "multiple":
                    cmin, cmax = static_range(child)
                    bound_parent(parent, rel.op, cmin, cmax, why)
                elif parent is not None:
                    filter_parent(parent, lambda c, child=child, rel=rel: child_feasible(child, rel, c), why)
        # fixed dependents of searched parents
        for name, leaf in self.schema.leaves.items():
            if name in params:
                continue
            value = self.value_of(name)
            for rel in self._relations(leaf) if leaf.type in NUMERIC_TYPES else []:
                parent = params.get(rel.parent)
                if parent is None or not is_number(value):
                    continue
                why = f"fixed {name}={value} must be {rel.text()}"
                if not isinstance(parent, (IntParam, FloatParam)):
                    filter_parent(parent, lambda c, v=value, rel=rel: rel.holds(v, c), why)
                elif rel.op == "multiple":
                    if isinstance(parent, IntParam) and is_int(value):
                        parent.divides.append(int(value))
                        parent.notes.append(f"divides {value} ({why})")
                else:
                    bound_parent(parent, rel.op, value, value, why)
            if leaf.type == "list_2" and is_milestones(name) and isinstance(value, list) and value:
                key = self.epoch_key(name)
                parent = params.get(key) if key else None
                if isinstance(parent, (IntParam, FloatParam)) and all(is_number(v) for v in value):
                    bound_parent(parent, "<", max(value), max(value), f"fixed milestones {name}={value}")
            if leaf.type == "list_3" and isinstance(value, list) and value and is_number(value[0]) and value[0] >= 3:
                for p in leaf.depends_on:
                    parent = params.get(p)
                    if isinstance(parent, (IntParam, FloatParam)):
                        bound_parent(parent, "at_most", 10 * value[0], 10 * value[0],
                                     f"fixed kernel {name}={value} needs {p} >= {10 * value[0]}")
        for p in params.values():
            if isinstance(p, IntParam) and not nonempty(p):
                raise self.error(p.name, "no value is left after applying the constraints of its dependents: "
                                         + "; ".join(p.notes))
            if isinstance(p, FloatParam) and p.low > p.high:
                raise self.error(p.name, "empty range after applying the constraints of its dependents: "
                                         + "; ".join(p.notes))


def _num_or(value: Any, fallback: float) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value):
        return float(value)
    return fallback


def _f(x: float | None) -> str:
    return "None" if x is None else f"{x:.6g}"


def compile_params(schema: Schema, include=None, overrides=None, fixed=None):
    """Return ``(params in dependency order, context, baseline, skipped, warnings)``."""
    c = Compiler(schema, include, overrides, fixed)
    params = {name: c.build(schema.leaves[name]) for name in c.searched}
    c.tighten(params)
    order = _order(params)
    context: dict[str, Any] = {}
    for p in params.values():
        refs = list(getattr(p, "relations", []) and [r.parent for r in p.relations])
        if isinstance(p, MilestonesParam) and p.budget_param:
            refs.append(p.budget_param)
        if isinstance(p, KernelParam):
            refs += p.size_params
        for ref in refs:
            if ref not in params:
                context[ref] = c.value_of(ref)
    for p in params.values():
        fold_fixed_parents(p, context)
        if isinstance(p, IntParam) and not nonempty(p) or isinstance(p, FloatParam) and p.low > p.high:
            raise c.error(p.name, "no value satisfies its constraints with the fixed values: " + "; ".join(p.notes))
    baseline = {name: c.value_of(name) for name in order}
    return [params[n] for n in order], context, baseline, c.skipped, list(schema.warnings)


def _order(params: dict[str, Param]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for parent in params[name].parents:
            if parent in params:
                visit(parent)
        order.append(name)

    for name in params:
        visit(name)
    return order
