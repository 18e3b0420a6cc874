"""Checking a user's spec against a train schema (``automl train -e spec.yaml key=value``).

One readable line per problem: a key the schema does not have (with a did-you-mean), a wrong type, a
value outside the enum or ``[minimum, maximum]``, a violated constant ``math_cond``. Keys under a
mapping the schema leaves open (a collection without properties, e.g. ``dataset.val_dataset: {}``)
are allowed, and so is ``null`` where the schema's default is ``null``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from automl.errors import did_you_mean
from automl.space.conditions import is_power
from automl.space.params import is_int, is_number
from automl.space.schema import Leaf, Schema

_LISTS = ("list", "list_1_backbone", "list_1_normal", "list_2", "list_3", "subset_list", "optional_list")


def validate_spec(spec: Mapping[str, Any], schema: Schema, source: str = "spec") -> list[str]:
    problems: list[str] = []
    _walk(spec, "", schema, source, problems)
    return problems


def _walk(node: Mapping[str, Any], prefix: str, schema: Schema, source: str, problems: list[str]) -> None:
    for key, value in node.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if name in schema.collections:
            if isinstance(value, Mapping):
                _walk(value, name, schema, source, problems)
            elif value is not None:
                problems.append(f"{source}: '{name}' must be a mapping of keys, got {_show(value)}")
            continue
        leaf = schema.leaves.get(name)
        if leaf is None:
            if _open_ancestor(name, schema):
                continue
            siblings = [n for n in list(schema.leaves) + list(schema.collections)]
            problems.append(f"{source}: unknown key '{name}'{did_you_mean(name, siblings)}")
            continue
        problems += [f"{source}: {p}" for p in check_value(leaf, value)]


def _open_ancestor(name: str, schema: Schema) -> bool:
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        anc = ".".join(parts[:i])
        leaf = schema.leaves.get(anc)
        if leaf is not None:
            return leaf.type == "collection"
        if anc in schema.collections:
            return False
    return False


def check_value(leaf: Leaf, value: Any) -> list[str]:
    """Problems with one value for one schema leaf."""
    name, t = leaf.name, leaf.type
    if value is None:
        return [] if leaf.default is None else [f"'{name}' is null; expected {t}"]
    if value == leaf.default and type(value) is type(leaf.default):
        return []  # the schema's own default is accepted even where TAO's enum/range forgot it
    if t == "collection":
        return [] if isinstance(value, Mapping) else [f"'{name}' must be a mapping, got {_show(value)}"]
    if t == "int" and not is_int(value):
        return [f"'{name}' must be an int, got {_show(value)}"]
    if t == "float" and not (is_number(value) or (isinstance(value, float) and math.isinf(value))):
        return [f"'{name}' must be a number, got {_show(value)}"]
    if t == "bool" and not isinstance(value, bool):
        return [f"'{name}' must be true or false, got {_show(value)}"]
    if t in _LISTS:
        if not isinstance(value, list):
            return [f"'{name}' must be a list, got {_show(value)}"]
        if leaf.enum and t in ("subset_list", "optional_list", "list"):
            bad = [v for v in value if v not in leaf.enum]
            if bad:
                return [f"'{name}': {bad} not allowed; allowed values: {leaf.enum}"]
        if isinstance(leaf.minimum, list) and isinstance(leaf.maximum, list):
            if len(value) != len(leaf.minimum):
                return [f"'{name}' must have {len(leaf.minimum)} entries, got {len(value)}"]
            for i, (v, a, b) in enumerate(zip(value, leaf.minimum, leaf.maximum)):
                if not is_number(v) or not a <= v <= b:
                    return [f"'{name}'[{i}] = {_show(v)} is outside [{a}, {b}]"]
        return []
    if t == "string" and not isinstance(value, str) and not leaf.enum:
        return [f"'{name}' must be a string, got {_show(value)}"]
    if leaf.enum is not None and t in ("categorical", "ordered_int", "string"):
        if not any(value == e and isinstance(value, bool) == isinstance(e, bool) for e in leaf.enum):
            return [f"'{name}' = {_show(value)} is not allowed; allowed values: {', '.join(map(str, leaf.enum))}"]
        return []
    if t in ("int", "float"):
        out = []
        lo, hi = leaf.minimum, leaf.maximum
        if is_number(lo) and value < lo or is_number(hi) and value > hi:
            out.append(f"'{name}' = {_show(value)} is outside [{lo}, {hi}]")
        cond = leaf.condition
        if cond is not None:
            for c in cond.constants():
                if not c.holds(value):
                    out.append(f"'{name}' = {_show(value)} violates math_cond '{c.text()}'")
            if cond.power() is not None and not is_power(value, cond.power()):
                out.append(f"'{name}' = {_show(value)} must be a power of {cond.power()}")
            k = cond.multiple()
            if k is not None and abs(value / k - round(value / k)) > 1e-9:
                out.append(f"'{name}' = {_show(value)} must be a multiple of {k}")
        return out
    return []


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_spec(spec: Mapping[str, Any], schema: Schema, source: str = "spec",
               overrides: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`SpecError` with the first problem of :func:`validate_spec` (and how many more).
    ``overrides`` (the dotted ``key=value`` of the command line, already applied to ``spec``) are
    checked first on their own, so that a bad one is named as an override and not as ``source``."""
    from automl.errors import SpecError
    from automl.spec import apply_config

    problems = validate_spec(apply_config({}, overrides), schema, "override") if overrides else []
    problems = problems or validate_spec(spec, schema, source)
    if problems:
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        raise SpecError(f"{problems[0]}{more}")
