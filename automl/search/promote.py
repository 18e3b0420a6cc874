"""After the trials: choose the winner, optionally re-evaluate the top k, promote its best checkpoint
into ``best/`` (evaluate, ONNX export with parity, TensorRT where possible) and free the disk of the
losing trials' checkpoints. Both backends call :func:`finish_search`.
"""

from __future__ import annotations

import copy
import importlib.util
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from automl.backends.base import COMPLETE, FAILED, PAUSED, PRUNED, SearchSetup, TrialRecord
from automl.errors import AutomlError
from automl.search import rundir
from automl.search.slots import gpu_inventory, slot_env
from automl.search.worker import JOB_FILE, RESULT, SPEC, make_job
from automl.spec import apply_config, get_dotted, load_yaml, set_dotted


def _sign(setup: SearchSetup) -> float:
    return -1.0 if setup.monitor.mode == "max" else 1.0


def pareto_front(records: list[TrialRecord], setup: SearchSetup) -> list[TrialRecord]:
    """Non-dominated complete trials for a multi-objective search."""
    pts = [r for r in records if r.state == COMPLETE and r.values and all(v is not None for v in r.values)]
    signs = [(-1.0 if m.mode == "max" else 1.0) for m in setup.objectives]

    def dominates(a: TrialRecord, b: TrialRecord) -> bool:
        av = [s * v for s, v in zip(signs, a.values)]
        bv = [s * v for s, v in zip(signs, b.values)]
        return all(x <= y for x, y in zip(av, bv)) and any(x < y for x, y in zip(av, bv))

    return [p for p in pts if not any(dominates(q, p) for q in pts if q is not p)]


def candidates(records: list[TrialRecord], setup: SearchSetup) -> list[TrialRecord]:
    """Trials eligible to win, best first: complete ones trained to the full budget, ranked by the
    value of their best epoch (for multi-objective searches, the Pareto front by the first objective)."""
    pool = pareto_front(records, setup) if setup.multi_objective else [
        r for r in records if r.state == COMPLETE and r.value is not None]
    full = [r for r in pool if r.epochs_done >= setup.max_epochs]
    if setup.algorithm == "pbt" and full:  # pbt segments that stopped early are not finished models
        pool = full
    if not pool:  # nothing finished (e.g. everything pruned early): take what has a value
        pool = [r for r in records if r.state in (PRUNED, PAUSED) and r.value is not None]
    return sorted(pool, key=lambda r: _sign(setup) * r.value)


def reevaluate(setup: SearchSetup, top: list[TrialRecord], seeds: int = 2, progress: Any = None) -> dict[int, list[float]]:
    """Train each of ``top`` again with ``seeds`` other seeds (``train.seed``), one process per run.

    Returns number -> values (original first). The original trial's checkpoint is the one promoted;
    the re-runs only make the ranking robust to seed noise.
    """
    out: dict[int, list[float]] = {}
    has_seed = get_dotted(setup.base_spec, "train.seed") is not None
    if not has_seed:
        if progress:
            progress.message("--reeval-top: the spec has no train.seed; re-evaluation skipped")
        return out
    base_seed = int(get_dotted(setup.base_spec, "train.seed") or 0)
    env = slot_env(setup.slots[0] if setup.slots else {"index": 0, "gpus": []})
    for record in top:
        values = [record.value]
        for k in range(1, seeds + 1):
            folder = setup.run_dir / "reeval" / f"{record.number:04d}-seed{k}"
            spec = apply_config(setup.base_spec, record.params)
            set_dotted(spec, "train.seed", base_seed + 1000 * k + 1)
            set_dotted(spec, "train.resume_training_checkpoint_path", "")
            job = make_job(setup.model, spec, folder, config=record.params, objectives=setup.objectives,
                           extra={"number": record.number, "kind": "reeval", "seed_index": k})
            job_file = rundir.write_json(folder / JOB_FILE, job)
            try:
                subprocess.run([sys.executable, "-m", "automl.search.worker", "--once", str(job_file)],
                               env=env, capture_output=True, text=True, timeout=setup.trial_timeout_s)
            except subprocess.TimeoutExpired:
                pass
            result = rundir.read_json_or(folder / RESULT)
            if result and result.get("state") == COMPLETE and result.get("value") is not None:
                values.append(float(result["value"]))
        out[record.number] = values
        if progress:
            progress.message(f"re-evaluated trial {record.number}: {', '.join(f'{v:.4g}' for v in values)}")
    return out


def _action_spec(plugin: Any, trial_spec: dict, action: str) -> dict:
    """The trial's spec with the action's template keys added where the trial spec has none."""
    spec = copy.deepcopy(trial_spec)
    try:
        template = load_yaml(plugin.spec_template(action))
    except Exception:
        return spec
    section = template.get(action)
    if isinstance(section, dict):
        merged = dict(section)
        merged.update(spec.get(action) or {})
        spec[action] = merged
    return spec


def _run_action(name: str, fn, *args) -> dict[str, Any]:
    started = time.time()
    try:
        out = fn(*args) or {}
        return {"status": "ok", "duration_s": round(time.time() - started, 3), **out}
    except AutomlError as exc:
        return {"status": "failed", "reason": str(exc)}
    except Exception as exc:  # a failing action must not lose the search's results
        traceback.print_exc()
        return {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}


def promote(setup: SearchSetup, best: TrialRecord) -> dict[str, Any]:
    """Copy the best epoch's checkpoint to ``best/model.ckpt`` and run evaluate, export and TensorRT."""
    from automl.plugins import get_trainer

    best_dir = setup.run_dir / "best"
    best_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"trial": best.number, "best_epoch": best.best_epoch}
    ckpt = Path(best.best_checkpoint) if best.best_checkpoint else None
    if ckpt is None or not ckpt.is_file():
        out["checkpoint"] = {"status": "failed", "reason": f"trial {best.number} has no best checkpoint ({ckpt})"}
        rundir.write_json(best_dir / "promotion.json", out)
        return out
    model_ckpt = best_dir / "model.ckpt"
    shutil.copy2(ckpt, model_ckpt)
    out["checkpoint"] = {"status": "ok", "source": str(ckpt), "path": str(model_ckpt)}
    plugin = get_trainer(setup.model)
    trial_spec_path = Path(best.trial_dir) / SPEC
    trial_spec = load_yaml(trial_spec_path) if trial_spec_path.is_file() else apply_config(setup.base_spec, best.params)

    spec = _action_spec(plugin, trial_spec, "evaluate")
    evaluation_keys = getattr(plugin, "evaluation_keys", None)
    if setup.data_dir and callable(evaluation_keys):  # e.g. ml_recog's unknown classes
        try:
            spec = apply_config(spec, evaluation_keys(setup.data_dir))
            out["evaluation_data"] = str(setup.data_dir)
        except AutomlError as exc:
            out["evaluation_data"] = f"validation data (no evaluation split: {exc})"
    set_dotted(spec, "evaluate.checkpoint", str(model_ckpt))
    out["evaluate"] = _run_action("evaluate", plugin.evaluate, spec, best_dir / "evaluate")
    rundir.write_json(best_dir / "evaluate.json", out["evaluate"])

    onnx_file = best_dir / "model.onnx"
    spec = _action_spec(plugin, trial_spec, "export")
    set_dotted(spec, "export.checkpoint", str(model_ckpt))
    set_dotted(spec, "export.onnx_file", str(onnx_file))
    out["export"] = _run_action("export", plugin.export, spec, best_dir / "export")
    rundir.write_json(best_dir / "export.json", out["export"])

    if out["export"].get("status") != "ok" or not onnx_file.exists():
        out["tensorrt"] = {"status": "skipped", "reason": "no ONNX model to build from"}
    elif importlib.util.find_spec("tensorrt") is None:
        out["tensorrt"] = {"status": "skipped", "reason": "TensorRT is not installed on this host (pip install automl[tensorrt] on a CUDA machine)"}
    elif not gpu_inventory():
        out["tensorrt"] = {"status": "skipped", "reason": "no CUDA GPU on this host; TensorRT engines are built per GPU"}
    else:
        spec = _action_spec(plugin, trial_spec, "gen_trt_engine")
        set_dotted(spec, "gen_trt_engine.onnx_file", str(onnx_file))
        set_dotted(spec, "gen_trt_engine.trt_engine", str(best_dir / "model.engine"))
        out["tensorrt"] = _run_action("gen_trt_engine", plugin.gen_trt_engine, spec, best_dir / "gen_trt_engine")
    rundir.write_json(best_dir / "promotion.json", out)
    return out


def cleanup_checkpoints(setup: SearchSetup, records: list[TrialRecord], keep: set[int]) -> int:
    """Delete the checkpoints of every trial not in ``keep``; returns bytes freed."""
    freed = 0
    for record in records:
        if record.number in keep or not record.trial_dir:
            continue
        folder = Path(record.trial_dir) / "checkpoints"
        if folder.is_dir():
            freed += sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            shutil.rmtree(folder, ignore_errors=True)
    reeval = setup.run_dir / "reeval"
    if reeval.is_dir():
        for folder in reeval.glob("*/checkpoints"):
            freed += sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            shutil.rmtree(folder, ignore_errors=True)
    return freed


def _brief(r: TrialRecord | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"number": r.number, "state": r.state, "value": r.value, "values": r.values, "params": r.params,
            "best_epoch": r.best_epoch, "best_checkpoint": r.best_checkpoint, "epochs_run": r.epochs_run}


def finish_search(setup: SearchSetup, records: list[TrialRecord], *, tracker: Any, progress: Any = None,
                  stop_reason: str | None = None, reeval_top: int = 0, reeval_seeds: int = 2,
                  promote_best: bool = True, started: float | None = None) -> dict[str, Any]:
    """Choose and promote the winner, clean up, write ``summary.csv`` and ``best/summary.json``;
    return the summary (what ``--json`` prints)."""
    ranked = candidates(records, setup)
    reeval: dict[int, list[float]] = {}
    if reeval_top > 0 and len(ranked) > 1:
        reeval = reevaluate(setup, ranked[:reeval_top], seeds=reeval_seeds, progress=progress)
        if reeval:
            top = sorted(ranked[:reeval_top], key=lambda r: _sign(setup) * (sum(reeval.get(r.number, [r.value])) /
                                                                              len(reeval.get(r.number, [r.value]))))
            ranked = top + ranked[reeval_top:]
    best = ranked[0] if ranked else None
    baseline = next((r for r in records if r.number == 0), None)
    promotion = None
    if best is not None and promote_best:
        if progress:
            progress.message(f"promoting trial {best.number} (epoch {best.best_epoch}, {setup.monitor.metric}={best.value:.4g})")
        promotion = promote(setup, best)
        tracker.promoted(_brief(best) | {"promotion": promotion}, setup.run_dir / "best")
    freed = 0
    if not setup.keep_checkpoints and best is not None:
        freed = cleanup_checkpoints(setup, records, keep={best.number})
    counts = {state: sum(1 for r in records if r.state == state) for state in (COMPLETE, PRUNED, PAUSED, FAILED, "running")}
    improvement = None
    if best is not None and baseline is not None and baseline.value is not None and best.value is not None:
        improvement = best.value - baseline.value
    summary = {
        "name": setup.name, "run_dir": str(setup.run_dir), "model": setup.model, "algorithm": setup.algorithm,
        "monitor": setup.monitor.metric, "mode": setup.monitor.mode,
        "objectives": [f"{m.metric}:{m.mode}" for m in setup.objectives],
        "budget": setup.budget_trials, "trials_used": len(records), "counts": counts,
        "stopped_reason": stop_reason,
        "baseline": _brief(baseline), "best": _brief(best), "improvement_over_baseline": improvement,
        "pareto_front": [_brief(r) for r in pareto_front(records, setup)] if setup.multi_objective else None,
        "reevaluation": {str(k): v for k, v in reeval.items()} or None,
        "epochs_run_total": sum(r.epochs_run for r in records),
        "duration_s": round(time.time() - started, 3) if started else None,
        "gpu_hours": round(sum(r.gpu_seconds for r in records) / 3600.0, 6),
        "checkpoint_bytes_freed": freed,
        "promotion": promotion,
        "trials": [{"number": r.number, "state": r.state, "value": r.value, "epochs_run": r.epochs_run,
                    "reason": r.reason} for r in records],
    }
    rundir.write_summary_csv(setup.run_dir, records)
    rundir.write_json(setup.run_dir / "best" / "summary.json", summary)
    tracker.end_search(summary)
    return summary
