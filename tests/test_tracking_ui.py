"""``automl ui`` looked at in a real browser (headless Chromium): the printed address opens this search's
runs table with the parent and its trials, a trial's run page shows its metrics, and an HTML plot
renders with no network. Screenshots are left in the test's tmp folder for a person to look at."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _chromium import chromium, look
from _tracking_helpers import MONITOR, play_search
from mlflow import MlflowClient

from automl.tracking import create_tracker
from automl.tracking.mlflow.view import run_url

REPO = Path(__file__).resolve().parents[1]


def _text(dom: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def _start_ui(run_dir: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "automl", "ui", run_dir.name, "--output", str(run_dir.parent),
                             "--port", "0"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line, deadline = "", time.monotonic() + 120
    while "MLflow UI for" not in line and time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line or proc.poll() is None, "automl ui exited early"
    return proc, line.split(": ", 1)[1].strip()


@pytest.mark.slow  # a search, a server and six Chromium page loads: ~1-2 min
@pytest.mark.skipif(chromium() is None, reason="no chromium binary (apt-get install chromium; scripts/setup.sh)")
def test_a_person_sees_the_search_in_the_mlflow_ui(tmp_path):
    run_dir = tmp_path / "runs" / "demo"
    tracker = create_tracker(run_dir)
    play_search(tracker, run_dir, "demo")
    client = MlflowClient(tracking_uri=tracker.tracking_uri, registry_uri=tracker.tracking_uri)
    experiment_id = tracker.state.experiment_id
    proc, url = _start_ui(run_dir)
    try:
        runs_table = _text(look(url, tmp_path / "runs_table.png"))
        # model-training mode: GenAI mode's navigation ("Evaluation runs", "Sessions") is not there
        assert "Evaluation runs" not in runs_table and "demo" in runs_table
        assert all(f"trial-{n:04d}" in runs_table for n in range(4)), runs_table[:3000]

        trial = client.get_run(tracker.state.run_id("trial/0002"))
        page = _text(look(run_url(url.split("/#/")[0], experiment_id, trial.info.run_id), tmp_path / "trial_run.png"))
        assert "trial-0002" in page and "Evaluation runs" not in page
        assert MONITOR in page and "train_loss" in page, page[:3000]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        proc.stdout.close()

    parent = tracker.state.run_id("search")
    local = Path(client.download_artifacts(parent, "plots/parallel_coordinate.html", str(tmp_path)))
    plot = look(local.as_uri(), tmp_path / "parallel_coordinate.png", offline=True, budget_ms=15000)
    assert 'class="main-svg"' in plot and "parcoords" in plot, "plotly drew the plot without a network"
