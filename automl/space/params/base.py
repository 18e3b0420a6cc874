"""The contract every searched parameter keeps, and the value tests the parameter kinds share."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from automl.space.sources import Draw, Source

REGISTRY: dict[str, type[Param]] = {}


def is_int(x: Any) -> bool:
    import numpy as np

    return (isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)))


def is_number(x: Any) -> bool:
    import numpy as np

    return (isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))
            and math.isfinite(float(x)))


def fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


@dataclass
class Param:
    """Base class: a searched parameter with a dotted ``name``."""

    name: str
    default: Any = None
    notes: list[str] = field(default_factory=list)   # shown in the condition column

    kind: ClassVar[str] = "param"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:  # a concrete kind, not a shared base such as NumberParam
            REGISTRY[cls.kind] = cls

    # -- contract -------------------------------------------------------------------------------
    @property
    def parents(self) -> tuple[str, ...]:
        return ()

    def draw(self, src: Source, ctx: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def check(self, value: Any, ctx: Mapping[str, Any]) -> list[str]:
        raise NotImplementedError

    def repair(self, value: Any, ctx: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def draw_keys(self) -> list[tuple[str, str]]:
        """``(key, kind)`` for each draw: kind ``unit`` (from ``unit()``) or ``value`` (the others)."""
        return [(self.name, "value")]

    def encode(self, value: Any, ctx: Mapping[str, Any]) -> list[Draw]:
        """The draws that make ``draw`` return ``value`` (for enqueuing a known config in Optuna or
        giving it to Ray as a point to evaluate). ``value`` must pass ``check``."""
        raise NotImplementedError

    def ray_domain(self) -> Any:
        return None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.kind, "range": "", "scale": "", "weights": "",
                "condition": "; ".join(self.notes)}

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> Param:
        d = dict(d)
        cls = REGISTRY[d.pop("kind")]
        return cls(**d)

    def _bad(self, message: str) -> list[str]:
        return [f"{self.name}: {message}"]


