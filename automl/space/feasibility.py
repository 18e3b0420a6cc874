"""Cross-parameter feasibility: narrowing searched parents so that every dependent keeps a valid value,
and folding relations to parents that are not searched into plain bounds."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from automl.space.params import CategoricalParam, FloatParam, IntParam, Param, Relation, is_int, is_number


def filter_parent(parent: Param, ok, why: str) -> None:
    """Drop the parent's values for which no dependent value exists (ints: as exclusions)."""
    if isinstance(parent, CategoricalParam):
        if not all(is_number(c) for c in parent.choices):
            return
        keep = [i for i, c in enumerate(parent.choices) if ok(c)]
        if len(keep) < len(parent.choices):
            dropped = [parent.choices[i] for i in range(len(parent.choices)) if i not in keep]
            if parent.weights is not None:
                parent.weights = [parent.weights[i] for i in keep]
            parent.choices = [parent.choices[i] for i in keep]
            parent.notes.append(f"not {dropped} ({why})")
    elif isinstance(parent, IntParam):
        plan = parent.plan({})
        candidates = plan if isinstance(plan, list) else range(plan[0], plan[1] + 1, plan[2])
        if len(candidates) > 100_000:
            return
        bad = [v for v in candidates if not ok(v)]
        if bad:
            parent.excluded += bad
            shown = ", ".join(map(str, bad[:6])) + (", ..." if len(bad) > 6 else "")
            parent.notes.append(f"not {shown} ({why})")


def bound_parent(parent: Param, op: str, cmin: float, cmax: float, why: str) -> None:
    """Narrow a numeric parent so that a dependent whose values span ``[cmin, cmax]`` can still stand in
    relation ``op`` to it."""
    integer = isinstance(parent, IntParam)
    if op in (">", ">="):          # child > parent: parent below the child's largest value
        limit = cmax - 1 if (op == ">" and integer) else cmax
        if limit < parent.high:
            parent.high = int(math.floor(limit)) if integer else float(limit)
            if op == ">" and not integer:
                parent.high_open = True
            parent.notes.append(f"<= {limit:g} ({why})")
    elif op in ("<", "<=", "at_most"):  # child <= parent: parent above the child's smallest value
        limit = cmin + 1 if (op == "<" and integer) else cmin
        if limit > parent.low:
            parent.low = int(math.ceil(limit)) if integer else float(limit)
            if op == "<" and not integer:
                parent.low_open = True
            parent.notes.append(f">= {limit:g} ({why})")
    elif op == "multiple" and cmax < parent.high:
        parent.high = int(cmax) if integer else float(cmax)
        parent.notes.append(f"<= {cmax:g} ({why})")


def child_feasible(child: Param, rel: Relation, parent_value: float) -> bool:
    """Whether some value of a searched ``child`` satisfies ``rel`` against ``parent_value``."""
    if isinstance(child, IntParam):
        plan = child.plan({})
        if isinstance(plan, list):
            return any(rel.holds(v, parent_value) for v in plan)
        lo, hi, step = plan
        if rel.op == "multiple":
            if not is_int(parent_value) or parent_value <= 0:
                return False
            both = step * int(parent_value) // math.gcd(step, int(parent_value))
            return -(-lo // both) * both <= hi
        values = range(lo, hi + 1, step)
        return any(rel.holds(v, parent_value) for v in (values if len(values) <= 100_000 else (lo, hi)))
    if isinstance(child, FloatParam):
        return rel.op == "multiple" or rel.holds(child.low, parent_value) or rel.holds(child.high, parent_value)
    return True


def static_range(p: Param) -> tuple[float, float]:
    if isinstance(p, IntParam):
        plan = p.plan({})
        if isinstance(plan, list):
            return (min(plan), max(plan)) if plan else (p.low, p.high)
        return plan[0], plan[1]
    if isinstance(p, FloatParam):
        return p.low, p.high
    return -math.inf, math.inf


def nonempty(p: IntParam) -> bool:
    plan = p.plan({})
    return bool(plan) if isinstance(plan, list) else plan[0] <= plan[1]


def fold_fixed_parents(p: Param, context: Mapping[str, Any]) -> None:
    """Turn relations to parents that are not searched into plain bounds (so Ray gets native domains)."""
    if not isinstance(p, (IntParam, FloatParam)):
        return
    kept = []
    for rel in p.relations:
        if rel.parent not in context:
            kept.append(rel)
            continue
        v = context[rel.parent]
        if not is_number(v):
            continue
        integer = isinstance(p, IntParam)
        note = f"{rel.text()} (fixed at {v})"
        if rel.op == ">":
            if integer:
                p.low = max(p.low, math.floor(v) + 1)
            elif v >= p.low:
                p.low, p.low_open = float(v), True
        elif rel.op == ">=":
            p.low = max(p.low, math.ceil(v)) if integer else max(p.low, float(v))
        elif rel.op == "<":
            if integer:
                p.high = min(p.high, math.ceil(v) - 1)
            elif v <= p.high:
                p.high, p.high_open = float(v), True
        elif rel.op in ("<=", "at_most"):
            p.high = min(p.high, math.floor(v)) if integer else min(p.high, float(v))
        elif rel.op == "!=":
            p.excluded.append(int(v) if integer else float(v))
        elif rel.op == "multiple":
            if integer and is_int(v) and v > 0:
                p.step = p.step * int(v) // math.gcd(p.step, int(v))
            else:
                kept.append(rel)
                continue
        p.notes.append(note)
    p.relations = kept
