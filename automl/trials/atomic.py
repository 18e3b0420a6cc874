"""Atomic file writes: a killed writer leaves the old file or none, never half a file. Every JSON,
YAML and CSV file of a run folder is written through :func:`write_text` (checkpoints go through
Lightning's checkpoint IO, which is atomic the same way: :func:`automl.training.checkpoints.save_checkpoint`)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temporary name beside ``path``, then ``os.replace`` it into place."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        tmp.write_text(text)
    except FileNotFoundError:  # the folder is made only when missing: one syscall less per write
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
    os.replace(tmp, path)
    return path


def _temporary(path: Path) -> Path:
    # one temporary name per writer: two processes may write the same file (the Ray driver and a
    # trial both write result.json when Tune stops a trial), and a shared name makes one rename fail
    return path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")


def write_with(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` writes the file under a temporary name; it then replaces ``path`` in one rename.
    For files another library serializes (``torch.save`` of the toy trainer's checkpoints: importing
    Lightning's atomic checkpoint IO would cost a light trial process seconds)."""
    path = Path(path)
    tmp = _temporary(path)
    write(tmp)
    os.replace(tmp, path)
    return path
