"""Ray Tune: a :class:`SearchSpace` as a ``param_space`` and back.

* A parameter that depends on nothing searched gets Ray's native domain (``tune.uniform``,
  ``tune.loguniform``, ``tune.randint``, ``tune.qrandint``, ``tune.choice``); a weighted choice is a
  ``tune.choice`` over a list with each option repeated in proportion to its weight, when the weights
  are exact in <= 200 entries (TAO's are).
* Everything else (dependent ranges, structured lists, other weights) is a ``tune.sample_from`` that
  decodes ``tune.uniform(0, 1)`` helper keys (``<draw key>__u`` or ``<name>__u{i}``) through the same
  inverse CDFs as the numpy and Optuna paths, reading its parents from the resolved config. Ray
  resolves the helpers first (a sample_from that reads an unresolved key is retried), so the
  random state that ``generate_variants``/``BasicVariantGenerator`` is seeded with drives every draw.
* :func:`from_ray` keeps only the searched names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from automl.space.sources import UnitSource

if TYPE_CHECKING:
    from automl.space.params import Param


class RaySpace(Protocol):
    """What this module reads of a :class:`automl.space.space.SearchSpace` (which imports this module,
    so this one names only the attributes it uses)."""

    params: list[Param]
    context: dict[str, Any]

    @property
    def names(self) -> list[str]: ...

    def to_ray(self) -> dict[str, Any]: ...

    def from_ray(self, config: Mapping[str, Any]) -> dict[str, Any]: ...


def _config_of(spec: Any, names: set[str]) -> Any:
    """Ray hands a sample_from either the config itself or the experiment spec holding ``config``."""
    if isinstance(spec, Mapping) and not any(n in spec for n in names):
        inner = spec.get("config") if "config" in spec else None
        if isinstance(inner, Mapping):
            return inner
    return spec


def _decoder(space: RaySpace, param: Param):
    names = set(space.names)
    context = dict(space.context)
    parents = [p for p in param.parents if p in names]

    def decode(spec):
        config = _config_of(spec, names)
        ctx = dict(context)
        for parent in parents:
            ctx[parent] = config[parent]  # raises Ray's RecursiveDependencyError until resolved
        return param.draw(UnitSource(config), ctx)

    return decode


def to_ray(space: RaySpace) -> dict[str, Any]:
    from ray import tune

    param_space: dict[str, Any] = {}
    for p in space.params:
        native = _native(space, p)
        if native is not None:
            param_space[p.name] = native
            continue
        for key, kind in p.draw_keys():
            param_space[UnitSource.helper(key, kind)] = tune.uniform(0.0, 1.0)
        param_space[p.name] = tune.sample_from(_decoder(space, p))
    return param_space


def _native(space: RaySpace, p: Param) -> Any:
    names = set(space.names)
    return None if any(parent in names for parent in p.parents) else p.ray_domain()


def to_ray_config(space: RaySpace, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` as a resolved Ray config: every searched name, plus the helper units that the
    ``sample_from`` entries of :func:`to_ray` would decode into the same values."""
    from automl.space.sources import unit_of

    out = {name: config[name] for name in space.names if name in config}
    ctx = {**space.context, **dict(config)}
    for p in space.params:
        if _native(space, p) is not None or p.name not in config or p.check(config[p.name], ctx):
            continue
        for draw in p.encode(config[p.name], ctx):
            kind = "unit" if draw.method == "unit" else "value"
            out[UnitSource.helper(draw.key, kind)] = unit_of(draw)
    return out


def from_ray(space: RaySpace, config: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _plain(config[name]) for name in space.names if name in config}


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def sample_ray(space: RaySpace, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` configs resolved by Ray Tune's own variant generator (no cluster is started)."""
    import numpy as np
    from ray.tune.search.variant_generator import generate_variants

    param_space = space.to_ray()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        for _, resolved in generate_variants({"config": param_space}, random_state=rng):
            out.append(space.from_ray(resolved["config"]))
    return out
