"""The search's summary table and plots, rebuilt from the run folder.

The run folder is the record (``trials/<n>/config.json``, ``result.json``, ``metrics.jsonl``), so the
plots look the same for either backend and after a resume. Optuna's plots are drawn on an in-memory
study rebuilt from those records (Ray Tune searches get them too) as HTML with plotly.js inlined, so
MLflow's artifact preview draws them offline (a GPU cluster without internet); learning curves and the
optimisation history are also drawn with matplotlib as PNG. The PNG's best-so-far curve is the
parent run's ``best_so_far`` metric: running best of the completed values, in the order trials finished.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automl.reporting import clean_float, read_metrics
from automl.trials import rundir

log = logging.getLogger(__name__)

_OPTUNA_STATES = {"complete": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL"}


@dataclass
class TrialRow:
    number: int
    state: str
    params: dict[str, Any] = field(default_factory=dict)
    value: float | None = None
    result: dict[str, Any] = field(default_factory=dict)
    curve: dict[int, float] = field(default_factory=dict)  # epoch -> monitored metric
    finished_at: float | None = None  # when result.json was written (None: not finished)


def collect_trials(run_dir: Path, monitor: str | None) -> list[TrialRow]:
    rows = []
    root = rundir.trials_root(Path(run_dir))
    if not root.is_dir():
        return rows
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit()):
        result: dict[str, Any] = {}
        params: dict[str, Any] = {}
        finished_at = None
        try:
            if (folder / rundir.RESULT).is_file():
                finished_at = (folder / rundir.RESULT).stat().st_mtime
                result = json.loads((folder / rundir.RESULT).read_text())
            if (folder / rundir.CONFIG).is_file():
                params = json.loads((folder / rundir.CONFIG).read_text())
        except json.JSONDecodeError:
            pass
        params = result.get("params") or params
        curve = {}
        for record in read_metrics(folder):
            value = clean_float(record.get("metrics", {}).get(monitor)) if monitor else None
            if value is not None:
                curve[int(record["epoch"])] = value
        rows.append(TrialRow(number=int(folder.name), state=result.get("state", "running"), params=params,
                             value=clean_float(result.get("value")), result=result, curve=curve,
                             finished_at=finished_at))
    return rows


def write_summary_csv(rows: list[TrialRow], out_dir: Path) -> Path:
    """``summary.csv`` of the finished trials, the run folder's own format (one table, one format)."""
    from automl.trials.records import TrialRecord

    records = []
    for r in rows:
        if r.finished_at is None:
            continue
        try:
            records.append(TrialRecord.from_json({**r.result, "number": r.number, "state": r.state, "params": r.params}))
        except (TypeError, ValueError):
            log.debug("summary: trial %s skipped (unreadable result.json)", r.number)
    return rundir.write_summary_csv(out_dir, records)


def best_curve(rows: list[TrialRow], mode: str) -> list[tuple[int, float, float]]:
    """(trials finished, that trial's value, best so far) at each completed trial, in finishing order."""
    from automl.trials.outcome import loss

    finished = sorted((r for r in rows if r.finished_at is not None), key=lambda r: (r.finished_at, r.number))
    out, best = [], None
    for count, r in enumerate(finished, start=1):
        if r.state == "complete" and r.value is not None:
            best = r.value if best is None or loss(mode, r.value) < loss(mode, best) else best
            out.append((count, r.value, best))
    return out


def _distributions(rows: list[TrialRow]) -> dict[str, Any]:
    """Distributions inferred from the sampled values (enough for plotting: ranges and choices)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    values: dict[str, list[Any]] = {}
    for r in rows:
        for k, v in r.params.items():
            values.setdefault(k, []).append(v)
    out = {}
    for name, seen in values.items():
        if all(isinstance(v, bool) or v is None or isinstance(v, str) for v in seen) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen):
            choices = sorted({json.dumps(v) if not isinstance(v, (str, int, float, bool)) or v is None else v
                              for v in seen}, key=str)
            out[name] = CategoricalDistribution(choices)
        elif all(isinstance(v, int) for v in seen):
            low, high = min(seen), max(seen)
            out[name] = IntDistribution(low, high if high > low else low + 1)
        else:
            low, high = float(min(seen)), float(max(seen))
            log_scale = low > 0 and high / low >= 100
            out[name] = FloatDistribution(low, high if high > low else low + abs(low) * 1e-6 + 1e-12, log=log_scale)
    return out


def rebuild_study(rows: list[TrialRow], direction: str):
    import optuna

    dists = _distributions(rows)
    study = optuna.create_study(direction=direction)
    for r in rows:
        state = _OPTUNA_STATES.get(r.state)
        if state is None or (state == "COMPLETE" and r.value is None):
            continue
        params = {}
        for k, v in r.params.items():
            if isinstance(dists[k], optuna.distributions.CategoricalDistribution) and v not in dists[k].choices:
                v = json.dumps(v)
            params[k] = v
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions={k: dists[k] for k in params},
            value=r.value if state == "COMPLETE" else None,
            state=getattr(optuna.trial.TrialState, state),
            intermediate_values=r.curve,
        ))
    return study


def render(run_dir: Path, out_dir: Path, monitor: str | None, mode: str = "max", html: bool = True) -> list[Path]:
    """Write summary.csv and the plots into ``out_dir``; a plot that cannot be drawn (too few trials)
    is left out. ``html``: also the Optuna plots (each ~4 MB with plotly.js inlined, so a search draws
    them at its end, not at every refresh). Returns the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = collect_trials(run_dir, monitor)
    written = [write_summary_csv(rows, out_dir)]
    if not rows:
        return written
    written += _matplotlib_plots(rows, out_dir, monitor, mode)
    if html:
        written += _optuna_plots(rows, out_dir, "maximize" if mode == "max" else "minimize")
    return written


def _matplotlib_plots(rows: list[TrialRow], out_dir: Path, monitor: str | None, mode: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # no pyplot: no global figure state from a background thread
    from matplotlib.ticker import MaxNLocator

    written = []
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for r in rows:
        if r.curve:
            epochs = sorted(r.curve)
            ax.plot(epochs, [r.curve[e] for e in epochs], marker=".", label=f"{r.number} ({r.state})")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(monitor or "metric")
    ax.set_title("learning curves")
    if len(rows) <= 20 and any(r.curve for r in rows):
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out_dir / "learning_curves.png", dpi=100)
    written.append(out_dir / "learning_curves.png")

    curve = best_curve(rows, mode)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    if curve:
        ax.scatter([c[0] for c in curve], [c[1] for c in curve], label="completed trial's value")
        ax.step([c[0] for c in curve], [c[2] for c in curve], where="post", color="tab:red", label="best so far")
        ax.legend()
    ax.set_xlabel("trials finished")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(monitor or "value")
    ax.set_title("optimisation history")
    fig.tight_layout()
    fig.savefig(out_dir / "optimization_history.png", dpi=100)
    written.append(out_dir / "optimization_history.png")
    return written


def _optuna_plots(rows: list[TrialRow], out_dir: Path, direction: str) -> list[Path]:
    import optuna
    from optuna import visualization as vis

    written = []
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # "no completed trials" is not the user's problem
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = rebuild_study(rows, direction)
            plots = {
                "optimization_history": vis.plot_optimization_history,
                "parallel_coordinate": vis.plot_parallel_coordinate,
                "param_importances": vis.plot_param_importances,
                "intermediate_values": vis.plot_intermediate_values,
            }
            for name, plot in plots.items():
                try:
                    fig = plot(study)
                except Exception as exc:  # noqa: BLE001 - e.g. importances need two finished trials
                    log.debug("plot %s skipped: %s", name, exc)
                    continue
                path = out_dir / f"{name}.html"
                # plotly.js inlined: MLflow previews an HTML artifact as a document of its own (no
                # relative links), and a CDN is out of reach on most GPU clusters.
                fig.write_html(path, include_plotlyjs=True, full_html=True)
                written.append(path)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return written


def evaluation_plot(evaluation: dict[str, Any], path: Path) -> Path | None:
    """Baseline against winner on the evaluation split (held-out when the trainer has one): each one's
    mean as a bar, its seeds as dots. None when either is missing."""
    blocks = [(label, evaluation.get(key) or {}) for label, key in (("baseline", "baseline"), ("winner", "best"))]
    if any(not block.get("values") for _, block in blocks):
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4.5))
    ax = fig.add_subplot()
    for x, (label, block) in enumerate(blocks):
        values = [v for v in block["values"] if clean_float(v) is not None]
        ax.bar(x, block.get("mean") if block.get("mean") is not None else sum(values) / len(values),
               color="tab:gray" if x == 0 else "tab:green", alpha=0.6)
        ax.scatter([x] * len(values), values, color="black", zorder=3, s=12)
    ax.set_xticks([0, 1], [f"baseline (trial {blocks[0][1].get('number')})",
                           f"winner (trial {blocks[1][1].get('number')})"])
    ax.set_ylabel(str(evaluation.get("metric") or "value"))
    ax.set_title(f"{evaluation.get('split') or 'evaluation'}: {evaluation.get('verdict') or ''}"[:80])
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return Path(path)
