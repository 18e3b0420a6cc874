"""Helpers for the search tests: run a search on the toy trainer in this process (workers are still
separate processes) and read its trial results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from automl.search.controller import resolve_setup, run_search
from automl.tracking import NullTracker

REPO = Path(__file__).resolve().parents[1]


def toy_search(tmp_path: Path, *, name: str = "s", budget: int = 4, workers: int = 1, overrides=(), tracker=None,
               edit=None, promote: bool = True, reeval_top: int = 0, **options: Any) -> dict[str, Any]:
    """Resolve and run a toy search; ``edit(setup)`` may change the resolved setup first."""
    setup = resolve_setup(model="toy", budget=budget, workers=workers, name=name, output=tmp_path / "runs",
                          overrides=list(overrides), command="test", **options)
    if edit is not None:
        edit(setup)
    return run_search(setup, tracker=tracker or NullTracker(), promote_best=promote, reeval_top=reeval_top)


def results(run_dir: str | Path) -> dict[int, dict[str, Any]]:
    out = {}
    for path in sorted(Path(run_dir, "trials").glob("*/result.json")):
        data = json.loads(path.read_text())
        out[int(path.parent.name)] = data
    return out


def automl_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "automl", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
