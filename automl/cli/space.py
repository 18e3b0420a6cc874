"""``automl space``: show and sample the search space compiled from a train schema."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

import typer

from automl.cli import app
from automl.errors import AutomlError

space_app = typer.Typer(name="space", help="Compile a train schema into a search space: show it, sample it.",
                        no_args_is_help=True)
app.add_typer(space_app, name="space")

BACKENDS = ("optuna", "ray", "numpy")
LOG_RULE = ("log-scale rule: a number with default d > 0 whose schema range [lo, hi] spans >= 100x (lo <= 0 counts "
            "as infinite) is searched log-uniformly on [max(lo, d/100), min(hi, 100 d)], unless lo <= 0 and "
            "d >= 0.05 hi (probabilities, momenta, factors stay linear); plain ints with a finite maximum alike; an "
            "Infinity maximum on an int searches [min, max(4 d, 2 min, 16)]. Overrides and an explicit \"scale\" win.")


def _schema_path(model: str | None, schema: Path | None) -> Path:
    if (model is None) == (schema is None):
        raise AutomlError("give exactly one of --model NAME or --schema FILE")
    if schema is not None:
        return schema
    from automl import plugins

    return Path(plugins.get_trainer(model).schema_path())


def _compile(model: str | None, schema: Path | None, include: str | None, space_source: str = "project"):
    """The compiled space and TAO's own selection for the schema (None when it records none)."""
    from automl.space import compile_space, load_schema
    from automl.space.selection import TAO_SELECTION_KEY, tao_selection

    if space_source not in ("project", "tao"):
        raise AutomlError(f"--space '{space_source}': allowed: project, tao")
    loaded = load_schema(_schema_path(model, schema))
    tao = tao_selection(loaded) if space_source == "tao" or TAO_SELECTION_KEY in loaded.data else None
    names = [s.strip() for s in include.split(",") if s.strip()] if include else None
    if space_source == "tao":
        if names:
            raise AutomlError("--space tao and --include both choose the searched names; give one of them")
        names = tao
    return compile_space(loaded, include=names), tao


@space_app.command("show")
def show(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="A registered trainer (uses its schema)."),
    schema: Optional[Path] = typer.Option(None, "--schema", "-s", help="A train schema JSON file."),
    include: Optional[str] = typer.Option(None, "--include", help="Comma-separated dotted names to search instead of the schema's defaults."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    show_all: bool = typer.Option(False, "--all", help="List every skipped parameter, not only counts by reason."),
    space_source: str = typer.Option("project", "--space", help="project: the schema's selection; tao: exactly "
                                     "what TAO's AutoML searches for this model."),
) -> None:
    """Every searched parameter (type, range or choices, scale, weights, condition), whether TAO's own
    AutoML searches it, and what was skipped."""
    space, tao = _compile(model, schema, include, space_source)
    rows = space.describe()
    tao_only = [n for n in tao or [] if n not in space.names]
    for row in rows:
        row["tao_searches"] = None if tao is None else row["name"] in tao
    if as_json:
        print(json.dumps({"schema": space.schema_path, "params": rows, "tao_only": tao_only,
                          "skipped": [{"name": n, "reason": r} for n, r in space.skipped],
                          "warnings": space.warnings}, default=str))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # piped output (logs, CI) gets a wide table rather than dotted names folded at 80 columns
    console = Console(width=None if sys.stdout.isatty() else 200)
    table = Table(title=f"search space: {space.schema_path} ({len(space)} searched)", show_lines=False)
    table.add_column("name", no_wrap=True)
    cols = ("type", "range / choices", "scale", "weights", "condition") + (("TAO searches this",) if tao else ())
    for col in cols:
        table.add_column(col, overflow="fold")
    for row in rows:
        yes_no = (("yes" if row["tao_searches"] else "no"),) if tao else ()
        table.add_row(*(escape(str(row[k])) for k in ("name", "type", "range", "scale", "weights", "condition")), *yes_no)
    console.print(table)
    if tao_only:
        console.print(f"TAO searches, this space does not ({len(tao_only)}): {', '.join(tao_only)} "
                      f"(`automl run --space tao` searches exactly TAO's selection)")
    console.print(escape(LOG_RULE), style="dim")
    if show_all:
        skipped = Table(title=f"skipped ({len(space.skipped)})")
        skipped.add_column("name", overflow="fold")
        skipped.add_column("reason", overflow="fold")
        for name, reason in space.skipped:
            skipped.add_row(escape(name), escape(reason))
        console.print(skipped)
    else:
        counts = Counter(_reason_kind(r) for _, r in space.skipped)
        console.print(f"skipped {len(space.skipped)} parameters (--all lists them):")
        for reason, n in counts.most_common():
            console.print(f"  {n:4d}  {reason}")
    for warning in space.warnings:
        console.print(f"[yellow]schema warning:[/yellow] {warning}")


def _reason_kind(reason: str) -> str:
    if reason.startswith("under disabled collection"):
        return "under a disabled collection"
    if reason.startswith("named in automl_disabled_parameters"):
        return "named in automl_disabled_parameters"
    return reason


@space_app.command("sample")
def sample(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="A registered trainer (uses its schema)."),
    schema: Optional[Path] = typer.Option(None, "--schema", "-s", help="A train schema JSON file."),
    include: Optional[str] = typer.Option(None, "--include", help="Comma-separated dotted names to search."),
    n: int = typer.Option(10, "--n", "-n", min=1, help="How many configs."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives byte-identical output."),
    backend: str = typer.Option("optuna", "--backend", help="optuna (RandomSampler, define-by-run), ray "
                                "(Ray Tune's variant generator on to_ray()) or numpy."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl: one JSON object per line."),
) -> None:
    """Sample N configs, one JSON object per line mapping each searched dotted name to its value."""
    if backend not in BACKENDS:
        raise AutomlError(f"--backend '{backend}' is not known; allowed: {', '.join(BACKENDS)}")
    if fmt != "jsonl":
        raise AutomlError(f"--format '{fmt}' is not known; allowed: jsonl")
    space, _ = _compile(model, schema, include)
    configs = sample_configs(space, n, seed, backend)
    out = sys.stdout
    for config in configs:
        problems = space.check(config)
        if problems:  # never print an invalid config as if it were usable
            raise AutomlError(f"internal error: sampled config violates constraints: {problems[0]}")
        out.write(json.dumps(config) + "\n")
    out.flush()


def sample_configs(space, n: int, seed: int, backend: str) -> list[dict]:
    if backend == "optuna":
        from automl.space.optuna_adapter import sample_optuna

        return sample_optuna(space, n, seed)
    if backend == "ray":
        from automl.space.ray_adapter import sample_ray

        return sample_ray(space, n, seed)
    import numpy as np

    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]
