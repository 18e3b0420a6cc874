"""A long-lived trainer process for peers that run our trainer outside ``automl run`` (project venv).

``automl train -e SPEC --results-dir DIR`` in a fresh process per job spends ~8 s importing torch,
Lightning and timm on this 2-core host before it trains; ``automl run`` keeps one worker process per
slot for exactly that reason (automl/trials/worker.py). So that a peer's wall time is not inflated by
imports our own searches do not pay, this worker runs the very same code path as ``automl train``
(:func:`automl.cli.actions.run_action`: spec validation, ``spec.yaml``, ``metrics.jsonl``,
checkpoints, ``train.json``) for one job after another in one process.

Protocol: one JSON object per line. stdin ``{"op": "train", "model", "spec", "results_dir"}`` ->
stdout ``{"ok": true, "result": {...}}`` or ``{"ok": false, "error": "..."}``; ``{"op": "exit"}``.
A job's own output goes to ``<results_dir>/train.log``; stdout carries only the replies.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from pathlib import Path


def main() -> int:
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    from automl.cli.actions import run_action

    replies.write(json.dumps({"op": "ready", "pid": os.getpid()}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        if job.get("op") == "exit":
            break
        results_dir = Path(job["results_dir"])
        results_dir.mkdir(parents=True, exist_ok=True)
        with open(results_dir / "train.log", "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            try:
                result = run_action("train", job["model"], Path(job["spec"]), [], results_dir, False)
                reply = {"ok": True, "result": result}
            except BaseException as exc:  # noqa: BLE001 - a failing trainer is the job's result
                traceback.print_exc()
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}".strip()}
                if isinstance(exc, KeyboardInterrupt):
                    raise
        replies.write(json.dumps(reply, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
