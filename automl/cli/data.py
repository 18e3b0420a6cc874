"""``automl data make``: generate a model's dataset in its TAO layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from automl import plugins
from automl.cli import app

data_app = typer.Typer(help="Datasets: generate them in a model's TAO layout.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("make")
def make(
    task: str = typer.Option(..., "--task", "-t", help="Model whose dataset layout to write (e.g. ml_recog)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    classes: Optional[int] = typer.Option(None, "--classes", help="Number of classes (known + unknown)."),
    per_class: Optional[int] = typer.Option(None, "--per-class", help="Training images per class."),
    size: Optional[int] = typer.Option(None, "--size", help="Image side in pixels."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same dataset)."),
    source: Optional[str] = typer.Option(None, "--source", help="Data source where the model offers several "
                                         "(ml_recog: glyphs [default], fashion-mnist)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """Generate a dataset and print the spec keys that point a model at it."""
    plugin = plugins.get_trainer(task)
    options = {k: v for k, v in {"classes": classes, "per_class": per_class, "size": size, "source": source}.items()
               if v is not None}
    keys = plugin.make_dataset(out, seed=seed, **options)
    (Path(out) / ".complete").write_text(plugin.demo_data_version)  # the marker TrainerPlugin.demo_data reads
    if as_json:
        print(json.dumps({"task": task, "out": str(out), "spec_keys": keys}))
        return
    typer.echo(f"wrote a {task} dataset to {out}")
    for key, value in keys.items():
        typer.echo(f"  {key}={value}")
