"""Train schema (TAO's JSON dialect) -> typed search space -> Optuna and Ray Tune.

    from automl.space import load_schema, compile_space
    space = compile_space(load_schema("search_spaces/ml_recog.train.schema.json"))
    config = space.suggest(trial)          # or space.sample(rng), space.to_ray() + space.from_ray()
    assert space.check(config) == []
    study.enqueue_trial(space.optuna_params(space.defaults()))   # trial 0 = the baseline
    SearchSpace.from_json(space.to_json())                       # what workers rebuild from space.json

Modules: ``schema`` (loading, dialect validation), ``conditions`` (math_cond), ``params`` (one class
per parameter concept), ``sources`` (where draws come from: numpy, Ray units), ``selection`` (which
leaves are searched), ``compiler`` (leaf -> parameter), ``feasibility`` (cross-parameter constraints),
``space`` (SearchSpace), ``optuna_adapter``, ``ray_adapter``, ``validate`` (validate_spec). The
imports between them run one way (no circles; ``tests/test_code_shape.py`` checks it).

The dialect, and what this compiler does with each rule
========================================================

Which leaves are searched
    * Default: every name in an ``automl_default_parameters`` list (the root's and nested ones; a
      collection name there means all its leaves).  Without any such list: the leaves marked
      ``automl_enabled: true`` that are not under a disabled collection.
    * Then removed, with the reason kept in ``space.skipped``: leaves that cannot be searched (a
      string without enum, a path/file string, a free-form ``list`` without enum or bounds, an open
      mapping), leaves with ``automl_enabled: false``, leaves named in any
      ``automl_disabled_parameters``. A *collection* named as disabled does not remove a leaf that is
      named explicitly as a default: TAO's own files list ``train`` as disabled next to
      ``train.optim.lr`` as a default, and TAO searches the latter.
    * ``include=[...]`` replaces that choice (a collection name includes its searchable leaves);
      ``overrides`` also add the overridden names. Unknown names raise ``SpecError`` with a
      did-you-mean.

Numbers (``int``/``float``, ``anyOf`` numeric)
    * ``minimum``/``maximum`` bound the value; ``math_cond`` constant comparisons (``> 0.0``,
      ``>=1``, ``!= 0``, ``> 0.0 <= 1.0``) are enforced exactly (TAO ignores them). An open float
      bound (``> 0.0``) is sampled from ``[bound + 1e-6 * width, ...]`` so no backend can return the
      bound itself; ints move to the next integer.
    * ``^ k``: a power of ``k`` inside the range (``k**0 = 1`` included when in range; TAO never
      gives 1). ``/ k``: a multiple of ``k`` inside the range (never above the maximum; TAO rounds
      past it).
    * ``> depends_on`` (``>=``, ``<``, ``<=``, ``!=``): compared with the parent's value.
      ``/ depends_on`` (our extension): a multiple of the parent's value, e.g. a batch size divisible
      by the instances per class. A numeric ``depends_on`` with no relational clause means
      ``value <= parent`` (e.g. num_select <= num_queries). Parents are drawn first (topological
      order). A parent that is not searched takes its value from ``fixed`` (the user's spec), else
      the schema default, and the relation becomes a plain bound. A searched parent is narrowed so
      that every dependent stays feasible, including dependents the user fixed (e.g. fixed
      ``num_select=300`` makes a searched ``num_queries >= 300``; a fixed batch size makes a
      searched divisor one of its divisors; fixed milestones keep a searched epoch count above
      them; a fixed kernel ``[k, k]`` keeps searched image sizes >= 10 k).
    * Log scale (TAO samples learning rates uniformly on [0, 1]): a float with default ``d > 0``
      whose range ``[lo, hi]`` spans at least 100x (``hi / lo >= 100``, infinite when ``lo <= 0``)
      is searched log-uniformly on ``[max(lo, d / 100), min(hi, d * 100)]`` -- unless it looks like
      a probability/momentum/factor: ``lo <= 0`` and ``d >= 0.05 * hi`` (momentum 0.9 on [0, 1],
      gamma 0.1 on [0, 1], saturation 0.3 on [0, 2] stay linear). ``"scale": "log"|"linear"`` in
      the schema (our extension) or in ``overrides`` wins; an override's min/max replace the window.
      Example: base_lr 3.5e-4 on [0, 1] with ``> 0.0`` -> log-uniform on [3.5e-6, 3.5e-2].
      The same rule applies to a plain int (no ``^``/``/``, no depends_on) with a finite maximum
      (warmup_iters 10 on [1, 10000] -> log-uniform ints on [1, 1000]).
    * ``"automl_search_range": [lo, hi]`` (our extension) narrows the searched window to a part of the
      valid ``[minimum, maximum]`` without narrowing what a spec may hold (ml_recog searches batch
      sizes 8-64 on CPU demos but accepts TAO's 4 and any GPU-sized batch); it acts like an
      override's min/max, so the log-scale window does not apply on top of it.
    * ``maximum: Infinity`` on an int: ``[min, max(4 * default, 2 * min, 16)]``; on a linear float:
      ``[min, max(4 * default, 2 * min, 1)]``; the window is shown in the condition column.

Choices
    * ``categorical`` (or a string with ``enum``): a choice of the enum; ``ordered_int``: a choice of
      its int enum; ``bool``: True/False.
    * ``option_weights``: must match the enum's length, be non-negative with a positive sum
      (else ``SchemaError``). Optuna has no weights: the choice is one ``suggest_float(name + "__u",
      0, 1)`` mapped through the cumulative weights (exact probabilities under random sampling and a
      signal TPE can model; a categorical with repeated entries would not work because Optuna stores
      the first index of a value). Ray: ``tune.choice`` over the options repeated in proportion to
      their weights (exact for TAO's weights), else a seeded ``sample_from``.

Structured lists (each sampled to a value a trainer can use)
    * ``list_2`` named like a schedule (``lr_steps``, ``steps``, ``milestones``, ``decay_step*``,
      ``*_steps``): 1..4 sorted distinct int milestones inside ``(0, budget)``, the budget being the
      value (searched, fixed, else default) of the nearest ``num_epochs``/``epochs``/``epoch`` key
      (searched siblings and ancestors' keys first, then anywhere in the schema).
    * other ``list_2`` with a numeric default (sizes: ``scales``, ``gaussian_radius_list``): a sorted
      non-empty subset of the multiples of the default's gcd within the default's range, at most as
      many as the default has (float defaults: a subset of the default's values).
    * ``list``/``list_2`` with list ``minimum``/``maximum`` (``optm_betas``): element-wise in bounds.
    * ``list_3`` (kernel depending on image sizes): ``[k, k]``, ``k`` odd in
      ``[3, min(sizes) // 10]`` (at least 3).
    * ``list_1_backbone``: the first ``n`` stages ``[0..n-1]``, ``n`` in ``[0, maximum or 4]``, with
      ``n = 0`` giving the default's "nothing" value (``[-1]``); ``list_1_normal``: consecutive ints
      from the minimum.
    * ``subset_list``/a ``list`` with ``enum``: a non-empty subset of the enum (in enum order);
      ``optional_list``: possibly empty.

Malformed schemas (one ``SchemaError`` line naming file and parameter): unknown type, min > max,
weights that do not match the enum, a depends_on that names no parameter, a dependency cycle, an
unknown ``math_cond``. A default outside its own enum is only a warning (real TAO files do it); the
baseline config repairs it.
"""

from __future__ import annotations

from typing import Any

from automl.space.schema import Leaf, Schema, load_schema
from automl.space.space import SearchSpace
from automl.space.validate import check_spec, validate_spec


def compile_space(schema: Schema, include: list[str] | None = None,
                  overrides: dict[str, dict[str, Any]] | None = None,
                  fixed: dict[str, Any] | None = None) -> SearchSpace:
    """Compile a schema into a :class:`SearchSpace` (see the module docstring for the rules)."""
    from automl.space.compiler import compile_params

    if isinstance(include, str):
        include = [s.strip() for s in include.split(",") if s.strip()]
    params, context, baseline, skipped, warnings = compile_params(schema, include, overrides, fixed)
    return SearchSpace(params, context=context, baseline=baseline, skipped=skipped, warnings=warnings,
                       schema_path=str(schema.path))


__all__ = ["Leaf", "Schema", "SearchSpace", "compile_space", "load_schema", "check_spec", "validate_spec"]
