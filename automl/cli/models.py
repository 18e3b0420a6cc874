"""``automl models``: list the registered trainers."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from automl import plugins
from automl.cli import app


@app.command("models")
def models(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """List the trainers found in the `automl.trainers` entry-point group."""
    rows = []
    for name in plugins.available():
        try:
            plugin = plugins.get_trainer(name)
            rows.append({"name": name, "monitor": plugin.monitor.metric, "mode": plugin.monitor.mode,
                         "description": plugin.description, "error": None})
        except Exception as exc:  # one broken plugin must not hide the others
            rows.append({"name": name, "monitor": "", "mode": "", "description": "", "error": str(exc)})
    if as_json:
        print(json.dumps({"models": rows}))
        return
    table = Table(title="registered trainers")
    for col in ("name", "monitor", "mode", "description"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["name"], row["monitor"], row["mode"], row["error"] or row["description"])
    Console().print(table)
