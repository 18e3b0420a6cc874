"""After the trials: choose the winner, optionally re-evaluate the top k (and the baseline) with more
seeds, judge the winner's gain over the baseline against that seed noise on the held-out split,
promote its best checkpoint into ``best/`` (evaluate, ONNX export with parity, TensorRT where
possible) and free the disk of the losing trials' checkpoints. Both backends call :func:`finish_search`.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import os
import queue
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automl.testing.killpoints import kill_point
from automl.trials.records import SearchSetup, TrialRecord, TrialState
from automl.errors import AutomlError
from automl.reporting import clean_float
from automl.trials import rundir
from automl.trials.outcome import loss, ranked, search_exit
from automl.trials.slots import gpu_inventory, slot_env
from automl.trials.rundir import JOB_FILE, RESULT, SPEC
from automl.trials.worker import make_job
from automl.spec import apply_config, get_dotted, load_yaml, set_dotted


def pareto_front(records: list[TrialRecord], setup: SearchSetup) -> list[TrialRecord]:
    """Non-dominated complete trials for a multi-objective search."""
    pts = [r for r in records if r.state == TrialState.COMPLETE and r.values and all(v is not None for v in r.values)]
    def dominates(a: TrialRecord, b: TrialRecord) -> bool:
        av = [loss(m.mode, v) for m, v in zip(setup.objectives, a.values)]
        bv = [loss(m.mode, v) for m, v in zip(setup.objectives, b.values)]
        return all(x <= y for x, y in zip(av, bv)) and any(x < y for x, y in zip(av, bv))

    return [p for p in pts if not any(dominates(q, p) for q in pts if q is not p)]


def candidates(records: list[TrialRecord], setup: SearchSetup) -> list[TrialRecord]:
    """Trials eligible to win, best first: complete ones trained to the full budget, ranked by the
    value of their best epoch (for multi-objective searches, the Pareto front by the first objective)."""
    pool = pareto_front(records, setup) if setup.multi_objective else [
        r for r in records if r.state == TrialState.COMPLETE and r.value is not None]
    full = [r for r in pool if r.epochs_done >= setup.max_epochs]
    if setup.algorithm == "pbt" and full:  # pbt segments that stopped early are not finished models
        pool = full
    if not pool:  # nothing finished (e.g. everything pruned early): take what has a value
        pool = [r for r in records if r.state in (TrialState.PRUNED, TrialState.PAUSED) and r.value is not None]
    return ranked(pool, setup.monitor)


#: ``--reeval-top auto``: re-train the top 2 (and the baseline) once the search has 10 trials. With 2
#: extra seeds that is 6 more trainings: fair next to 10 or more trials, too much next to fewer.
AUTO_REEVAL_TOP, AUTO_REEVAL_MIN_BUDGET = 2, 10
#: a gain counts as a win (or a loss) only beyond this many seed-to-seed standard deviations
NOISE_FACTOR = 2.0


def reeval_count(requested: int | str, budget_trials: int) -> int:
    """How many of the top trials to re-train: ``requested``, or for ``"auto"`` the budget's share."""
    if requested == "auto":
        return AUTO_REEVAL_TOP if budget_trials >= AUTO_REEVAL_MIN_BUDGET else 0
    return max(0, int(requested))


@dataclass
class SeedRun:
    """One training of a trial's config: the trial itself (``index`` 0) or a re-run with another seed."""

    number: int
    index: int
    seed: int
    #: the monitor at the run's best epoch (validation): what the winner is chosen by
    value: float | None
    #: that epoch's checkpoint, the one evaluated on the held-out split
    checkpoint: str | None
    #: the spec it trained with (its evaluate spec starts from it)
    spec: dict[str, Any]
    #: the plugin's evaluation metric of ``checkpoint`` on the held-out split
    held_out: float | None = None


def _reeval_dir(setup: SearchSetup, number: int, index: int) -> Path:
    return rundir.reeval_dir(setup.run_dir, number, index)


def _trial_spec(setup: SearchSetup, record: TrialRecord) -> dict[str, Any]:
    path = Path(record.trial_dir) / SPEC if record.trial_dir else None
    return load_yaml(path) if path is not None and path.is_file() else apply_config(setup.base_spec, record.params)


def _original_run(setup: SearchSetup, record: TrialRecord) -> SeedRun:
    spec = _trial_spec(setup, record)
    return SeedRun(record.number, 0, int(get_dotted(spec, "train.seed") or 0), record.value, record.best_checkpoint, spec)


def _train_again(setup: SearchSetup, record: TrialRecord, index: int, seed: int, env: dict[str, str]) -> SeedRun | None:
    """Train ``record``'s config from scratch with ``seed`` in a worker process; None when the run
    produced no value."""
    folder = _reeval_dir(setup, record.number, index)
    shutil.rmtree(folder, ignore_errors=True)  # a resumed search's finish must not read an earlier run's result
    spec = apply_config(setup.base_spec, record.params)
    set_dotted(spec, "train.seed", seed)
    set_dotted(spec, "train.resume_training_checkpoint_path", "")
    job = make_job(setup.model, spec, folder, config=record.params, objectives=setup.objectives,
                   extra={"number": record.number, "kind": "reeval", "seed_index": index})
    job_file = rundir.write_json(folder / JOB_FILE, job)
    try:
        subprocess.run([sys.executable, "-m", "automl.trials.worker", "--once", str(job_file)],
                       env=env, capture_output=True, text=True, timeout=setup.trial_timeout_s)
    except subprocess.TimeoutExpired:
        pass
    result = rundir.read_json_or(folder / RESULT)
    if not result or result.get("state") != TrialState.COMPLETE or result.get("value") is None:
        return None
    return SeedRun(record.number, index, seed, float(result["value"]), result.get("best_checkpoint"), spec)


def _train_on_slots(setup: SearchSetup, jobs: list[tuple[TrialRecord, int, int]]) -> list[SeedRun | None]:
    """Run ``(record, index, seed)`` re-trainings on the search's slots, one per slot at a time, in the
    slot's environment (its GPUs, or its share of the cores): on the 2-core host two one-thread runs
    side by side finish well before two two-thread runs one after the other (see ``MAX_DEFAULT_CPU_SLOTS``)."""
    free: queue.Queue = queue.Queue()
    for slot in setup.slots or [{"index": 0, "gpus": []}]:
        free.put(slot_env(slot))

    def train(job: tuple[TrialRecord, int, int]) -> SeedRun | None:
        env = free.get()
        try:
            return _train_again(setup, *job, env)
        finally:
            free.put(env)

    with ThreadPoolExecutor(max_workers=free.qsize()) as pool:
        return list(pool.map(train, jobs))


def _reeval_seed(seed: int, index: int) -> int:
    """The seed of a config's ``index``-th run: 0 is the trial's own run, each re-run gets a seed far from
    every other trial's (trial seeds are consecutive)."""
    return seed + (1000 * index + 1 if index else 0)


def reevaluate(setup: SearchSetup, top: list[TrialRecord], seeds: int = 2, progress: Any = None) -> dict[int, list[SeedRun]]:
    """Train each of ``top`` again with ``seeds`` other seeds (``train.seed``), one process per run.

    Returns number -> runs, the trial itself first. A trial that stopped short of its full training (a
    baseline paused at a rung, a pruned trial) is trained again with its own seed as well, so that all
    runs of a config are models trained alike. The original trial's checkpoint is the one promoted;
    the re-runs make the ranking robust to seed noise and measure that noise.
    """
    out: dict[int, list[SeedRun]] = {}
    if get_dotted(setup.base_spec, "train.seed") is None:
        if progress:
            progress.message("--reeval-top: the spec has no train.seed; re-evaluation skipped")
        return out
    originals = {record.number: _original_run(setup, record) for record in top}
    jobs = [(record, index, _reeval_seed(originals[record.number].seed, index))
            for record in top
            for index in range(0 if record.state != TrialState.COMPLETE else 1, seeds + 1)]
    trained = dict(zip(((record.number, index) for record, index, _ in jobs), _train_on_slots(setup, jobs)))
    for record in top:
        first = originals[record.number] if record.state == TrialState.COMPLETE else trained[(record.number, 0)]
        again = [trained[(record.number, k)] for k in range(1, seeds + 1)]
        out[record.number] = [run for run in (first, *again) if run is not None]
        if progress:
            failed = 1 + seeds - len(out[record.number])
            progress.message(f"re-evaluated trial {record.number}: {', '.join(f'{run.value:.4g}' for run in out[record.number])}"
                             + (f" ({failed} run(s) failed)" if failed else ""))
    return out


def rerank(setup: SearchSetup, ranked: list[TrialRecord], top_k: int, runs: dict[int, list[SeedRun]]) -> list[TrialRecord]:
    """The top k re-ordered by their mean validation value over the seeds; the rest stay behind them."""
    def mean_value(record: TrialRecord) -> float:
        values = [run.value for run in runs.get(record.number, [])] or [record.value]
        return loss(setup.monitor.mode, statistics.fmean(values))

    return sorted(ranked[:top_k], key=mean_value) + ranked[top_k:]


# -- noise ------------------------------------------------------------------------------------------
def pooled_std(groups: Sequence[Sequence[float]]) -> float | None:
    """Seed-to-seed standard deviation pooled over configs: each config's values around its own mean,
    so that differences between configs do not count as noise. None when no config has two values."""
    groups = [g for g in groups if len(g) >= 2]
    dof = sum(len(g) - 1 for g in groups)
    if not dof:
        return None
    return math.sqrt(sum((x - statistics.fmean(g)) ** 2 for g in groups for x in g) / dof)


def noise_verdict(baseline: Sequence[float], best: Sequence[float], mode: str,
                  others: Sequence[Sequence[float]] = (), no_repeats: str = "--reeval-top 0") -> dict[str, Any]:
    """Judge the winner's gain over the baseline against seed noise.

    ``baseline`` and ``best`` hold one config's metric per seed, ``others`` the other re-evaluated
    configs' (they only sharpen the noise estimate). ``gain`` is mean(best) - mean(baseline), positive
    when better (sign flipped for mode ``min``); ``noise_std`` is :func:`pooled_std` over all of them.
    A "win" needs gain > 0 and gain >= 2 x noise, a "loss" gain < 0 and gain <= -2 x noise; anything
    between is "within noise". No config seen with two seeds gives no noise estimate: the verdict is
    unknown, with ``no_repeats`` saying why.
    """
    if not baseline or not best:
        return {"gain": None, "noise_std": None, "verdict": "unknown (no baseline or no winner value)"}
    gain = loss(mode, statistics.fmean(baseline)) - loss(mode, statistics.fmean(best))  # positive: better
    noise = pooled_std([baseline, best, *others])
    if noise is None:
        verdict = f"unknown (no seed repeats: {no_repeats})"
    elif gain > 0 and gain >= NOISE_FACTOR * noise:
        verdict = "win"
    elif gain < 0 and gain <= -NOISE_FACTOR * noise:
        verdict = "loss"
    else:
        verdict = "within noise"
    return {"gain": gain, "noise_std": noise, "verdict": verdict}


# -- held-out evaluation ----------------------------------------------------------------------------
def held_out_keys(setup: SearchSetup, plugin: Any) -> tuple[dict[str, Any] | None, str]:
    """The spec keys that point evaluate at the plugin's held-out split of ``setup.data_dir`` (e.g.
    ml_recog's unknown classes), and a label of what evaluate then runs on."""
    keys_of = getattr(plugin, "evaluation_keys", None)
    if not setup.data_dir or not callable(keys_of):
        return None, "validation"
    try:
        return keys_of(setup.data_dir), f"held-out ({setup.data_dir})"
    except AutomlError as exc:
        return None, f"validation (no held-out split: {exc})"


def _evaluate_checkpoint(plugin: Any, trial_spec: dict, keys: dict[str, Any] | None, checkpoint: str | Path,
                         results_dir: Path) -> dict[str, Any]:
    """The plugin's evaluate of ``checkpoint``, in this process, on the held-out split when ``keys``."""
    spec = _action_spec(plugin, trial_spec, "evaluate")
    if keys:
        spec = apply_config(spec, keys)
    set_dotted(spec, "evaluate.checkpoint", str(checkpoint))
    results_dir.mkdir(parents=True, exist_ok=True)
    return _run_action("evaluate", plugin.evaluate, spec, results_dir)


def metric_value(result: dict[str, Any], metric: str) -> float | None:
    """``metric`` of an evaluate result: under ``"metrics"`` (ml_recog, toy) or at the top (reid, mae)."""
    nested = result.get("metrics")
    return clean_float(nested[metric] if isinstance(nested, dict) and metric in nested else result.get(metric))


def evaluate_runs(setup: SearchSetup, plugin: Any, keys: dict[str, Any], metric: str, runs: list[SeedRun]) -> list[str]:
    """Set each run's ``held_out`` value (outputs in ``reeval/<number>-seed<k>/evaluate/``); returns
    what failed."""
    errors = []
    for run in runs:
        where = f"trial {run.number} seed {run.seed}"
        if not run.checkpoint or not Path(run.checkpoint).is_file():
            errors.append(f"{where}: no checkpoint ({run.checkpoint})")
            continue
        folder = _reeval_dir(setup, run.number, run.index) / "evaluate"
        result = _evaluate_checkpoint(plugin, run.spec, keys, run.checkpoint, folder)
        rundir.write_json(folder / "evaluate.json", result)
        run.held_out = metric_value(result, metric)
        if run.held_out is None:
            errors.append(f"{where}: {result.get('reason') or f'evaluate reported no {metric!r}'}")
    return errors


def _config_block(number: int, runs: list[SeedRun], held_out: bool) -> dict[str, Any]:
    scored = [run for run in runs if (run.held_out if held_out else run.value) is not None]
    values = [run.held_out if held_out else run.value for run in scored]
    return {"number": number, "values": values, "mean": statistics.fmean(values) if values else None,
            "std": statistics.stdev(values) if len(values) >= 2 else None, "seeds": [run.seed for run in scored],
            "validation_values": [run.value for run in scored]}


def evaluation_summary(setup: SearchSetup, baseline: TrialRecord | None, best: TrialRecord | None,
                       runs: dict[int, list[SeedRun]], no_repeats: str) -> dict[str, Any] | None:
    """Baseline and winner, with their seed repeats, on the held-out split (validation when the plugin
    or the search has none: the choice itself never looks at the held-out split), and the verdict."""
    from automl.plugins import get_trainer

    if best is None:
        return None
    configs = dict(runs)
    for record in (baseline, best):  # not re-evaluated: the trial's own checkpoint
        if record is not None and record.value is not None and record.number not in configs:
            configs[record.number] = [_original_run(setup, record)]
    plugin = get_trainer(setup.model)
    keys, split = held_out_keys(setup, plugin)
    metric = getattr(plugin, "evaluation_metric", None)
    held_out = keys is not None and bool(metric)
    if keys is not None and not metric:
        split = f"validation (model '{setup.model}' names no evaluation_metric)"
    errors = evaluate_runs(setup, plugin, keys, metric, [r for rs in configs.values() for r in rs]) if held_out else []
    blocks = {number: _config_block(number, rs, held_out) for number, rs in configs.items()}
    base_block = blocks.get(baseline.number) if baseline is not None else None
    others = [b["values"] for b in blocks.values() if b is not base_block and b is not blocks[best.number]]
    verdict = noise_verdict(base_block["values"] if base_block else [], blocks[best.number]["values"],
                            setup.monitor.mode, others, no_repeats)
    return {"split": split, "metric": metric if held_out else setup.monitor.metric, "mode": setup.monitor.mode,
            "baseline": base_block, "best": blocks[best.number], **verdict,
            "seeds": sorted({run.seed for rs in configs.values() for run in rs}), "errors": errors}


def _with_baseline(top: list[TrialRecord], baseline: TrialRecord | None) -> list[TrialRecord]:
    """``top`` and the baseline: the reference of the gain and of the noise always gets the same seeds."""
    if baseline is None or baseline.value is None or any(r.number == baseline.number for r in top):
        return top
    return [*top, baseline]


def _why_no_repeats(setup: SearchSetup, requested: int | str, top_k: int, seeds: int) -> str:
    """Why no config has two seeds, for the verdict (read only when none has)."""
    if top_k == 0 and requested == "auto":
        return f"--reeval-top auto re-evaluates from a budget of {AUTO_REEVAL_MIN_BUDGET} trials"
    if top_k == 0:
        return "--reeval-top 0"
    if seeds < 1:
        return "--reeval-seeds 0"
    if get_dotted(setup.base_spec, "train.seed") is None:
        return "the spec has no train.seed"
    return "every re-run failed"


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
        if os.environ.get("AUTOML_DEBUG"):  # as the CLI does: the reason is the record, the traceback on demand
            traceback.print_exc()
        return {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}


def promote(setup: SearchSetup, best: TrialRecord) -> dict[str, Any]:
    """Copy the best epoch's checkpoint to ``best/model.ckpt`` and run evaluate, export and TensorRT."""
    from automl.plugins import get_trainer

    best_dir = setup.run_dir / rundir.BEST
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
    trial_spec = _trial_spec(setup, best)

    keys, out["evaluation_data"] = held_out_keys(setup, plugin)  # e.g. ml_recog's unknown classes
    out["evaluate"] = _evaluate_checkpoint(plugin, trial_spec, keys, model_ckpt, best_dir / "evaluate")
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
        folder = Path(record.trial_dir) / rundir.CHECKPOINTS
        if folder.is_dir():
            freed += sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            shutil.rmtree(folder, ignore_errors=True)
    reeval = setup.run_dir / rundir.REEVAL
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
                  stop_reason: str | None = None, reeval_top: int | str = 0, reeval_seeds: int = 2,
                  promote_best: bool = True, started: float | None = None) -> dict[str, Any]:
    """Choose, judge and promote the winner, clean up, write ``summary.csv`` and ``best/summary.json``;
    return the summary (what ``--json`` prints). ``reeval_top``: a count or ``"auto"``."""
    ranked = candidates(records, setup)
    baseline = next((r for r in records if r.number == 0), None)
    top_k = reeval_count(reeval_top, setup.budget_trials)
    runs: dict[int, list[SeedRun]] = {}
    if top_k and reeval_seeds > 0 and ranked:
        runs = reevaluate(setup, _with_baseline(ranked[:top_k], baseline), seeds=reeval_seeds, progress=progress)
        if runs:
            ranked = rerank(setup, ranked, top_k, runs)
    best = ranked[0] if ranked else None
    evaluation = evaluation_summary(setup, baseline, best, runs, _why_no_repeats(setup, reeval_top, top_k, reeval_seeds))
    promotion = None
    if best is not None and promote_best:
        if progress:
            progress.message(f"promoting trial {best.number} (epoch {best.best_epoch}, {setup.monitor.metric}={best.value:.4g})")
        kill_point("promotion")
        promotion = promote(setup, best)
        kill_point("promoted")
        tracker.promoted(_brief(best) | {"promotion": promotion, "evaluation": evaluation}, setup.run_dir / rundir.BEST)
    freed = 0
    if not setup.keep_checkpoints and best is not None:
        freed = cleanup_checkpoints(setup, records, keep={best.number})
    counts = {state: sum(1 for r in records if r.state == state) for state in TrialState}
    improvement = None
    if best is not None and baseline is not None and baseline.value is not None and best.value is not None:
        improvement = best.value - baseline.value
    summary = {
        "name": setup.name, "run_dir": str(setup.run_dir), "model": setup.model, "algorithm": setup.algorithm,
        "monitor": setup.monitor.metric, "mode": setup.monitor.mode,
        "objectives": [f"{m.metric}:{m.mode}" for m in setup.objectives],
        "budget": setup.budget_trials, "trials_used": len(records), "counts": counts,
        "stopped_reason": stop_reason,
        # what the command exits with and why (automl.errors' EXIT_*; README "Running searches")
        **dict(zip(("exit_code", "exit_reason"), search_exit(best, stop_reason, promotion))),
        "baseline": _brief(baseline), "best": _brief(best), "improvement_over_baseline": improvement,
        "pareto_front": [_brief(r) for r in pareto_front(records, setup)] if setup.multi_objective else None,
        "reevaluation": {str(n): [run.value for run in rs] for n, rs in runs.items()} or None,
        "evaluation": evaluation,
        "epochs_run_total": sum(r.epochs_run for r in records),
        "duration_s": round(time.time() - started, 3) if started else None,
        "gpu_hours": round(sum(r.gpu_seconds for r in records) / 3600.0, 6),
        "checkpoint_bytes_freed": freed,
        "promotion": promotion,
        "trials": [{"number": r.number, "state": r.state, "value": r.value, "epochs_run": r.epochs_run,
                    "reason": r.reason} for r in records],
    }
    rundir.write_summary_csv(setup.run_dir, records)
    rundir.write_json(setup.run_dir / rundir.BEST / "summary.json", summary)
    kill_point("summary")
    tracker.end_search(summary)  # flushes the tracking spool
    kill_point("tracking_flushed")
    summary["tracking"] = tracker.describe()  # after end_search: run ids are known once delivered
    return summary
