"""Search quality side by side: which search finds the better ml_recog model for the same budget?

Every contestant gets the same trainer (``ml_recog``), the same data, the same spec (the template
plus the same fixed ``KEY=VALUE`` overrides, so the same ``train.num_epochs`` as the max epochs), the
same number of trials (``--budget``, default 20, one at a time) and the same search seeds (0, 1, 2):

==============  =============================================================================================
contestant      what runs
==============  =============================================================================================
tpe             ``automl run --algorithm tpe`` (the default: Optuna TPE + median pruner; trial 0 = defaults)
random          ``automl run --algorithm random`` (random sampler; the CLI's default median pruner stays on)
asha            ``automl run --algorithm asha`` (multi-fidelity, pause-and-promote from checkpoints)
bohb            ``automl run --algorithm bohb`` (hyperband rungs + TPE; not in the default set)
ray             ``automl run --backend ray --algorithm random``: Ray Tune's defaults, i.e. what
                ``tune.Tuner`` does without ``search_alg`` / ``scheduler``: ``BasicVariantGenerator``
                (random sampling of the param space) and ``FIFOScheduler`` (no early stopping)
ray-tpe         ``automl run --backend ray --algorithm tpe`` (Optuna TPE through ``OptunaSearch`` + FIFO;
                not in the default set)
tao-bayesian    TAO's own AutoML, ``nvidia-tao-automl`` 7.2.0 from PyPI in its own venv, Bayesian brain
tao-hyperband   the same package's Hyperband brain (it allocates the epochs; see peers/tao_automl.py)
==============  =============================================================================================

Datasets: ``glyphs`` (``automl data make --task ml_recog``) and ``fashion`` (``--source fashion-mnist``,
Debian's dataset-fashion-mnist), made once under ``OUT/data/``. Every ``automl run`` is a subprocess
(``--json``, last stdout line parsed) with ``--workers 1 --reeval-top 0`` (the re-evaluation of the top
trials with extra seeds trains epochs outside the trial budget that the peers do not get) and
``--no-tracking``: MLflow costs ~30 s per search on this 2-core host (a 3-trial, 2-epoch search on
small data: 39 s without, 69 s with), which would tilt the wall-time column against the automl contestants and is no part of
search quality; ``--tracking`` turns it on for every contestant (TAO's jobs included).

Recorded per contestant x dataset x seed (``OUT/cells/*.json``, all in ``OUT/results.json``):

* the winner's held-out P@1: Precision at Rank 1 on the unknown classes (``unknown_classes/``), from
  ``summary["evaluation"]["best"]["mean"]``, else ``summary["promotion"]["evaluate"]``, else (TAO, or
  no promotion) ``automl evaluate --data DIR evaluate.checkpoint=<winner's best checkpoint>``;
* best validation P@1: the value the search chose its winner by;
* epochs consumed: every epoch trained (``summary["epochs_run_total"]``; TAO: the jobs' epochs);
* wall seconds: the whole contestant, start to result (process start, promotion / held-out
  evaluation of the winner included);
* the best-so-far validation P@1 against epochs consumed (every trial's ``metrics.jsonl``, in time order).

Output (``--out``, default ``benchmarks/results/search_quality/``): ``table.md`` (mean +- std over seeds),
``results.json`` (every raw number), ``best_so_far.png``, logs and run folders. The targets are
printed measured against their goal: automl tpe >= TAO Bayesian and >= random (mean held-out P@1), and
the multi-fidelity run reaches random's mean final best validation P@1 with <= 1/3 of random's mean
epochs. Cells already measured with the same settings are reused (``--redo`` re-measures them), so an
interrupted run continues where it stopped.

Reproduce::

    .venv/bin/python benchmarks/search_quality.py                        # 20 trials x 3 seeds x 2 datasets
    .venv/bin/python benchmarks/search_quality.py --quick                # 6 trials, 1 seed, glyphs
    .venv/bin/python benchmarks/search_quality.py --contestants tpe,asha,tao-hyperband train.num_epochs=6

If TAO's package cannot be installed or driven, its cells carry the exact error (also printed and in
the table's notes) and the other contestants still run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers.common import (REPO, HELDOUT_METRIC, automl_command, best_so_far_curve, child_env,  # noqa: E402
                          evaluate_checkpoint, last_json_line, tail_line_text)

MODEL = "ml_recog"
METRIC = "val Precision at Rank 1"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "search_quality"
DATASETS = {"glyphs": [], "fashion": ["--source", "fashion-mnist"]}
CONTESTANTS: dict[str, dict[str, Any]] = {
    "tpe": {"kind": "automl", "args": ["--algorithm", "tpe"], "label": "automl tpe (default)"},
    "random": {"kind": "automl", "args": ["--algorithm", "random"], "label": "automl random"},
    "asha": {"kind": "automl", "args": ["--algorithm", "asha"], "label": "automl asha (pause-and-promote)",
             "multi_fidelity": True},
    "bohb": {"kind": "automl", "args": ["--algorithm", "bohb"], "label": "automl bohb (pause-and-promote)",
             "multi_fidelity": True},
    "ray": {"kind": "automl", "args": ["--backend", "ray", "--algorithm", "random"],
            "label": "Ray Tune defaults (random + FIFO)"},
    "ray-tpe": {"kind": "automl", "args": ["--backend", "ray", "--algorithm", "tpe"], "label": "Ray Tune + Optuna TPE"},
    "tao-bayesian": {"kind": "tao", "algorithm": "bayesian", "label": "TAO AutoML bayesian"},
    "tao-hyperband": {"kind": "tao", "algorithm": "hyperband", "label": "TAO AutoML hyperband"},
}
DEFAULT_CONTESTANTS = ["tpe", "random", "asha", "ray", "tao-bayesian", "tao-hyperband"]
MULTI_FIDELITY_TARGET = ["asha", "bohb"]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- data ------------------------------------------------------------------------------------------
def make_dataset(name: str, out: Path, options: Sequence[str]) -> Path:
    """``automl data make`` once per dataset and option set; reused while the options are the same."""
    folder = out / "data" / name
    args = ["data", "make", "--task", MODEL, *DATASETS[name], *options, "--out", str(folder), "--json"]
    stamp = folder / "benchmark_args.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == args[:-3]:
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    log(f"making dataset {name}: automl {' '.join(args)}")
    proc = subprocess.run(automl_command(*args), capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"automl data make for '{name}' failed: {tail_line_text(proc.stderr) or proc.returncode}")
    stamp.write_text(json.dumps(args[:-3]))
    return folder


def data_options(text: str | None) -> list[str]:
    """``"classes=12,per_class=8"`` -> ``--classes 12 --per-class 8`` (for ``automl data make``)."""
    out: list[str] = []
    for item in (text or "").replace(",", " ").split():
        key, _, value = item.partition("=")
        out += [f"--{key.replace('_', '-')}", value]
    return out


# -- one cell: contestant x dataset x seed ---------------------------------------------------------
def run_command(cmd: list[str], *, env: dict[str, str], timeout: float | None) -> tuple[str, str, int]:
    """Run ``cmd`` in its own process group; past ``timeout`` the whole group (its trial workers, a
    private Ray instance) is killed. Returns stdout, stderr and the exit status."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        return stdout, stderr, proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        return stdout, stderr + f"\nkilled after --search-timeout {timeout} s", -9


def run_automl_cell(contestant: dict[str, Any], data_dir: Path, seed: int, args: argparse.Namespace, out: Path,
                    run_name: str) -> dict[str, Any]:
    run_dir = out / "runs" / run_name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cmd = automl_command("run", "--model", MODEL, "--budget", str(args.budget), "--seed", str(seed), "--data",
                         str(data_dir), "--output", str(out / "runs"), "--name", run_name, "--workers", "1",
                         "--reeval-top", "0", "--json", *([] if args.tracking else ["--no-tracking"]),
                         *(["-e", str(args.spec)] if args.spec else []), *contestant["args"], *args.overrides)
    log_path = out / "logs" / f"{run_name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    stdout, stderr, rc = run_command(cmd, env=child_env(args.tracking), timeout=args.search_timeout)
    wall = time.time() - started
    log_path.write_text(f"$ {' '.join(cmd)}\n--- stdout\n{stdout}\n--- stderr\n{stderr}")
    cell: dict[str, Any] = {"command": " ".join(cmd), "run_dir": str(run_dir), "wall_s": round(wall, 2),
                            "log": str(log_path)}
    summary = last_json_line(stdout) if rc == 0 else None
    if summary is None:
        return {**cell, "error": f"automl run failed (exit {rc}): {tail_line_text(stderr) or 'no output'}"}
    heldout, source, heldout_error = _heldout_from_summary(summary)
    if heldout is None:
        checkpoint = run_dir / "best" / "model.ckpt"
        if not checkpoint.is_file():
            checkpoint = Path(str((summary.get("best") or {}).get("best_checkpoint") or ""))
        if checkpoint.is_file():
            ev = evaluate_checkpoint(checkpoint, data_dir, model=MODEL, log_path=out / "logs" / f"{run_name}.heldout.txt")
            heldout, source, heldout_error = ev["value"], "automl evaluate (winner's checkpoint)", ev["error"]
            cell["wall_s"] = round(time.time() - started, 2)
        else:
            heldout_error = heldout_error or "no winner checkpoint to evaluate"
    trials = summary.get("trials") or []
    best = summary.get("best") or {}
    return {
        **cell, "error": None, "best_val": best.get("value"), "winner_trial": best.get("number"),
        "heldout": heldout, "heldout_source": source, "heldout_error": heldout_error,
        "epochs_total": summary.get("epochs_run_total", sum(int(t.get("epochs_run") or 0) for t in trials)),
        "trials_used": summary.get("trials_used", len(trials)), "counts": summary.get("counts"),
        "baseline_val": (summary.get("baseline") or {}).get("value"),
        "baseline_heldout": ((summary.get("evaluation") or {}).get("baseline") or {}).get("mean"),
        "search_duration_s": summary.get("duration_s"),
        "curve": best_so_far_curve(sorted((run_dir / "trials").glob("[0-9]*")), METRIC, "max"),
    }


def _heldout_from_summary(summary: dict[str, Any]) -> tuple[float | None, str | None, str | None]:
    evaluation = summary.get("evaluation") or {}
    value = (evaluation.get("best") or {}).get("mean")
    if isinstance(value, (int, float)):
        return float(value), 'summary["evaluation"]["best"]["mean"]', None
    evaluate = (summary.get("promotion") or {}).get("evaluate") or {}
    value = (evaluate.get("metrics") or {}).get(HELDOUT_METRIC)
    if isinstance(value, (int, float)):
        return float(value), 'summary["promotion"]["evaluate"]', None
    errors = evaluation.get("errors") or ([evaluate.get("reason") or evaluate.get("error")] if evaluate else [])
    return None, None, "; ".join(str(e) for e in errors if e) or None


def run_tao_cell(contestant: dict[str, Any], data_dir: Path, seed: int, args: argparse.Namespace, out: Path,
                 run_name: str, tao_error: str | None) -> dict[str, Any]:
    if tao_error:
        return {"error": tao_error}
    from peers.tao_automl import run_tao_search

    try:
        result = run_tao_search(algorithm=contestant["algorithm"], data_dir=data_dir, out_dir=out / "tao" / run_name,
                                budget=args.budget, seed=seed, model=MODEL, spec_file=args.spec,
                                overrides=args.overrides, venv=Path(args.tao_venv), trainer=args.tao_trainer,
                                invalid=args.tao_invalid, tracking=args.tracking, log=log)
    except Exception as exc:  # noqa: BLE001 - a broken peer is a result, the other contestants go on
        trace = out / "logs" / f"{run_name}.error.txt"
        trace.parent.mkdir(parents=True, exist_ok=True)
        trace.write_text(traceback.format_exc())
        return {"error": f"{type(exc).__name__}: {exc}", "log": str(trace)}
    return {k: v for k, v in result.items() if k != "jobs"} | {"run_dir": result["out_dir"]}


# -- aggregation -----------------------------------------------------------------------------------
def stats(values: Sequence[float | None]) -> dict[str, Any]:
    xs = [float(v) for v in values if isinstance(v, (int, float))]
    if not xs:
        return {"n": 0, "mean": None, "std": None, "values": []}
    return {"n": len(xs), "mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else None,
            "values": xs}


def fmt(s: dict[str, Any], digits: int = 3) -> str:
    if not s["n"]:
        return "—"
    text = f"{s['mean']:.{digits}f}"
    return text + (f" ± {s['std']:.{digits}f}" if s["std"] is not None else "")


def summarize(cells: list[dict[str, Any]], datasets: list[str], contestants: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ds in datasets:
        out[ds] = {}
        for name in contestants:
            mine = [c for c in cells if c["dataset"] == ds and c["contestant"] == name]
            ok = [c for c in mine if not c.get("error")]
            out[ds][name] = {
                "seeds": [c["seed"] for c in ok], "errors": sorted({c["error"] for c in mine if c.get("error")}),
                "heldout": stats([c.get("heldout") for c in ok]), "best_val": stats([c.get("best_val") for c in ok]),
                "epochs": stats([c.get("epochs_total") for c in ok]), "wall_s": stats([c.get("wall_s") for c in ok]),
                "final_best_val": stats([c["curve"][-1][1] if c.get("curve") else None for c in ok]),
                "notes": _notes(ok),
            }
    return out


def _notes(ok: list[dict[str, Any]]) -> list[str]:
    notes: list[str] = []
    for c in ok:
        if c.get("heldout") is None and c.get("heldout_error"):
            notes.append(f"seed {c['seed']}: no held-out value ({c['heldout_error']})")
        if c.get("peer") == "tao_automl":
            notes.append(f"seed {c['seed']}: {c['configs_tried']} configs, {c['jobs_trained']} jobs"
                         f" ({c['jobs_failed']} failed), {c['configs_repaired']} repaired, {c['passes']} pass(es)")
        elif c.get("counts"):
            counts = {k: v for k, v in c["counts"].items() if v}
            notes.append(f"seed {c['seed']}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        notes += [f"seed {c['seed']}: {n}" for n in c.get("notes") or []]
    return notes


def targets(summary: dict[str, Any], cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for ds, rows in summary.items():
        def mean(name: str, key: str) -> float | None:
            row = rows.get(name)
            return row[key]["mean"] if row else None

        for other in ("tao-bayesian", "random"):
            a, b = mean("tpe", "heldout"), mean(other, "heldout")
            va, vb = mean("tpe", "best_val"), mean(other, "best_val")
            status = "n/a" if a is None or b is None else ("MET" if a >= b else "NOT MET")
            out.append({"dataset": ds, "target": f"automl tpe >= {other} (mean held-out P@1)", "status": status,
                        "measured": f"tpe {_f(a)} vs {other} {_f(b)} (best val: {_f(va)} vs {_f(vb)})"})
        random_final, random_epochs = mean("random", "final_best_val"), mean("random", "epochs")
        for mf in MULTI_FIDELITY_TARGET:
            if mf not in rows:
                continue
            goal = f"{mf} reaches random's mean final best val with <= 1/3 of random's mean epochs"
            mine = [c for c in cells if c["dataset"] == ds and c["contestant"] == mf and not c.get("error")]
            if random_final is None or random_epochs is None or not mine:
                out.append({"dataset": ds, "target": goal, "status": "n/a", "measured": "missing runs"})
                continue
            reach = []
            for c in mine:
                hit = next((n for n, v in c.get("curve") or [] if v >= random_final), None)
                reach.append(hit)
            limit = random_epochs / 3
            ok = all(r is not None for r in reach) and statistics.fmean(reach) <= limit
            seeds = ", ".join(f"s{c['seed']}: {r if r is not None else 'never'}" for c, r in zip(mine, reach))
            out.append({"dataset": ds, "target": goal, "status": "MET" if ok else "NOT MET",
                        "measured": f"random's mean final best val {random_final:.4f}, mean epochs {random_epochs:.1f}"
                                    f" (1/3: {limit:.1f}); {mf} epochs to reach it: {seeds}"})
    return out


def _f(v: float | None) -> str:
    return "—" if v is None else f"{v:.4f}"


def write_table(path: Path, summary: dict[str, Any], target_rows: list[dict[str, Any]], settings: dict[str, Any],
                tao_error: str | None) -> str:
    lines = [f"# Search quality, {settings['date']}", "",
             f"Budget {settings['budget']} trials, seeds {settings['seeds']}, model {MODEL}, one trial at a time; "
             f"fixed overrides: {' '.join(settings['overrides']) or '(none)'}; spec: {settings['spec'] or 'template'}; "
             f"tracking {'on' if settings['tracking'] else 'off'}. Mean ± std over seeds.", ""]
    if tao_error:
        lines += [f"**TAO AutoML could not run:** {tao_error}", ""]
    for ds, rows in summary.items():
        lines += [f"## {ds}", "",
                  "| contestant | winner's held-out P@1 | best val P@1 | epochs consumed | wall s | seeds | notes |",
                  "|---|---|---|---|---|---|---|"]
        for name, row in rows.items():
            notes = "; ".join(row["errors"] + row["notes"]).replace("|", "/")
            lines.append(f"| {CONTESTANTS[name]['label']} | {fmt(row['heldout'])} | {fmt(row['best_val'])} | "
                         f"{fmt(row['epochs'], 1)} | {fmt(row['wall_s'], 0)} | {len(row['seeds'])} | {notes} |")
        lines.append("")
    lines += ["## Targets", "", "| dataset | target | status | measured |", "|---|---|---|---|"]
    lines += [f"| {t['dataset']} | {t['target']} | {t['status']} | {t['measured']} |" for t in target_rows]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def plot(path: Path, cells: list[dict[str, Any]], datasets: list[str], contestants: list[str]) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"no plot: {exc}"
    fig, axes = plt.subplots(1, len(datasets), figsize=(7 * len(datasets), 5), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, ds in zip(axes[0], datasets):
        for i, name in enumerate(contestants):
            first = True
            for c in cells:
                if c["dataset"] != ds or c["contestant"] != name or not c.get("curve"):
                    continue
                xs, ys = zip(*c["curve"])
                ax.step(xs, ys, where="post", color=colors[i % len(colors)], alpha=0.8,
                        label=CONTESTANTS[name]["label"] if first else None)
                first = False
        ax.set_title(f"{ds}: best-so-far validation P@1")
        ax.set_xlabel("epochs consumed")
        ax.set_ylabel(METRIC)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


# -- main ------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=None, help="trials per search (default 20; --quick: 6)")
    parser.add_argument("--seeds", type=int, default=None, help="search seeds 0..N-1 (default 3; --quick: 1)")
    parser.add_argument("--datasets", default=None, help="comma list of glyphs, fashion (default both; --quick: glyphs)")
    parser.add_argument("--contestants", default=None,
                        help=f"comma list of {', '.join(CONTESTANTS)} or 'all' (default {','.join(DEFAULT_CONTESTANTS)})")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"output folder (default {DEFAULT_OUT.relative_to(REPO)})")
    parser.add_argument("--quick", action="store_true", help="budget 6, 1 seed, glyphs only, all default contestants")
    parser.add_argument("-e", "--spec", default=None, help="spec YAML every contestant starts from (automl run -e)")
    parser.add_argument("--tracking", action="store_true", help="MLflow tracking on (default off: see the docstring)")
    parser.add_argument("--redo", action="store_true", help="re-measure cells already in OUT/cells")
    parser.add_argument("--search-timeout", type=float, default=None, help="seconds after which one automl search is killed")
    parser.add_argument("--tao-venv", default=str(REPO / "benchmarks" / ".venv-tao"), help="TAO AutoML's venv")
    parser.add_argument("--tao-trainer", choices=("worker", "cli"), default="worker",
                        help="how TAO's jobs train: one long-lived trainer process (default) or `automl train` per job")
    parser.add_argument("--tao-invalid", choices=("repair", "fail"), default="repair",
                        help="TAO configs breaking a constraint it cannot express: repair (default) or train as is")
    parser.add_argument("--data-options", default=None, help=argparse.SUPPRESS)  # e.g. classes=12,per_class=8 (tests)
    parser.add_argument("overrides", nargs="*", help="fixed spec overrides KEY=VALUE for every contestant")
    args = parser.parse_args(argv)
    args.budget = args.budget or (6 if args.quick else 20)
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.datasets = [d.strip() for d in (args.datasets or ("glyphs" if args.quick else "glyphs,fashion")).split(",") if d.strip()]
    names = args.contestants or ",".join(DEFAULT_CONTESTANTS)
    args.contestants = list(CONTESTANTS) if names == "all" else [c.strip() for c in names.split(",") if c.strip()]
    for d in args.datasets:
        if d not in DATASETS:
            parser.error(f"--datasets: unknown '{d}'; allowed: {', '.join(DATASETS)}")
    for c in args.contestants:
        if c not in CONTESTANTS:
            parser.error(f"--contestants: unknown '{c}'; allowed: {', '.join(CONTESTANTS)}, all")
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        parser.error(f"overrides must be KEY=VALUE, got {bad[0]!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    (out / "cells").mkdir(parents=True, exist_ok=True)
    settings = {"date": dt.date.today().isoformat(), "budget": args.budget, "seeds": list(range(args.seeds)),
                "datasets": args.datasets, "contestants": args.contestants, "overrides": args.overrides,
                "spec": args.spec, "tracking": args.tracking, "data_options": args.data_options,
                "tao_trainer": args.tao_trainer, "tao_invalid": args.tao_invalid,
                "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])}
    signature = {k: settings[k] for k in ("budget", "overrides", "spec", "tracking", "data_options", "tao_trainer",
                                          "tao_invalid")}

    tao_error = None
    if any(CONTESTANTS[c]["kind"] == "tao" for c in args.contestants):
        from peers.tao_automl import TaoUnavailable, ensure_tao_venv

        try:
            ensure_tao_venv(Path(args.tao_venv), log=log)
        except TaoUnavailable as exc:
            tao_error = f"TAO AutoML unavailable: {exc}"
            log(tao_error)

    data = {ds: make_dataset(ds, out, data_options(args.data_options)) for ds in args.datasets}
    cells: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        for ds in args.datasets:
            for name in args.contestants:
                run_name = f"{ds}-{name}-s{seed}"
                path = out / "cells" / f"{run_name}.json"
                if path.is_file() and not args.redo:
                    cached = json.loads(path.read_text())
                    if cached.get("signature") == signature and not cached.get("error"):  # errors are retried
                        log(f"{run_name}: reusing {path.name}")
                        cells.append(cached)
                        continue
                contestant = CONTESTANTS[name]
                log(f"{run_name}: {contestant['label']}, budget {args.budget}")
                started = time.time()
                if contestant["kind"] == "tao":
                    cell = run_tao_cell(contestant, data[ds], seed, args, out, run_name, tao_error)
                else:
                    cell = run_automl_cell(contestant, data[ds], seed, args, out, run_name)
                cell = {**cell, "dataset": ds, "contestant": name, "seed": seed, "budget": args.budget,
                        "signature": signature}
                cell.setdefault("wall_s", round(time.time() - started, 2))
                path.write_text(json.dumps(cell, indent=1, default=str))
                cells.append(cell)
                if cell.get("error"):
                    log(f"{run_name}: ERROR {cell['error']}")
                else:
                    log(f"{run_name}: held-out P@1 {_f(cell.get('heldout'))}, best val {_f(cell.get('best_val'))}, "
                        f"{cell.get('epochs_total')} epochs, {cell['wall_s']:.0f} s")

    summary = summarize(cells, args.datasets, args.contestants)
    target_rows = targets(summary, cells)
    table = write_table(out / "table.md", summary, target_rows, settings, tao_error)
    plot_error = plot(out / "best_so_far.png", cells, args.datasets, args.contestants)
    (out / "results.json").write_text(json.dumps({"settings": settings, "tao_error": tao_error, "summary": summary,
                                                  "targets": target_rows, "cells": cells}, indent=1, default=str))
    print(table)
    print("Targets (measured vs target):")
    for t in target_rows:
        print(f"  [{t['status']}] {t['dataset']}: {t['target']} -- {t['measured']}")
    if tao_error:
        print(f"\n{tao_error}")
    print(f"\nwritten: {out / 'table.md'}, {out / 'results.json'}"
          + (f", {out / 'best_so_far.png'}" if plot_error is None else f" ({plot_error})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
