"""The logical runs a tracker writes to, their MLflow statuses, and MLflow's rules for names and values."""

from __future__ import annotations

import json
import re
import time
from typing import Any

SEARCH = "search"
TRAIN = "train"
CHAMPION = "champion"
TRACKING_DIR = "tracking"  # rendered plots and models waiting to be uploaded, inside the run folder

STATUS = {"complete": "FINISHED", "pruned": "KILLED", "paused": "KILLED", "failed": "FAILED"}
SEARCH_STATUS = {"finished": "FINISHED", "complete": "FINISHED", "completed": "FINISHED", "done": "FINISHED",
                 "failed": "FAILED", "error": "FAILED"}


def run_key(number: int) -> str:
    return f"trial/{number:04d}"


def key_name(name: str) -> str:
    """MLflow accepts letters, digits, ``_ - . / :`` and spaces in metric and param names."""
    return re.sub(r"[^\w\-./: ]", "_", str(name))[:250]


def param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]


def tag_value(value: Any) -> str:
    return str(value)[:5000]


def ms(seconds: float | None = None) -> int:
    return int(1000 * (time.time() if seconds is None else seconds))


def flatten(spec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested spec as dotted names (what MLflow params are)."""
    out: dict[str, Any] = {}
    for k, v in spec.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + "."))
        else:
            out[name] = v
    return out
