"""What a trainer does with each key of a TAO spec: uses it, names it in one warning when it has no
effect here, or refuses a value it cannot honour, with the reason.

A TAO user's spec should run after changing only dataset paths, so keys TAO has and this project
does not act on are accepted; silently ignoring them would let a user believe e.g. ``jpm: true``
changed the model, so each trainer declares them once (:class:`SpecKeys`) and every action checks
its spec through :meth:`SpecKeys.check`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from automl.errors import AutomlError
from automl.spec import get_dotted

_MISSING = object()

#: Keys of every TAO spec that no trainer here acts on (TAO's cloud/deployment plumbing).
TAO_PLUMBING = ("encryption_key", "model_name", "wandb", "evaluate.trt_engine", "inference.trt_engine",
                "evaluate.num_nodes", "inference.num_nodes", "export.gpu_id", "export.on_cpu", "export.verbose",
                "gen_trt_engine.tensorrt.layers_precision")


@dataclass(frozen=True)
class Refusal:
    """``key`` may only hold one of ``allowed`` here (TAO's default among them); ``reason`` says why."""

    key: str
    allowed: tuple[Any, ...]
    reason: str


@dataclass(frozen=True)
class SpecKeys:
    """One trainer's treatment of TAO's spec keys (dotted; a section name covers all its keys)."""

    model: str
    ignored: tuple[str, ...]
    refused: tuple[Refusal, ...] = ()
    #: the keys naming initial weights for training; all empty -> "starts from random weights"
    pretrained: tuple[str, ...] = ()

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"automl.trainers.{self.model}")

    def refuse(self, spec: Mapping[str, Any]) -> None:
        """One error line for the first key set to a value that would change the model in TAO but cannot here."""
        for rule in self.refused:
            value = get_dotted(spec, rule.key, _MISSING)
            if value is not _MISSING and value is not None and value not in rule.allowed:
                allowed = ", ".join(repr(v) for v in rule.allowed)
                raise AutomlError(f"{rule.key}={value!r} is not supported by the {self.model} trainer ({rule.reason}); "
                                  f"allowed: {allowed}")

    def ignored_in(self, spec: Mapping[str, Any]) -> list[str]:
        return [key for key in self.ignored if get_dotted(spec, key, _MISSING) is not _MISSING]

    def check(self, spec: Mapping[str, Any], action: str) -> list[str]:
        """Refuse what cannot be honoured, then name the keys with no effect in one warning (and, for
        train, say when training starts from random weights). Returns the ignored keys."""
        self.refuse(spec)
        ignored = self.ignored_in(spec)
        if ignored:
            self.log.warning("%s: these spec keys have no effect here and are ignored: %s", self.model, ", ".join(ignored))
        if action == "train" and self.pretrained and not self._resuming(spec):
            if not any(str(get_dotted(spec, key, "") or "").strip() for key in self.pretrained):
                self.log.warning("%s: %s is empty: training starts from random weights (this project never downloads "
                                 "pretrained weights; point it at a local file to start from one)",
                                 self.model, " / ".join(self.pretrained))
        return ignored

    @staticmethod
    def _resuming(spec: Mapping[str, Any]) -> bool:
        return bool(str(get_dotted(spec, "train.resume_training_checkpoint_path", "") or "").strip())
