"""Helpers for the search-space tests.

:func:`raw_violations` re-checks a sampled config against the *raw* schema JSON, written
independently of ``automl.space`` (it shares no code with ``SearchSpace.check``): every bound, enum,
weight, math_cond and dependency a TAO schema states, plus the structured-list contracts.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from automl.space.sources import Source

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TAO_SCHEMAS = SHARED / "tao-schemas"
TAO_MODELS = SHARED / "tao-models"


def shared_schemas() -> list[Path]:
    """Every real schema the compiler must read: ../shared/tao-schemas plus the tao-models train schemas."""
    files = sorted(TAO_SCHEMAS.glob("*.json")) + sorted(TAO_MODELS.glob("*/schemas/train.schema.json"))
    return files


def schema_params() -> list[Any]:
    files = shared_schemas()
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{SHARED} is absent: the real TAO schemas "
                                                                 "live in ../shared (not copied into the repo)"))]
    return [pytest.param(f, id=f"{f.parent.parent.name}-{f.name}" if f.name == "train.schema.json" else f.name)
            for f in files]


def write_schema(tmp_path: Path, properties: dict[str, Any], name: str = "t.train.schema.json", **root: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"type": "object", "properties": properties, **root}))
    return path


# ----------------------------------------------------------------------------------------------
# the independent checker
# ----------------------------------------------------------------------------------------------
_INT = {"int", "integer", "ordered_int"}
_FLOAT = {"float", "number"}
_OPS = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b, "!=": lambda a, b: a != b, "==": lambda a, b: a == b}


def raw_nodes(schema_path: Path) -> dict[str, dict[str, Any]]:
    data = json.loads(Path(schema_path).read_text())
    out: dict[str, dict[str, Any]] = {}

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for key, child in (node.get("properties") or {}).items():
            if not isinstance(child, Mapping):
                continue
            name = f"{prefix}.{key}" if prefix else key
            if isinstance(child.get("properties"), Mapping):
                walk(child, name)
            else:
                out[name] = dict(child)

    walk(data, "")
    return out


def _kind(node: Mapping[str, Any]) -> str:
    t = node.get("type")
    if t is None and isinstance(node.get("anyOf"), list):
        offered = {a.get("type") for a in node["anyOf"] if isinstance(a, Mapping)}
        if node.get("enum"):
            return "categorical"
        if offered & {"integer", "int"} and isinstance(node.get("default"), int):
            return "int"
        if offered & {"number", "float"}:
            return "float"
        if offered & {"bool", "boolean"}:
            return "bool"
    return {"integer": "int", "number": "float", "boolean": "bool"}.get(t, t)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _clauses(cond: str) -> list[tuple[str, str]]:
    return re.findall(r"(>=|<=|!=|==|>|<|\^|/)\s*([A-Za-z_]+|[-+0-9.eE]+)", cond or "")


def _epoch_key(nodes: Mapping[str, Any], name: str) -> str | None:
    parts = name.split(".")[:-1]
    while True:
        for key in ("num_epochs", "epochs", "epoch"):
            cand = ".".join(parts + [key])
            if cand in nodes and _kind(nodes[cand]) in ("int", "float"):
                return cand
        if not parts:
            break
        parts.pop()
    return next((n for n in nodes if n.rsplit(".", 1)[-1] in ("num_epochs", "epochs", "epoch")), None)


def is_milestone_name(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last in ("lr_steps", "steps", "milestones") or last.startswith("decay_step") or last.endswith("_steps")


def raw_violations(schema_path: Path, config: Mapping[str, Any], fixed: Mapping[str, Any] | None = None) -> list[str]:
    nodes = raw_nodes(schema_path)
    fixed = dict(fixed or {})

    def value_of(name: str) -> Any:
        if name in config:
            return config[name]
        if name in fixed:
            return fixed[name]
        return nodes[name].get("default")

    bad: list[str] = []
    for name, v in config.items():
        node = nodes.get(name)
        if node is None:
            bad.append(f"{name}: not in the schema")
            continue
        kind = _kind(node)
        lo, hi, enum = node.get("minimum"), node.get("maximum"), node.get("enum")
        deps = [d.strip() for d in str(node.get("depends_on") or "").split(",") if d.strip()]
        if kind in ("int", "float"):
            if kind == "int" and not _is_int(v) or not _is_num(v):
                bad.append(f"{name}: {v!r} is not a {kind}")
                continue
            if _is_num(lo) and v < lo or _is_num(hi) and v > hi:
                bad.append(f"{name}: {v} outside [{lo}, {hi}]")
            relational = False
            for op, operand in _clauses(node.get("math_cond")):
                if operand == "depends_on":
                    relational = True
                    for d in deps:
                        p = value_of(d)
                        if op == "/":
                            if not (_is_int(p) and p > 0 and v % p == 0):
                                bad.append(f"{name}: {v} is not a multiple of {d}={p}")
                        elif not _OPS[op](v, p):
                            bad.append(f"{name}: {v} {op} {d}={p} fails")
                    continue
                k = float(operand)
                if op == "^":
                    x = 1
                    while x < v:
                        x *= k
                    if x != v:
                        bad.append(f"{name}: {v} is not a power of {k:g}")
                elif op == "/":
                    if v % k:
                        bad.append(f"{name}: {v} is not a multiple of {k:g}")
                elif not _OPS[op](v, k):
                    bad.append(f"{name}: {v} {op} {k:g} fails")
            if deps and not relational:
                for d in deps:
                    p = value_of(d)
                    if _is_num(p) and _kind(nodes[d]) in ("int", "float", "ordered_int") and v > p:
                        bad.append(f"{name}: {v} exceeds its parent {d}={p}")
        elif kind == "bool":
            if not isinstance(v, bool):
                bad.append(f"{name}: {v!r} is not a bool")
        elif kind in ("categorical", "ordered_int", "string"):
            if v not in (enum or []):
                bad.append(f"{name}: {v!r} not in {enum}")
            weights = node.get("option_weights")
            if weights and v in enum and weights[enum.index(v)] <= 0:
                bad.append(f"{name}: {v!r} has weight 0")
        elif kind in ("subset_list", "optional_list") or kind == "list" and enum:
            if not isinstance(v, list) or any(x not in enum for x in v) or len(set(v)) != len(v):
                bad.append(f"{name}: {v!r} is not a subset of {enum}")
            elif kind != "optional_list" and not v:
                bad.append(f"{name}: empty subset")
        elif kind in ("list", "list_2") and isinstance(lo, list):
            if not isinstance(v, list) or len(v) != len(lo) or any(not a <= x <= b for x, a, b in zip(v, lo, hi)):
                bad.append(f"{name}: {v!r} not element-wise within {lo}..{hi}")
        elif kind == "list_2" and is_milestone_name(name):
            key = _epoch_key(nodes, name)
            budget = value_of(key) if key else None
            if not isinstance(v, list) or not all(_is_int(x) for x in v):
                bad.append(f"{name}: {v!r} is not a list of ints")
            elif v != sorted(set(v)):
                bad.append(f"{name}: {v} not sorted/distinct")
            elif budget is not None and any(not 0 < x < budget for x in v):
                bad.append(f"{name}: {v} not inside (0, {budget})")
            elif budget is not None and budget >= 2 and not 1 <= len(v) <= 4:
                bad.append(f"{name}: {len(v)} milestones")
        elif kind == "list_2":
            default = node.get("default")
            g = 0
            for x in default:
                g = math.gcd(g, int(x))
            grid = set(range(min(default), max(default) + 1, g or 1))
            if not isinstance(v, list) or not v or v != sorted(set(v)) or not set(v) <= grid or len(v) > len(default):
                bad.append(f"{name}: {v!r} is not a sorted subset of the default's grid")
        elif kind == "list_3":
            sizes = [value_of(d) for d in deps]
            kmax = max(3, min(sizes) // 10) if sizes else None
            if (not isinstance(v, list) or len(v) != 2 or v[0] != v[1] or not _is_int(v[0]) or v[0] % 2 == 0
                    or v[0] < 3 or kmax is not None and v[0] > kmax):
                bad.append(f"{name}: {v!r} is not an odd square kernel within [3, {kmax}]")
        elif kind in ("list_1_backbone", "list_1_normal"):
            if not isinstance(v, list) or not (v == [-1] or v == list(range(v[0], v[0] + len(v))) if v else True):
                bad.append(f"{name}: {v!r} is not a consecutive range")
        else:
            bad.append(f"{name}: the test checker does not know type {kind!r}")
    return bad


# ----------------------------------------------------------------------------------------------
# a source that drives every draw to an edge of its range
# ----------------------------------------------------------------------------------------------
class EdgeSource(Source):
    """Every draw at its lowest (``top=False``) or highest (``top=True``) value: what a model-based
    sampler may well propose, and where off-by-one and open-bound bugs live."""

    def __init__(self, top: bool):
        self.top = top

    def unit(self, key: str) -> float:
        return math.nextafter(1.0, 0.0) if self.top else 0.0

    def float(self, key: str, low: float, high: float, log: bool = False) -> float:
        return high if self.top else low

    def int(self, key: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        return low + ((high - low) // step) * step if self.top else low

    def categorical(self, key: str, choices: Sequence[Any]) -> Any:
        return choices[-1] if self.top else choices[0]
