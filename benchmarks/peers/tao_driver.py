"""JSON-lines driver around TAO's AutoML library; runs *inside* the TAO venv (not the project's).

Started by :mod:`peers.tao_automl` as ``<tao venv>/bin/python tao_driver.py``. It imports only the
``nvidia-tao-automl`` package (``tao_automl``) and the standard library, never this project. One JSON
object per line on stdin, one reply per line on stdout; everything the library prints or logs goes to
stderr (the library prints a pandas table to stdout while it builds its search space, so fd 1 is
pointed at stderr and the replies go to a private copy of the original stdout).

Requests (``op``) and replies:

* ``init``: ``workspace``, ``network``, ``train_specs`` (nested spec dict), ``schema`` (a TAO-dialect
  train schema, passed as ``search_schema``), ``hyperparameters`` (dotted names to search),
  ``settings`` (``algorithm``, ``metric``, ``direction``, ``automl_max_recommendations``,
  ``automl_max_epochs``, ``automl_reduction_factor``, ``session_id``, ...) ->
  ``{"version", "algorithm", "parameters": [names TAO searches], "records": [TAO's view of each]}``.
* ``ask`` -> ``{"recs": [{"id", "job_id", "specs", "resume_from_job_id", "resume_from_epoch"}],
  "complete": bool}`` (no recs once ``is_complete()``). Each rec is marked running and given a job id
  ``NNNN-K`` (rec id, K-th job of that rec), the way TAO's own runner assigns job ids before launching.
* ``tell``: ``id``, ``value``, ``best_epoch``, ``status`` (``success``/``failure``) -> ``{"ok": true}``.
* ``best`` -> ``{"id", "job_id", "value", "specs"}`` (``AutoML.get_best()``; ``{}`` when none).
* ``progress`` -> ``AutoML.get_progress()``.
* ``close`` -> ``{"ok": true}`` and exit.

Errors come back as ``{"error": "Type: message", "traceback": "..."}``.
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def main() -> int:
    # this folder also holds the adapter module `tao_automl.py`: it must not shadow the package
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    reply_stream = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the library's prints go to stderr
    sys.stdout = sys.stderr

    import logging

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    state: dict = {"automl": None, "jobs": {}, "recs": {}}

    def reply(obj: dict) -> None:
        reply_stream.write(json.dumps(obj, default=_plain) + "\n")
        reply_stream.flush()

    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            request = json.loads(line)
            op = request.get("op")
            if op == "close":
                reply({"ok": True})
                break
            reply(handle(op, request, state))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a reply the adapter reports
            reply({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
    return 0


def handle(op: str, request: dict, state: dict) -> dict:
    if op == "init":
        import tao_automl
        from tao_automl import AutoML

        automl = AutoML(
            workspace=request["workspace"],
            network=request["network"],
            train_specs=request["train_specs"],
            settings=request["settings"],
            automl_hyperparameters=request.get("hyperparameters"),
            search_schema=request.get("schema"),
            action="train",
        )
        state["automl"] = automl
        # the same public helper AutoML() calls: what TAO makes of each parameter (type, range, options)
        from tao_automl.search_space.params import generate_hyperparams_to_search

        records, names = generate_hyperparams_to_search(
            network=request["network"], action="train", train_specs=request["train_specs"],
            automl_hyperparameters=request.get("hyperparameters") or [], schema=request.get("schema"))
        return {"version": tao_automl.__version__, "algorithm": request["settings"]["algorithm"],
                "parameters": list(names), "records": records}

    automl = state["automl"]
    if automl is None:
        raise RuntimeError(f"'{op}' before 'init'")
    if op == "ask":
        # the library's loop is `while not automl.is_complete(): automl.next_recommendation()`; Bayesian
        # keeps proposing past its max_recommendations, so completion is checked first
        if automl.is_complete():
            return {"recs": [], "complete": True}
        out = []
        for rec in automl.next_recommendation():
            count = state["jobs"].get(rec.id, 0)
            state["jobs"][rec.id] = count + 1
            job_id = f"{rec.id:04d}-{count}"
            rec.assign_job_id(job_id)
            rec.update_status("running")
            state["recs"][rec.id] = rec
            out.append({"id": rec.id, "job_id": job_id, "specs": dict(rec.specs),
                        "resume_from_job_id": rec.resume_from_job_id, "resume_from_epoch": rec.resume_from_epoch})
        return {"recs": out, "complete": bool(automl.is_complete())}
    if op == "tell":
        status = request.get("status") or "success"
        value = request.get("value")
        if value is None:
            value = 0.0  # TAO's runner reports 0.0 for a failed job; the brains drop failed points
        automl.report_result(int(request["id"]), float(value), best_epoch=request.get("best_epoch"), status=status)
        return {"ok": True, "complete": bool(automl.is_complete())}
    if op == "best":
        best = automl.get_best()
        if best is None:
            return {}
        return {"id": best.id, "job_id": best.job_id, "value": best.primary_metric_value(), "specs": dict(best.specs)}
    if op == "progress":
        return automl.get_progress()
    raise ValueError(f"unknown op '{op}'")


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
