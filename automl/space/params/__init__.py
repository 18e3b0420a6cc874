"""The typed, backend-neutral parameters of a search space: one small class per concept.

Each :class:`Param` knows

* ``draw(src, ctx)`` -- its value from named draws of a :class:`~automl.space.sources.Source`, given
  ``ctx`` (the values of its parents: already drawn, or fixed by the user's spec);
* ``check(value, ctx)`` -- every violated constraint as a readable line;
* ``repair(value, ctx)`` -- the nearest valid value (for the baseline trial);
* ``draw_keys()`` -- every draw it may ask for (Ray needs them declared up front);
* ``ray_domain()`` -- a native ``ray.tune`` domain when the parameter depends on nothing;
* ``describe()`` and ``to_json()`` / ``from_json()``.

Modules: ``base`` (the contract, value tests), ``numeric`` (floats, ints, relations to parents),
``choices`` (categorical), ``lists`` (structured lists). Importing any of them imports this package
first, so every kind is registered for ``Param.from_json``.
"""

from __future__ import annotations

from automl.space.params.base import Param, fmt, is_int, is_number
from automl.space.params.choices import CategoricalParam, expand_weights
from automl.space.params.lists import (
    BoundedListParam, ConsecutiveListParam, KernelParam, MilestonesParam, SubsetParam,
)
from automl.space.params.numeric import FloatParam, IntParam, NumberParam, Relation
from automl.space.sources import Draw

__all__ = ["BoundedListParam", "CategoricalParam", "ConsecutiveListParam", "Draw", "FloatParam", "IntParam",
           "KernelParam", "MilestonesParam", "NumberParam", "Param", "Relation", "SubsetParam",
           "expand_weights", "fmt", "is_int", "is_number"]
