"""Loading a train schema in TAO's JSON dialect and validating the dialect.

A schema is a JSON object (Python's ``json`` accepts the ``Infinity``/``NaN`` tokens TAO writes) whose
``properties`` nest: a node with ``properties`` (type ``collection``/``object``) is a collection, any
other node under ``properties`` is a parameter (a *leaf*) named by its dotted path. ``default``,
``anyOf`` and the other keys of a leaf are data, never walked, so junk ``type`` keys inside a
``default`` do not matter.

Type names are normalised (``integer`` -> ``int``, ``number`` -> ``float``, ``boolean`` -> ``bool``,
``object`` -> ``collection``, ``array`` -> ``list``). A leaf without ``type`` takes it from ``anyOf``
(an ``enum`` makes it categorical; a numeric alternative makes it ``int`` when ``integer`` is offered
and the default is an int, else ``float``; then ``bool``, ``list``, ``string``), else from its default.

Malformed schemas raise :class:`~automl.errors.SchemaError` with one line naming the file and the
parameter: unknown type, ``minimum > maximum`` (element-wise for list bounds), ``option_weights``
that do not match the enum (length, negative, zero sum), a ``depends_on`` that names no parameter, a
dependency cycle, a ``math_cond`` this dialect does not know. Real TAO files have a few harmless
inconsistencies that are only *warnings* (``Schema.warnings``): a default outside its own enum or
range, a name in ``automl_default_parameters`` that does not exist.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automl.errors import SchemaError
from automl.space.conditions import Condition, parse_math_cond

TYPE_ALIASES = {
    "int": "int", "integer": "int",
    "float": "float", "number": "float",
    "bool": "bool", "boolean": "bool",
    "string": "string", "str": "string",
    "categorical": "categorical",
    "ordered_int": "ordered_int",
    "list": "list", "array": "list",
    "list_1_backbone": "list_1_backbone",
    "list_1_normal": "list_1_normal",
    "list_2": "list_2",
    "list_3": "list_3",
    "subset_list": "subset_list",
    "optional_list": "optional_list",
    "collection": "collection", "object": "collection",
}


#: a parameter's node has at least one of these (others, e.g. ``description``, are documentation)
DEFINING_KEYS = ("type", "default", "enum", "anyOf", "minimum", "maximum")
#: collections nest at most this deep (TAO's go 4 deep); deeper is a broken file, not a schema
MAX_DEPTH = 32


@dataclass
class Leaf:
    """One parameter of a schema, with its dialect keys parsed."""

    name: str
    type: str
    default: Any = None
    minimum: Any = None
    maximum: Any = None
    enum: list[Any] | None = None
    option_weights: list[float] | None = None
    math_cond: str | None = None
    condition: Condition | None = None
    depends_on: tuple[str, ...] = ()
    automl_enabled: bool | None = None
    parent_param: bool = False
    popular: bool = False
    pattern: str | None = None
    scale: str | None = None
    #: our extension ``automl_search_range: [lo, hi]``: the window a search draws from, inside the
    #: valid ``[minimum, maximum]`` that specs are checked against
    search_range: tuple[float, float] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    # Mapping-style access so callers may treat a leaf like its JSON node.
    def __getitem__(self, key: str) -> Any:
        key = {"min": "minimum", "max": "maximum", "weights": "option_weights"}.get(key, key)
        if key in self.__dataclass_fields__ and key != "raw":
            return getattr(self, key)
        return self.raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        try:
            value = self[key]
        except KeyError:
            return default
        return default if value is None else value

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    @property
    def is_open_mapping(self) -> bool:
        return self.type == "collection"


class Schema:
    """A loaded train schema: its leaves, collections and AutoML selection lists."""

    def __init__(self, path: str | Path, data: Mapping[str, Any]):
        self.path = Path(path)
        self.data = data
        self.leaves: dict[str, Leaf] = {}
        self.collections: dict[str, dict[str, Any]] = {}
        self.warnings: list[str] = []
        self.default_parameters: list[str] = []      # union of every automl_default_parameters
        self.disabled: dict[str, str] = {}           # name -> where it was disabled ("root", "train", ...)
        if not isinstance(data, Mapping):
            raise SchemaError(f"{self.path}: a train schema must be a JSON object")
        if not isinstance(data.get("properties"), Mapping):
            raise SchemaError(f"{self.path}: a train schema needs a top-level 'properties' object (its parameters), "
                              f"got {'none' if data.get('properties') is None else type(data['properties']).__name__}")
        self._walk(data, "")
        self._check_dependencies()

    # -- construction ---------------------------------------------------------------------------
    def error(self, name: str, message: str) -> SchemaError:
        return SchemaError(f"{self.path}: parameter '{name}': {message}")

    def _search_range(self, name: str, value: Any, ltype: str, lo: Any, hi: Any) -> tuple[float, float] | None:
        if value is None:
            return None
        ok = (isinstance(value, list) and len(value) == 2 and ltype in ("int", "float")
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value) and value[0] <= value[1])
        if not ok:
            raise self.error(name, f"automl_search_range must be [low, high] (low <= high) on an int or float, got {value!r}")
        inside = (not isinstance(lo, (int, float)) or value[0] >= lo) and (not isinstance(hi, (int, float)) or value[1] <= hi)
        if not inside:
            raise self.error(name, f"automl_search_range {value} must lie inside [minimum, maximum] = [{lo}, {hi}]")
        return float(value[0]), float(value[1])

    def _walk(self, node: Mapping[str, Any], prefix: str) -> None:
        where = prefix or "root"
        if prefix.count(".") >= MAX_DEPTH:
            raise self.error(where, f"nested more than {MAX_DEPTH} collections deep")
        for key in ("automl_default_parameters", "automl_disabled_parameters"):
            value = node.get(key)
            if value is None:
                continue
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise self.error(where, f"{key} must be a list of dotted names")
            if key == "automl_default_parameters":
                self.default_parameters += [v for v in value if v not in self.default_parameters]
            else:
                for v in value:
                    self.disabled.setdefault(v, where)
        props = node.get("properties")
        if props is None:
            return
        if not isinstance(props, Mapping):
            raise self.error(where, "'properties' must be an object")
        for key, child in props.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if not isinstance(child, Mapping):
                if key in ("automl_default_parameters", "automl_disabled_parameters"):
                    # seen in real TAO files: a selection list misplaced inside `properties`
                    self._walk({key: child}, prefix)
                    continue
                raise self.error(name, f"a parameter must be a JSON object, got {type(child).__name__}")
            if child.get("properties") is not None and not isinstance(child["properties"], Mapping):
                raise self.error(name, f"'properties' must be an object, got {type(child['properties']).__name__}")
            if isinstance(child.get("properties"), Mapping):
                self.collections[name] = dict(child)
                self._walk(child, name)
            else:
                self.leaves[name] = self._leaf(name, child)

    def _leaf(self, name: str, node: Mapping[str, Any]) -> Leaf:
        if not any(key in node for key in DEFINING_KEYS):
            # only keys this dialect does not know: a typo ("typ") or a node that is not a parameter
            raise self.error(name, f"has none of {', '.join(DEFINING_KEYS)} (its keys: "
                                   f"{', '.join(map(str, node)) or 'none'}); a parameter needs a type or a default")
        ltype = self._leaf_type(name, node)
        enum = node.get("enum")
        if enum is not None and not isinstance(enum, list):
            raise self.error(name, "'enum' must be a list")
        weights = node.get("option_weights")
        if weights is not None:
            if enum is None:
                raise self.error(name, "option_weights given without an enum")
            if not isinstance(weights, list) or len(weights) != len(enum):
                raise self.error(name, f"option_weights has {len(weights) if isinstance(weights, list) else 'no'} "
                                       f"entries but the enum has {len(enum)}")
            if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
                       for w in weights) or sum(weights) <= 0:
                raise self.error(name, f"option_weights {weights} must be non-negative numbers with a positive sum")
        lo, hi = node.get("minimum"), node.get("maximum")
        self._check_bounds(name, lo, hi)
        cond_text = node.get("math_cond")
        cond = None
        if cond_text is not None:
            if not isinstance(cond_text, str):
                raise self.error(name, f"math_cond must be a string, got {cond_text!r}")
            try:
                cond = parse_math_cond(cond_text)
            except ValueError as exc:
                raise self.error(name, str(exc)) from None
        deps = node.get("depends_on")
        if deps is None:
            depends: tuple[str, ...] = ()
        elif isinstance(deps, str):
            depends = tuple(d.strip() for d in deps.split(",") if d.strip())
        elif isinstance(deps, list) and all(isinstance(d, str) for d in deps):
            depends = tuple(d.strip() for d in deps)
        else:
            raise self.error(name, f"depends_on must be a name or a comma-separated list, got {deps!r}")
        if cond is not None and cond.needs_parent and not depends:
            raise self.error(name, f"math_cond '{cond_text}' refers to depends_on but no depends_on is given")
        scale = node.get("scale")
        if scale is not None and scale not in ("log", "linear"):
            raise self.error(name, f"scale must be 'log' or 'linear', got {scale!r}")
        search_range = self._search_range(name, node.get("automl_search_range"), ltype, lo, hi)
        enabled = node.get("automl_enabled")
        leaf = Leaf(
            name=name, type=ltype, default=node.get("default"), minimum=lo, maximum=hi, enum=enum,
            option_weights=[float(w) for w in weights] if weights is not None else None,
            math_cond=cond_text, condition=cond, depends_on=depends,
            automl_enabled=None if enabled is None else _truthy(enabled),
            parent_param=_truthy(node.get("parent_param", False)), popular=_truthy(node.get("popular", False)),
            pattern=node.get("pattern"), scale=scale, search_range=search_range, raw=dict(node),
        )
        if enum is not None and leaf.default is not None and ltype in ("categorical", "ordered_int", "string") \
                and leaf.default not in enum:
            self.warnings.append(f"{name}: default {leaf.default!r} is not in its enum {enum}")
        return leaf

    def _leaf_type(self, name: str, node: Mapping[str, Any]) -> str:
        raw = node.get("type")
        if isinstance(raw, list):  # JSON-schema style ["int", "null"]
            raw = next((t for t in raw if t != "null"), None)
        if raw is not None:
            if not isinstance(raw, str) or raw not in TYPE_ALIASES:
                raise self.error(name, f"unknown type {raw!r} (known: {', '.join(sorted(set(TYPE_ALIASES)))})")
            return TYPE_ALIASES[raw]
        default = node.get("default")
        if isinstance(node.get("anyOf"), list):
            offered = {TYPE_ALIASES.get(a.get("type")) for a in node["anyOf"] if isinstance(a, Mapping)}
            if node.get("enum") is not None:
                return "categorical"
            if "int" in offered and isinstance(default, int) and not isinstance(default, bool):
                return "int"
            if "float" in offered or "int" in offered:
                return "int" if offered & {"int", "float"} == {"int"} else "float"
            for t in ("bool", "list", "string"):
                if t in offered:
                    return t
        if node.get("enum") is not None:
            return "categorical"
        if isinstance(default, bool):
            return "bool"
        if isinstance(default, int):
            return "int"
        if isinstance(default, float):
            return "float"
        if isinstance(default, list):
            return "list"
        if isinstance(default, Mapping):
            return "collection"
        return "string"

    def _check_bounds(self, name: str, lo: Any, hi: Any) -> None:
        for key, value in (("minimum", lo), ("maximum", hi)):
            if value is None:
                continue
            values = value if isinstance(value, list) else [value]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v) for v in values):
                raise self.error(name, f"{key} must be a number (or a list of numbers), got {value!r}")
        if lo is None or hi is None:
            return
        if isinstance(lo, list) != isinstance(hi, list):
            raise self.error(name, "minimum and maximum must both be numbers or both be lists")
        if isinstance(lo, list):
            if len(lo) != len(hi):
                raise self.error(name, f"minimum {lo} and maximum {hi} have different lengths")
            bad = [i for i, (a, b) in enumerate(zip(lo, hi)) if a > b]
            if bad:
                raise self.error(name, f"minimum {lo} > maximum {hi} at element {bad[0]}")
        elif lo > hi:
            raise self.error(name, f"minimum {lo} > maximum {hi}")

    def resolve(self, name: str, near: str = "") -> str | None:
        """A parameter name as written in ``depends_on``: absolute, or relative to ``near``'s collection."""
        if name in self.leaves:
            return name
        parts = near.split(".")[:-1]
        while parts:
            candidate = ".".join(parts + [name])
            if candidate in self.leaves:
                return candidate
            parts.pop()
        return None

    def _check_dependencies(self) -> None:
        from automl.errors import did_you_mean

        for leaf in self.leaves.values():
            resolved = []
            for dep in leaf.depends_on:
                target = self.resolve(dep, leaf.name)
                if target is None:
                    raise self.error(leaf.name, f"depends_on '{dep}' names no parameter{did_you_mean(dep, self.leaves)}")
                if target == leaf.name:
                    raise self.error(leaf.name, "depends_on names the parameter itself")
                resolved.append(target)
            leaf.depends_on = tuple(resolved)
        self.order = self.topological(self.leaves)
        for name in self.default_parameters:
            if name not in self.leaves and name not in self.collections:
                self.warnings.append(f"automl_default_parameters names '{name}', which is not a parameter")

    def topological(self, names) -> list[str]:
        """Dotted names with every ``depends_on`` parent first (stable: schema order otherwise)."""
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(name: str, stack: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = stack[stack.index(name):] + [name]
                raise self.error(name, f"dependency cycle: {' -> '.join(cycle)}")
            state[name] = 1
            for dep in self.leaves[name].depends_on:
                visit(dep, stack + [name])
            state[name] = 2
            order.append(name)

        for name in names:
            visit(name, [])
        return order

    # -- queries --------------------------------------------------------------------------------
    def default_spec(self) -> dict[str, Any]:
        """The nested spec built from the schema's defaults (TAO's spec template equivalent)."""
        return _defaults_of(self.data)

    def default_value(self, name: str) -> Any:
        leaf = self.leaves.get(name)
        return copy.deepcopy(leaf.default) if leaf is not None else None

    def ancestors(self, name: str) -> Iterator[str]:
        parts = name.split(".")
        for i in range(len(parts) - 1, 0, -1):
            yield ".".join(parts[:i])

    def node(self, name: str) -> Mapping[str, Any] | None:
        """The JSON node of a leaf or collection."""
        if name in self.leaves:
            return self.leaves[name].raw
        return self.collections.get(name)

    def __repr__(self) -> str:
        return f"Schema({str(self.path)!r}, {len(self.leaves)} parameters)"


def _defaults_of(node: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    own = node.get("default") if isinstance(node.get("default"), Mapping) else {}
    for key, child in (node.get("properties") or {}).items():
        if not isinstance(child, Mapping):
            continue
        if isinstance(child.get("properties"), Mapping):
            out[key] = _defaults_of(child)
        elif "default" in child:
            out[key] = copy.deepcopy(child["default"])
        elif key in own:
            out[key] = copy.deepcopy(own[key])
        else:
            out[key] = None
    return out


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def load_schema(path: str | Path) -> Schema:
    """Read and validate a train schema; raise :class:`SchemaError` (one line) when it is malformed."""
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"{path}: schema file not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except UnicodeDecodeError:
        raise SchemaError(f"{path}: not a UTF-8 text file") from None
    except RecursionError:
        raise SchemaError(f"{path}: nested too deeply to be a train schema") from None
    return Schema(path, data)
