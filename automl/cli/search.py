"""``automl run`` (a search, or plain training with ``--automl off``), ``automl status NAME`` and
``automl best NAME``."""

from __future__ import annotations

import json
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from automl.trials.records import Progress, SearchSetup, TrialRecord, TrialState
from automl.cli import app
from automl.errors import AutomlError
from automl.trials import rundir
from automl.trials.outcome import best_so_far
from automl.trials.algorithms import ALGORITHMS, COMMON_SETTINGS, REGISTRY, SETTINGS, settings_help


class LiveProgress(Progress):
    """A rich live panel on stderr: trials done/running/pruned/failed, best so far, ETA."""

    def __init__(self, console: Console, enabled: bool = True):
        self.console = console
        self.enabled = enabled and console.is_terminal
        self.lock = threading.Lock()
        self.live: Live | None = None
        self.records: dict[int, TrialRecord] = {}
        self.running: dict[int, dict[str, Any]] = {}
        self.notes: list[str] = []
        #: every message shown (the summary does not repeat them)
        self.shown: set[str] = set()
        self.setup: SearchSetup | None = None
        self.started = time.time()

    def start(self, setup: SearchSetup, done: list[TrialRecord]) -> None:
        self.setup = setup
        self.records = {r.number: r for r in done}
        if self.enabled:
            self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
            self.live.start()

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._render())

    def trial_started(self, number: int, params: dict[str, Any], slot: int) -> None:
        with self.lock:
            self.running[number] = {"slot": slot, "epoch": None, "value": None, "since": time.time()}
            self._refresh()

    def trial_epoch(self, number: int, epoch: int, value: float | None) -> None:
        with self.lock:
            if number in self.running:
                self.running[number].update(epoch=epoch, value=value)
            self._refresh()

    def trial_finished(self, record: TrialRecord) -> None:
        with self.lock:
            self.running.pop(record.number, None)
            self.records[record.number] = record
            if not self.enabled:
                value = "-" if record.value is None else f"{record.value:.4g}"
                reason = f" ({record.reason})" if record.reason else ""
                self.console.print(escape(f"trial {record.number}: {record.state} {value}{reason}"))
            self._refresh()

    def message(self, text: str) -> None:
        with self.lock:
            self.notes = (self.notes + [text])[-3:]
            self.shown.add(text)
            if not self.enabled:
                self.console.print(escape(text))
            self._refresh()

    def stop(self) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.stop()
            self.live = None

    def _render(self):
        setup = self.setup
        recs = list(self.records.values())
        count = {s: sum(1 for r in recs if r.state == s) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.PAUSED, TrialState.FAILED)}
        best = best_so_far(recs, setup.monitor) if setup else None
        elapsed = time.time() - self.started
        finished = sum(count.values())
        budget = setup.budget_trials if setup else 0
        eta = ""
        if finished and budget > finished:
            per = elapsed / finished
            eta = f"  ETA ~{per * (budget - finished) / max(1, len(setup.slots)):.0f}s"
        head = Text.assemble(
            (f"{setup.name if setup else ''}  ", "bold"),
            f"{finished}/{budget} done  ", (f"{len(self.running)} running  ", "cyan"),
            (f"{count[TrialState.COMPLETE]} complete  ", "green"), (f"{count[TrialState.PRUNED]} pruned  ", "yellow"),
            (f"{count[TrialState.PAUSED]} paused  ", "blue"), (f"{count[TrialState.FAILED]} failed", "red"),
            f"  elapsed {elapsed:.0f}s{eta}")
        best_line = Text(f"best so far: trial {best.number}  {setup.monitor.metric} = {best.value:.4g}"
                         if best else "best so far: -")
        table = Table(show_header=True, header_style="bold", box=None)
        for col in ("trial", "slot", "epoch", "value", "for"):
            table.add_column(col)
        for number, info in sorted(self.running.items()):
            table.add_row(str(number), str(info["slot"]), "-" if info["epoch"] is None else str(info["epoch"]),
                          "-" if info["value"] is None else f"{info['value']:.4g}", f"{time.time() - info['since']:.0f}s")
        return Group(head, best_line, table, *[Text(n, style="dim") for n in self.notes])


def _settings(items: list[str]) -> dict[str, Any]:
    from automl.spec import parse_value

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise AutomlError(f"--setting '{item}': expected KEY=VALUE, e.g. reduction_factor=3")
        out[key.strip()] = parse_value(value.strip())
    return out


@app.command("run", context_settings={"allow_extra_args": False})
def run(
    overrides: Optional[list[str]] = typer.Argument(None, help="Spec overrides KEY=VALUE (fixed, not searched)."),
    model: str = typer.Option(..., "--model", "-m", help="Registered trainer (see `automl models`)."),
    budget: Optional[int] = typer.Option(None, "--budget", "-n", help="Trials to run, trial 0 (baseline) included. Default 10."),
    spec: Optional[str] = typer.Option(None, "--spec", "-e", help="Spec YAML (TAO layout) every trial starts from."),
    algorithm: Optional[str] = typer.Option(None, "--algorithm", "-a",
                                            help=f"{', '.join(ALGORITHMS)} (TAO: bayesian ...); `automl algorithms` lists them."),
    setting: Optional[list[str]] = typer.Option(None, "--setting", help=f"Algorithm setting KEY=VALUE. {settings_help()}."),
    objectives: Optional[str] = typer.Option(None, "--objectives", help="'metric:max,latency_ms:min' (multi-objective: nsga2)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="Trials at a time (default: one per GPU slot; on CPU one per core, at most 4)."),
    gpus: Optional[str] = typer.Option(None, "--gpus", help="GPU indices, e.g. 0,1,2,3 (default: all; 'none' for CPU)."),
    gpus_per_trial: int = typer.Option(1, "--gpus-per-trial", help="GPUs per trial (the trainer's DDP)."),
    trials_per_gpu: int = typer.Option(1, "--trials-per-gpu", help="Trials packed on one GPU."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Study storage URL (default: journal file in the run folder)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Sampler seed."),
    name: Optional[str] = typer.Option(None, "--name", help="Search name (folder under --output)."),
    output: str = typer.Option("runs", "--output", "-o", help="Where run folders go."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset folder made by `automl data make` (default: demo data)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the search --name after a stop or crash."),
    as_json: bool = typer.Option(False, "--json", help="Last stdout line: one JSON summary."),
    automl: str = typer.Option("on", "--automl", help="'off' = plain training with the spec as given."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help="Seconds after which no new trial starts."),
    trial_timeout: Optional[float] = typer.Option(None, "--trial-timeout", help="Seconds after which a trial is killed (failed)."),
    max_failures: int = typer.Option(5, "--max-failures", help="Stop after this many failed trials in a row (0: never)."),
    reeval_top: str = typer.Option("auto", "--reeval-top",
                                   help="Re-train the top K and the baseline with more seeds, choose by the mean and judge "
                                        "the gain against the seed noise; auto: 2 from --budget 10 on, else 0 (off)."),
    reeval_seeds: int = typer.Option(2, "--reeval-seeds", help="Extra seeds per re-evaluated trial."),
    warm_start: Optional[str] = typer.Option(None, "--warm-start", help="Seed with the best configs of an earlier run (name or path)."),
    keep_checkpoints: bool = typer.Option(False, "--keep-checkpoints", help="Keep losing trials' checkpoints."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking server (default: a store in the run folder)."),
    tracking: bool = typer.Option(True, "--tracking/--no-tracking", help="Record the search in MLflow (default on)."),
    force_champion: bool = typer.Option(False, "--force-champion", help="The winner takes the registry alias 'champion' even when it does not beat the current champion (else it becomes 'challenger')."),
    backend: Optional[str] = typer.Option(None, "--backend", help="optuna (embedded, the default) or ray; --resume "
                                                                "keeps the search's own backend and --address."),
    address: Optional[str] = typer.Option(None, "--address", help="--backend ray: cluster address, auto or HOST:PORT (default: a private local Ray)."),
    no_promote: bool = typer.Option(False, "--no-promote", help="Skip evaluate/export/TensorRT of the winner."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the command (spec, overrides, settings, storage, "
                                                          "backend) and say what would run; make no run folder."),
    space_source: str = typer.Option("project", "--space", help="project: the schema's selection; tao: exactly what "
                                     "TAO's AutoML searches (`automl space show` marks both)."),
) -> None:
    """Search hyperparameters of a model: trial 0 is its defaults, the best checkpoint is promoted."""
    from automl.search.controller import prepare_backend, resolve_setup, run_search

    console = Console(stderr=True)
    command = "automl " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    reeval_k = _reeval_top(reeval_top)
    if automl.lower() in ("off", "false", "no", "0"):
        return _train_plainly(model, spec, list(overrides or []), output, name, data, as_json)
    if automl.lower() not in ("on", "true", "yes", "1"):
        raise AutomlError(f"--automl '{automl}': allowed: on, off")
    setup = resolve_setup(model=model, budget=budget, spec_file=spec, overrides=list(overrides or []),
                          algorithm=algorithm, workers=workers, gpus=gpus, gpus_per_trial=gpus_per_trial,
                          trials_per_gpu=trials_per_gpu, storage=storage, seed=seed, name=name, output=output,
                          data=data, resume=resume, time_budget=time_budget, trial_timeout=trial_timeout,
                          objectives=objectives, warm_start=warm_start, keep_checkpoints=keep_checkpoints,
                          max_failures=max_failures, settings=_settings(list(setting or [])), command=command,
                          space_source=space_source)
    backend_options = {"address": address} if address else None
    prepared = prepare_backend(setup, backend, backend_options)  # refusals before the folder exists
    console.print(f"{'dry run (nothing written): ' if dry_run else ''}search [bold]{setup.name}[/] -> {setup.run_dir}  ({setup.algorithm}, budget {setup.budget_trials}, "
                  f"{setup.workers} worker(s){', GPUs ' + ','.join(map(str, setup.gpus)) if setup.gpus else ', CPU'})")
    if dry_run:
        if as_json:
            print(json.dumps({"dry_run": True, **setup.to_json()}, default=str))
        return
    progress = LiveProgress(console)
    summary = run_search(setup, prepared=prepared, progress=progress, reeval_top=reeval_k, reeval_seeds=reeval_seeds,
                         promote_best=not no_promote, tracking_uri=tracking_uri, tracking=tracking,
                         force_champion=force_champion)
    _print_summary(summary, console, shown=progress.shown)
    if as_json:
        print(json.dumps(summary, default=str))
    if summary.get("exit_code"):
        sys.exit(summary["exit_code"])  # the reason is in the summary printed above and in --json


def _train_plainly(model: str, spec: str | None, overrides: list[str], output: str, name: str | None,
                   data: str | None, as_json: bool) -> None:
    """``--automl off``: plain training, checked and trained as ``automl train`` does."""
    from automl.cli.actions import train_plain
    from automl.plugins import get_trainer
    from automl.search.controller import plain_training_spec
    from automl.spec import parse_overrides
    from automl.training.devices import is_launched_worker

    spec_dict, source, results = plain_training_spec(model=model, spec_file=spec, overrides=overrides,
                                                     output=output, name=name, data=data)
    out = train_plain(get_trainer(model), spec_dict, source, results, as_json=as_json,
                      overrides=parse_overrides(overrides))
    if not as_json and not is_launched_worker():
        print(f"trained: {out['results_dir']}")


def _reeval_top(text: str) -> int | str:
    """``--reeval-top``: ``auto`` or a count (checked before the search starts, not after it)."""
    text = text.strip().lower()
    if text == "auto":
        return "auto"
    if not text.isdigit():
        raise AutomlError(f"--reeval-top '{text}': allowed: auto or a count (0 turns re-evaluation off)")
    return int(text)


def _fmt(value: Any) -> str:
    return "-" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))


def _mean_std(block: dict[str, Any] | None) -> str:
    if not block or block.get("mean") is None:
        return "-"
    return f"{block['mean']:.3f}" + (f" ± {block['std']:.3f}" if block.get("std") is not None else "")


def evaluation_line(ev: dict[str, Any]) -> str:
    """``held-out (...) METRIC: baseline 0.412 ± 0.015 -> winner 0.561 ± 0.012 (+0.149, noise 0.014): win``"""
    gain = "-" if ev.get("gain") is None else f"{ev['gain']:+.3f}"
    noise = "-" if ev.get("noise_std") is None else f"{ev['noise_std']:.3f}"
    return (f"{ev['split']} {ev['metric']}: baseline {_mean_std(ev.get('baseline'))} -> winner {_mean_std(ev.get('best'))} "
            f"({gain}, noise {noise}): {ev['verdict']}")


def _print_summary(summary: dict[str, Any], console: Console, shown: set[str] = frozenset()) -> None:
    best, base = summary.get("best"), summary.get("baseline")
    if summary.get("stopped_reason") and summary["stopped_reason"] not in shown:
        console.print(f"[yellow]{escape(summary['stopped_reason'])}[/]")
    c = summary["counts"]
    console.print(f"{summary['trials_used']} trials: {c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed; "
                  f"{summary['epochs_run_total']} epochs, {summary['gpu_hours']:.3g} GPU-hours")
    if base:
        console.print(f"baseline (trial 0): {summary['monitor']} = {_fmt(base['value'])}")
    if best:
        gain = summary.get("improvement_over_baseline")
        # a validation gain is no win by itself: name the verdict of the seed-noise check next to it
        verdict = (summary.get("evaluation") or {}).get("verdict", "unknown")
        console.print(f"best: trial {best['number']} epoch {best['best_epoch']}: {summary['monitor']} = {_fmt(best['value'])}"
                      + (f" ({gain:+.4g} vs baseline; verdict: {verdict})" if gain is not None else ""))
        if summary.get("evaluation"):
            console.print(escape(evaluation_line(summary["evaluation"])))
            for error in summary["evaluation"].get("errors") or []:
                console.print(f"  [yellow]not evaluated: {escape(error)}[/]")
        promo = summary.get("promotion") or {}
        for step in ("checkpoint", "evaluate", "export", "tensorrt"):
            info = promo.get(step)
            if info:
                console.print(f"  {step}: {info.get('status')}" + (f" ({escape(str(info.get('reason')))})" if info.get("reason") else ""))
        if summary.get("exit_code"):
            console.print(f"[red]{escape(str(summary.get('exit_reason')))}[/]")
    else:
        console.print("[red]no trial produced a value[/]")


def _trials_table(run_dir: Path) -> Table:
    header = rundir.read_search(run_dir)
    records = rundir.read_trials(run_dir)
    table = Table(title=f"{header['name']} ({header['model']}, {header['algorithm']}, budget {header['budget_trials']})")
    names = sorted({k for r in records for k in r.params})
    for col in ("trial", "state", "value", "best epoch", "epochs", "time s"):
        table.add_column(col, no_wrap=True)
    for col in (*[n.rsplit(".", 1)[-1] for n in names], "reason"):
        table.add_column(col, overflow="fold")
    style = {TrialState.COMPLETE: "green", TrialState.PRUNED: "yellow", TrialState.FAILED: "red", TrialState.PAUSED: "blue", TrialState.RUNNING: "cyan"}
    for r in records:
        table.add_row(str(r.number), Text(r.state, style=style.get(r.state, "")), _fmt(r.value), _fmt(r.best_epoch),
                      str(r.epochs_done), f"{r.duration_s:.1f}", *[_fmt(r.params.get(n)) for n in names], r.reason or "")
    return table


@app.command("algorithms")
def algorithms_command(as_json: bool = typer.Option(False, "--json", help="The registry as JSON.")) -> None:
    """The search algorithms: TAO aliases, backends, objectives and settings with their defaults."""
    rows = [{"name": a.name, "help": a.help, "fidelity": a.fidelity, "backends": list(a.backends),
             "multi_objective": a.multi_objective, "aliases": list(a.aliases),
             "settings": {n: {"type": SETTINGS[n].type.__name__, "default": SETTINGS[n].default_text(),
                              "help": SETTINGS[n].help} for n in a.settings}} for a in REGISTRY.values()]
    if as_json:
        common = {n: {"type": c.type.__name__, "default": c.default_text(), "help": c.help}
                  for n, c in COMMON_SETTINGS.items()}
        print(json.dumps({"algorithms": rows, "common_settings": common}))
        return
    table = Table(title="--algorithm (settings: --setting KEY=VALUE)")
    for col in ("name", "backends", "objectives", "aliases", "settings (default)"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(row["name"], ", ".join(row["backends"]), "several" if row["multi_objective"] else "one",
                      ", ".join(row["aliases"]),
                      ", ".join(f"{n}={v['default']}" for n, v in row["settings"].items()))
    Console().print(table)
    Console().print(f"every algorithm: {', '.join(f'{n}={c.default_text()}' for n, c in COMMON_SETTINGS.items())}")


@app.command("status")
def status(
    name: str = typer.Argument(..., help="Search name (under --output) or run folder."),
    output: str = typer.Option("runs", "--output", "-o"),
    watch: bool = typer.Option(False, "--watch", help="Refresh live until the search ends (Ctrl-C to leave)."),
    interval: float = typer.Option(2.0, "--interval"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show the trials table of a search (live with --watch)."""
    run_dir = rundir.find_run(name, output)
    if as_json:
        print(json.dumps({"name": name, "run_dir": str(run_dir),
                          "trials": [r.to_json() for r in rundir.read_trials(run_dir)]}, default=str))
        return
    console = Console()
    if not watch:
        console.print(_trials_table(run_dir))
        return
    with Live(_trials_table(run_dir), console=console, refresh_per_second=1) as live:
        try:
            while not (run_dir / "best" / "summary.json").exists():
                time.sleep(interval)
                live.update(_trials_table(run_dir))
            live.update(_trials_table(run_dir))
        except KeyboardInterrupt:
            pass


@app.command("best")
def best(
    name: str = typer.Argument(..., help="Search name (under --output) or run folder."),
    output: str = typer.Option("runs", "--output", "-o"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Print the winner of a finished search: its values, config, checkpoint and promotion results."""
    run_dir = rundir.find_run(name, output)
    path = run_dir / "best" / "summary.json"
    if not path.is_file():
        raise AutomlError(f"search '{name}' has not finished (no {path}); see `automl status {name}`")
    summary = rundir.read_json(path)
    if as_json:
        print(json.dumps({k: summary.get(k) for k in ("name", "monitor", "mode", "baseline", "best", "improvement_over_baseline",
                                                        "evaluation", "promotion", "pareto_front")}, default=str))
        return
    console = Console()
    b = summary.get("best")
    if not b:
        raise AutomlError(f"search '{name}' has no best trial (every trial failed?)")
    console.print(f"[bold]trial {b['number']}[/] (epoch {b['best_epoch']}): {summary['monitor']} = {_fmt(b['value'])}"
                  f"  baseline {_fmt((summary.get('baseline') or {}).get('value'))}")
    if summary.get("evaluation"):
        console.print(escape(evaluation_line(summary["evaluation"])))
    for key, value in sorted((b.get("params") or {}).items()):
        console.print(f"  {key} = {value}")
    console.print(f"checkpoint: {run_dir / 'best' / 'model.ckpt'}")
    for step, info in (summary.get("promotion") or {}).items():
        if isinstance(info, dict):
            console.print(f"{step}: {info.get('status')}" + (f" ({escape(str(info['reason']))})" if info.get("reason") else ""))
