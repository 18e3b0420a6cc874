"""``automl ui [NAME]`` (the MLflow UI on a run's store) and ``automl sync NAME`` (deliver the spool)."""

from __future__ import annotations

import functools
import json
import signal
import sys
import webbrowser
from pathlib import Path

import typer

from automl.cli import app
from automl.errors import AutomlError
from automl.tracking.mlflow.names import SEARCH
from automl.tracking.mlflow.view import runs_table_url
from automl.tracking.store import ARTIFACTS_DIR, STATE_FILE, default_tracking_uri, is_remote, read_state
from automl.trials import rundir


def _find_run(name: str | None, output: Path) -> Path:
    """A run folder (search or plain training) by name under ``output`` or by path; without a name the
    most recently tracked one under ``output``."""
    if name is None:
        candidates = [p.parent for p in output.glob(f"*/{STATE_FILE}")]
        if not candidates:
            raise AutomlError(f"no tracked run under {output} (looked for {output}/*/{STATE_FILE}); "
                              f"name one: automl ui NAME --output DIR")
        return max(candidates, key=lambda p: (p / STATE_FILE).stat().st_mtime).resolve()
    for candidate in (Path(name), output / name):
        if (candidate / STATE_FILE).is_file() or (candidate / rundir.SEARCH_JSON).is_file():
            return candidate.resolve()
    raise AutomlError(f"no run named '{name}' under {output} (looked for {output / name / STATE_FILE})")


@app.command("ui")
def ui(
    name: str = typer.Argument(None, help="Run name under --output (or a path); default: the latest run."),
    output: Path = typer.Option(Path("runs"), "--output", "-o", help="Folder holding the run folders."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for everyone)."),
    port: int = typer.Option(5000, "--port", "-p", help="Port; 0 picks a free one."),
    open_browser: bool = typer.Option(False, "--open", help="Open the address in a web browser too."),
) -> None:
    """Start the MLflow UI on a run's tracking store and print its address (Ctrl-C stops it)."""
    from automl.tracking import server

    run_dir = _find_run(name, output)
    state = read_state(run_dir) or {}
    uri = state.get("tracking_uri") or default_tracking_uri(run_dir)
    link = functools.partial(runs_table_url, experiment_id=state.get("experiment_id"),
                             share_key=state.get("search_uid") if state.get("runs", {}).get(SEARCH) else None)
    if is_remote(uri):
        print(f"{run_dir.name} is tracked on the server {uri}: open {link(uri)}")
        if open_browser:
            webbrowser.open(link(uri))
        return
    if not (run_dir / "mlflow.db").is_file():
        raise AutomlError(f"{run_dir}: no tracking store yet (mlflow.db); was the run started with tracking off?")
    port = port or server.free_port(host)
    # SIGTERM (a supervisor, `timeout`) must stop the server too, not orphan it in its own session.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    proc = server.start_server(uri, (run_dir / ARTIFACTS_DIR).as_uri(), host, port)
    try:
        address = f"http://{host}:{port}"
        server.wait_healthy(address, proc)
        print(f"MLflow UI for {run_dir.name}: {link(address)}", flush=True)
        if open_browser:
            webbrowser.open(link(address))
        print("press Ctrl-C to stop", flush=True)
        proc.wait()
        if proc.returncode not in (0, None):
            raise AutomlError(f"mlflow server stopped with status {proc.returncode}")
    finally:
        server.stop_server(proc)


@app.command("sync")
def sync(
    name: str = typer.Argument(..., help="Run name under --output (or a path)."),
    output: Path = typer.Option(Path("runs"), "--output", "-o", help="Folder holding the run folders."),
    tracking_uri: str = typer.Option(None, "--tracking-uri",
                                     help="Send to this store instead of the one the run used."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Send the tracking events a run kept locally (server unreachable during the run) to its store."""
    from automl.tracking.mlflow import MlflowWriter
    from automl.tracking.spool import DeliveryLock, Spool, TransientError, replay
    from automl.tracking.store import TrackingState

    run_dir = _find_run(name, output)
    lock = DeliveryLock(run_dir)
    if not lock.acquire():
        raise AutomlError(f"{run_dir.name} is running and delivers its own tracking events; sync after it ends")
    try:
        state = TrackingState(run_dir, tracking_uri)
        spool = Spool(run_dir)
        pending = len(spool.pending())
        try:
            sent = replay(spool, MlflowWriter(state, plot_interval_s=0).send)
        except TransientError as exc:
            left = len(spool.pending())
            raise AutomlError(f"tracking store {state.tracking_uri} unreachable ({exc}); "
                              f"{pending - left} of {pending} event(s) sent, {left} kept in {spool.path}") from None
    finally:
        lock.release()
    if as_json:
        print(json.dumps({"run": str(run_dir), "tracking_uri": state.tracking_uri, "sent": sent}))
    else:
        print(f"{run_dir.name}: {sent} tracking event(s) sent to {state.tracking_uri}; nothing pending")
