"""What a search searches: TAO's AutoML settings in a user's spec (``automl_*``), the selection of
parameters (the schema's, TAO's own with ``--space tao``, or ``automl_hyperparameters``), and the
compiled space with the user's pinned values taken out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automl.errors import AutomlError, did_you_mean
from automl.spec import get_dotted
from automl.trials import algorithms
from automl.trials.algorithms import TAO_SETTINGS

def pop_tao_settings(spec: dict[str, Any], overrides: dict[str, Any], source: str = "the spec") -> dict[str, Any]:
    """TAO's AutoML settings may come in the spec (top level or under ``automl:``) or as overrides;
    each becomes the setting :data:`TAO_SETTINGS` names, and an unknown ``automl_*`` key is refused."""
    found: dict[str, Any] = {}
    section = spec.pop("automl", None)
    if isinstance(section, dict):
        for key, value in section.items():
            found[key if key.startswith("automl_") else f"automl_{key}"] = value
    for key in list(spec):
        if key.startswith("automl_"):
            found[key] = spec.pop(key)
    for key in list(overrides):
        bare = key.removeprefix("automl.")
        if bare.startswith("automl_") or key.startswith("automl."):
            found[bare if bare.startswith("automl_") else f"automl_{bare}"] = overrides.pop(key)
    # TAO's names, and ours with the automl_ prefix (``automl: {pruner: none}``)
    known = {**TAO_SETTINGS, **{f"automl_{name}": name for name in algorithms.setting_names()}}
    unknown = [key for key in found if key not in known]
    if unknown:
        raise AutomlError(f"{source}: {unknown[0]} is not a TAO AutoML setting this project honours"
                          f"{did_you_mean(unknown[0], list(known))}; allowed: {', '.join(TAO_SETTINGS)} "
                          f"and automl_<setting> for the settings of `automl algorithms`")
    return {known[key]: value for key, value in found.items()}


def tao_switches(plugin: Any, settings: dict[str, Any], keep_checkpoints: bool, spec_file: str | None,
                  space_source: str) -> tuple[list[str] | None, bool]:
    """Take TAO's ``enabled``, ``hyperparameters`` and ``delete_intermediate_ckpt`` out of the settings:
    (the names to search, or None for the schema's selection; whether to keep every trial's checkpoints).
    ``space_source``: ``project`` (the schema's selection) or ``tao`` (exactly what TAO's AutoML searches)."""
    source = str(spec_file or "the overrides")
    enabled = settings.pop("enabled", True)
    if not _as_bool(enabled, "automl_enabled"):
        raise AutomlError(f"{source}: automl_enabled: false: `automl run` searches; to train once with this spec run "
                          "`automl run --automl off` (or `automl train`), or set automl_enabled: true")
    delete = settings.pop("delete_intermediate_ckpt", None)
    keep = keep_checkpoints or (delete is not None and not _as_bool(delete, "automl_delete_intermediate_ckpt"))
    names = settings.pop("hyperparameters", None)
    if names is None:
        return _selection(plugin, space_source, None), keep
    if isinstance(names, str):
        names = [n.strip().strip("'\"") for n in names.strip().strip("[]").split(",")]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n for n in names) or not names:
        raise AutomlError(f"{source}: automl_hyperparameters: {names!r} must be a non-empty list of dotted parameter names, "
                          "e.g. [train.optim.lr, train.batch_size]")
    return _selection(plugin, space_source, list(dict.fromkeys(names))), keep


SPACE_SOURCES = ("project", "tao")


def _selection(plugin: Any, space_source: str, searched: list[str] | None) -> list[str] | None:
    """The names to search exactly, or None for the schema's own selection."""
    from automl.space import load_schema
    from automl.space.selection import tao_selection

    if space_source not in SPACE_SOURCES:
        raise AutomlError(f"--space '{space_source}': allowed: {', '.join(SPACE_SOURCES)}")
    if space_source == "project":
        return searched
    if searched is not None:
        raise AutomlError("--space tao and automl_hyperparameters both choose the searched names; give one of them")
    return tao_selection(load_schema(plugin.schema_path()))


def _as_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise AutomlError(f"{key}: {value!r} is not a boolean; allowed: true, false")


def compile_model_space(plugin: Any, base_spec: Mapping[str, Any], pinned: Mapping[str, Any],
                        searched: list[str] | None = None):
    """The model's search space with the base spec as the fixed values (the baseline) and the names the
    user pinned with ``key=value`` taken out of the search. ``searched`` (TAO's ``automl_hyperparameters``):
    exactly these names, instead of the schema's selection."""
    from automl.space import compile_space, load_schema
    from automl.space.params import CategoricalParam

    schema = load_schema(plugin.schema_path())
    if searched is not None:
        return _exact_space(schema, base_spec, [n for n in searched if n not in pinned])
    space = compile_space(schema, fixed=dict(base_spec))
    # A choice the spec makes outside what the space searches (e.g. model.backbone: resnet_50 where the
    # schema's weights search only the compact CPU backbones) is the user's decision: keep it fixed
    # instead of letting the baseline's repair and the sampler swap in another kind of model.
    chosen = {p.name: (p, get_dotted(base_spec, p.name)) for p in space.params if isinstance(p, CategoricalParam)}
    kept = {name: value for name, (p, value) in chosen.items() if value is not None and p.check(value, {})}
    if any(name in space.names for name in pinned) or kept:
        include = [n for n in space.names if n not in pinned and n not in kept]
        space = compile_space(schema, include=include, fixed=dict(base_spec))
        space.warnings.extend(f"{name}: the spec's '{value}' is not among the searched choices; kept fixed"
                              for name, value in kept.items())
    _check_fixed_relations(schema, space, base_spec)
    return space


def _exact_space(schema: Any, base_spec: Mapping[str, Any], names: list[str]):
    from automl.space import compile_space

    unknown = [n for n in names if n not in schema.leaves]
    if unknown:
        raise AutomlError(f"automl_hyperparameters: '{unknown[0]}' is not a parameter of {schema.path}"
                          f"{did_you_mean(unknown[0], list(schema.leaves))}")
    space = compile_space(schema, include=names, fixed=dict(base_spec))
    left_out = [n for n in names if n not in space.names]
    if left_out:
        why = "; ".join(f"{n}: {dict(space.skipped).get(n, 'not searchable')}" for n in left_out)
        raise AutomlError(f"automl_hyperparameters: cannot search {', '.join(left_out)} ({why})")
    _check_fixed_relations(schema, space, base_spec)
    return space


def _check_fixed_relations(schema: Any, space: Any, base_spec: Mapping[str, Any]) -> None:
    """A relation between two values the search does not vary (e.g. ``train.batch_size`` a multiple of
    and greater than ``dataset.num_instance``: at least 2 classes per batch, else the triplet loss is
    exactly 0) would fail in every trial: refuse the search before it starts."""
    searched = set(space.names)
    for leaf in schema.leaves.values():
        if leaf.condition is None or leaf.name in searched or len(leaf.depends_on) != 1:
            continue
        parent = leaf.depends_on[0]
        if parent in searched:
            continue
        value, other = (get_dotted(base_spec, n, schema.default_value(n)) for n in (leaf.name, parent))
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (value, other)):
            continue
        for clause in leaf.condition.relations():
            if not clause.holds(value, other):
                rule = "a multiple of" if clause.op == "/" else clause.op
                raise AutomlError(f"{schema.path}: {leaf.name}={value} must be {rule} {parent}={other} "
                                  f"(math_cond '{leaf.condition.text}'); change one of them")
