"""TEST-ONLY crash injection: ``AUTOML_TEST_KILL_AT=<point>[#N]`` makes the search SIGKILL itself the
N-th time (default 1st) a process reaches the named point, so the crash-safety tests can hit exact
moments of a search's life. Unset (always, outside tests) it costs one dict lookup.

A point reached in a trial worker kills the controller (the worker's parent) first, then the worker:
what ``kill -9`` of the search looks like. Points: see ``tests/test_crash_safety.py``.
"""

from __future__ import annotations

import os
import signal

ENV = "AUTOML_TEST_KILL_AT"
_hits: dict[str, int] = {}


def kill_point(name: str, *, in_worker: bool = False) -> None:
    target = os.environ.get(ENV)
    if not target:
        return
    point, _, nth = target.partition("#")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(nth or 1):
        if in_worker:
            os.kill(os.getppid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
