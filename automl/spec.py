"""Specs: nested YAML dictionaries in TAO's layout, with dotted ``key=value`` overrides.

The data path is ``schema -> space -> trial config -> trainer``: a trial config is a flat mapping of
dotted names to values, and :func:`apply_config` writes it into a copy of the base spec.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from automl.errors import SpecError


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML's safe loader that refuses a key given twice in one mapping: PyYAML keeps the last one
    silently, so a spec with ``lr`` twice would train with a value the user may not have meant."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key: the constructor below names it
            break
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A spec file as a mapping; a missing file, invalid YAML, a duplicate key or a non-mapping is one
    :class:`SpecError` line naming the file (and the line)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: spec file not found")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}  # noqa: S506 (a safe loader)
    except RecursionError:
        raise SpecError(f"{path}: nested too deeply to be a spec") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a UTF-8 text file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line: YAML's own spans several
        raise SpecError(f"{path}:{where} is not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec must be a mapping of keys, got {type(data).__name__}")
    return data


def dump_yaml(spec: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``spec`` as YAML (libyaml's emitter when available: several times faster than pure Python)."""
    from automl.fsutil import write_text

    text = yaml.dump(_plain(spec), Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False)
    return write_text(path, text)


def _plain(value: Any) -> Any:
    """Convert tuples and numpy scalars so that YAML and JSON writers accept them."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    return value


def parse_value(text: str) -> Any:
    """Parse the right-hand side of ``key=value`` with YAML's scalar rules (``1e-3``, ``[1,2]``, ``true``)."""
    try:
        return yaml.safe_load(text) if text != "" else ""
    except (yaml.YAMLError, RecursionError):  # not YAML (or absurdly nested): the text itself
        return text


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Turn ``["train.num_epochs=3", "model.backbone=resnet_50"]`` into a flat dotted mapping."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpecError(f"override '{item}': expected KEY=VALUE, e.g. train.num_epochs=3")
        out[key] = parse_value(value.strip())
    return out


def get_dotted(spec: Mapping[str, Any], key: str, default: Any = None) -> Any:
    node: Any = spec
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def set_dotted(spec: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = spec
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def flatten(spec: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to dotted keys; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def apply_config(spec: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """Return a deep copy of ``spec`` with every dotted key of ``config`` set."""
    out = copy.deepcopy(dict(spec))
    for key, value in config.items():
        set_dotted(out, key, _plain(value))
    return out
