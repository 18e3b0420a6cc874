"""Action results: ``<results_dir>/<action>.json`` and, with ``--json``, one JSON line on stdout.

The JSON line is printed last so scripts can take ``tail -n1``; everything else a run prints goes
before it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from automl.fsutil import write_text


def plain(value: Any) -> Any:
    """JSON-safe: paths to strings, tensors/numpy scalars to numbers, NaN/inf to null."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays/scalars, torch tensors
        return plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_result(action: str, result: Mapping[str, Any], results_dir: str | Path, *, as_json: bool = False) -> Path:
    """Write ``<results_dir>/<action>.json``; print the same object as the last stdout line if asked."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    data = plain(dict(result))
    path = results_dir / f"{action}.json"
    write_text(path, json.dumps(data, indent=2) + "\n")  # a reader never sees half a file
    if as_json:
        print(json.dumps(data), flush=True)
    return path
