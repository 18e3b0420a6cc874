"""Which leaves of a schema are searched, and why each other leaf is not (the rules are listed in
``automl.space``)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from automl.errors import SpecError, did_you_mean
from automl.space.params import is_number
from automl.space.schema import Leaf, Schema

_PATHLIKE = re.compile(r"(path|dir$|dirs?_|_dir|file|root|url|uri|folder)", re.I)


def is_milestones(name: str) -> bool:
    last = name.rsplit(".", 1)[-1].lower()
    return (last in ("lr_steps", "steps", "milestones", "lr_milestones") or last.startswith("decay_step")
            or last.endswith("_steps") or last.endswith("milestones"))


def unsearchable(leaf: Leaf) -> str | None:
    """Why a leaf can never be searched, or ``None``."""
    t = leaf.type
    if t == "collection":
        return "open mapping (collection without properties)"
    if t in ("string",):
        if leaf.enum:
            return None
        return "path/file string" if _PATHLIKE.search(leaf.name.rsplit(".", 1)[-1]) else "string without enum"
    if t in ("categorical", "ordered_int") and not leaf.enum:
        return f"{t} without enum"
    if t in ("subset_list", "optional_list") and not leaf.enum:
        return f"{t} without enum"
    if t in ("list", "list_2"):
        if leaf.enum or isinstance(leaf.minimum, list) and isinstance(leaf.maximum, list):
            return None
        if t == "list":
            return "free-form list (no enum or bounds)"
        if is_milestones(leaf.name):
            return None
        if not (isinstance(leaf.default, list) and leaf.default and all(is_number(v) for v in leaf.default)):
            return "list_2 without bounds or a numeric default"
    if t in ("int", "float") and leaf.default is None and not (is_number(leaf.minimum) and is_number(leaf.maximum)):
        return "number without default or finite bounds"
    return None


def select(schema: Schema, include: Iterable[str] | None) -> tuple[list[str], list[tuple[str, str]]]:
    """Which leaves are searched (schema order) and why each other leaf is not."""
    reasons = {name: unsearchable(leaf) for name, leaf in schema.leaves.items()}
    if include is not None:
        chosen: set[str] = set()
        known = list(schema.leaves) + list(schema.collections)
        for name in include:
            if name in schema.leaves:
                if reasons[name]:
                    raise SpecError(f"{schema.path}: parameter '{name}' cannot be searched: {reasons[name]}")
                chosen.add(name)
            elif name in schema.collections:
                chosen |= {n for n in schema.leaves if n.startswith(name + ".") and not reasons[n]}
            else:
                raise SpecError(f"{schema.path}: unknown parameter '{name}' in include{did_you_mean(name, known)}")
        searched = [n for n in schema.leaves if n in chosen]
        skipped = [(n, reasons[n] or "not in --include") for n in schema.leaves if n not in chosen]
        return searched, skipped

    defaults: set[str] = set()
    for name in schema.default_parameters:
        if name in schema.leaves:
            defaults.add(name)
        elif name in schema.collections:
            defaults |= {n for n in schema.leaves if n.startswith(name + ".")}
    use_list = bool(schema.default_parameters)
    searched, skipped = [], []
    for name, leaf in schema.leaves.items():
        reason = reasons[name]
        if reason is None and leaf.automl_enabled is False:
            reason = "automl_enabled: false"
        if reason is None and name in schema.disabled:
            reason = f"named in automl_disabled_parameters ({schema.disabled[name]})"
        if reason is None:
            if use_list and name not in defaults:
                anc = next((a for a in schema.ancestors(name) if a in schema.disabled), None)
                reason = f"under disabled collection '{anc}'" if anc else "not in automl_default_parameters"
            elif not use_list:
                anc = next((a for a in schema.ancestors(name) if a in schema.disabled), None)
                if anc:
                    reason = f"under disabled collection '{anc}'"
                elif leaf.automl_enabled is not True:
                    reason = "not marked automl_enabled"
        if reason is None:
            searched.append(name)
        else:
            skipped.append((name, reason))
    return searched, skipped


#: A schema of ours may record TAO's own ``automl_default_parameters`` for the same model under this
#: key: what TAO's AutoML searches, shown next to our selection and searched by ``--space tao``.
TAO_SELECTION_KEY = "tao_automl_default_parameters"


def tao_selection(schema: Schema) -> list[str]:
    names = schema.data.get(TAO_SELECTION_KEY) if isinstance(schema.data, dict) else None
    if not isinstance(names, list) or not names:
        raise SpecError(f"{schema.path}: records no TAO selection ({TAO_SELECTION_KEY}); --space tao needs it")
    unknown = [n for n in names if n not in schema.leaves]
    if unknown:
        raise SpecError(f"{schema.path}: {TAO_SELECTION_KEY} names '{unknown[0]}', which is not a parameter here")
    return [str(n) for n in names]
