"""Loading checkpoints weights-only (``torch.load(weights_only=True)``), with one-line errors.

Kept apart from :mod:`automl.training.checkpoints` (which imports Lightning) so that a trainer without
Lightning, and the CLI's checks before a run, load only torch.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from automl.errors import AutomlError


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", key: str = "checkpoint") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with one-line errors for a missing or foreign file."""
    path = Path(str(path))
    if not str(path) or not path.is_file():
        raise AutomlError(f"{key}: checkpoint file not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses anyway
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message is a paragraph; the line naming the refused object is the one that says why
        text = str(exc)
        what = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()[0] if "WeightsUnpickler error:" in text else ""
        raise AutomlError(f"{key}: {path} is not a weights-only checkpoint: it holds Python objects other than tensors "
                          f"and plain containers{f' ({what[:160]})' if what else ''}, which could run code when loaded; refused") from None
    except Exception as exc:  # RuntimeError/EOFError for a truncated or foreign file
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise AutomlError(f"{key}: {path} is not a weights-only checkpoint ({type(exc).__name__}: {first})") from None
    if not isinstance(data, Mapping):
        raise AutomlError(f"{key}: {path} holds a {type(data).__name__}, not a checkpoint dictionary")
    return dict(data)


def check_resume_checkpoint(spec: Mapping[str, Any]) -> None:
    """``train.resume_training_checkpoint_path``, when set, names a weights-only checkpoint: checked
    before a run writes anything (a full load: torch offers no cheaper check that the pickle inside
    holds only tensors and plain containers)."""
    train = spec.get("train")
    path = str((train.get("resume_training_checkpoint_path") if isinstance(train, Mapping) else None) or "").strip()
    if path:
        load_checkpoint(path, key="train.resume_training_checkpoint_path")
