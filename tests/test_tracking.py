"""MLflow tracking over the embedded store (SQLite + artifacts inside the run folder), driven through the
tracker hooks over a real run folder; ``automl ui`` and ``automl sync`` as a user runs them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from _tracking_helpers import MONITOR, check_search, play_search, search_info, write_search_files
from mlflow import MlflowClient

from automl.reporting import FileReporter
from automl.tracking import NullTracker, create_tracker, track_training_run
from automl.tracking.mlflow import MlflowTracker
from automl.tracking.spool import Spool

REPO = Path(__file__).resolve().parents[1]
AUTOML = [sys.executable, "-m", "automl"]


def _client(tracker: MlflowTracker) -> MlflowClient:
    return MlflowClient(tracking_uri=tracker.tracking_uri, registry_uri=tracker.tracking_uri)


def test_create_tracker_default_is_embedded_mlflow(tmp_path):
    assert isinstance(create_tracker(tmp_path / "off", enabled=False), NullTracker)
    tracker = create_tracker(tmp_path / "run")
    try:
        assert isinstance(tracker, MlflowTracker)
        assert tracker.tracking_uri == f"sqlite:///{(tmp_path / 'run' / 'mlflow.db').resolve()}"
        state = json.loads((tmp_path / "run" / "mlflow.json").read_text())
        assert state["tracking_uri"] == tracker.tracking_uri
    finally:
        tracker.close()


@pytest.fixture(scope="module")
def embedded_search(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "demo"
    tracker = create_tracker(run_dir)
    play_search(tracker, run_dir, "demo")
    return run_dir, tracker


def test_search_is_tracked_in_the_embedded_store(embedded_search):
    run_dir, tracker = embedded_search
    assert (run_dir / "mlflow.db").is_file() and (run_dir / "mlartifacts").is_dir()
    check_search(_client(tracker), tracker.state, "demo")
    spool = Spool(run_dir)
    assert spool.pending() == [] and spool.cursor() == spool.read()[-1]["seq"]


def test_sync_replays_the_whole_spool_without_duplicates(embedded_search):
    """Replaying every event again (as after a crash between delivery and the cursor update) changes
    nothing: same runs, each epoch's metric once, one model version."""
    run_dir, tracker = embedded_search
    client = _client(tracker)
    before = {r.info.run_id for r in client.search_runs([tracker.state.experiment_id])}
    Spool(run_dir).set_cursor(0)
    out = subprocess.run([*AUTOML, "sync", "demo", "--output", str(run_dir.parent), "--json"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["sent"] == len(Spool(run_dir).read())
    assert {r.info.run_id for r in client.search_runs([tracker.state.experiment_id])} == before
    check_search(client, tracker.state, "demo")
    assert len(client.search_model_versions("name = 'toy_tracking'")) == 1


def test_automl_ui_serves_the_embedded_store(embedded_search):
    run_dir, tracker = embedded_search
    proc = subprocess.Popen([*AUTOML, "ui", "demo", "--output", str(run_dir.parent), "--port", "0"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "MLflow UI for demo" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "automl ui exited early"
        assert "MLflow UI for demo: http://127.0.0.1:" in line, line
        url = line.split(": ", 1)[1].strip()
        base = url.split("/#/")[0]
        # the runs table of this search (a saved view: its parent and trials, one open group), not MLflow 3's
        # GenAI overview
        assert url == f"{base}/#/experiments/{tracker.state.experiment_id}/runs?" \
                      f"viewStateShareKey={tracker.state.search_uid}&workflowType=machine_learning"
        experiment = _client(tracker).get_experiment(tracker.state.experiment_id)
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
        view = json.loads(experiment.tags[f"mlflow.sharedViewState.{tracker.state.search_uid}"])
        assert view["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "automl.search"}]
        assert view["searchFilter"] == "tags.`automl.search` = 'demo'"

        def post(path, body):
            request = urllib.request.Request(f"{base}{path}", data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"}, method="POST")
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())

        experiments = post("/api/2.0/mlflow/experiments/search", {"max_results": 10})["experiments"]
        assert [e["name"] for e in experiments if e["experiment_id"] == tracker.state.experiment_id] == \
            ["automl-toy_tracking"]
        runs = post("/api/2.0/mlflow/runs/search", {"experiment_ids": [tracker.state.experiment_id]})["runs"]
        assert len(runs) == 5  # the parent and four trials
        with urllib.request.urlopen(f"{base}/api/2.0/mlflow/registered-models/alias?name=toy_tracking&alias=champion",
                                    timeout=30) as response:
            assert json.loads(response.read())["model_version"]["version"] == "1"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode in (130, 0)
    with pytest.raises(OSError):  # the server went with it
        urllib.request.urlopen(f"{base}/health", timeout=5)


def test_resume_reattaches_to_the_parent_and_the_retried_trial(tmp_path):
    run_dir = tmp_path / "resumable"
    write_search_files(run_dir, "resumable")
    first = create_tracker(run_dir)
    first.start_search(run_dir, search_info(run_dir, "resumable"))
    trial_dir = run_dir / "trials" / "0000"
    trial_dir.mkdir(parents=True)
    (trial_dir / "config.json").write_text(json.dumps({"train.optim.lr": 0.01}))
    first.trial_started(0, {"train.optim.lr": 0.01}, trial_dir)
    reporter = FileReporter(trial_dir)
    for epoch, value in enumerate([0.2, 0.4]):
        reporter.report(epoch, {MONITOR: value})
        first.trial_epoch(0, epoch, {MONITOR: value})
    assert first.flush(120)
    first.close()  # the driver dies here; the trial was interrupted after epoch 1
    parent_id, child_id = first.state.run_id("search"), first.state.run_id("trial/0000")

    second = create_tracker(run_dir)
    second.start_search(run_dir, search_info(run_dir, "resumable", resumed=True))
    second.trial_started(0, {"train.optim.lr": 0.01}, trial_dir)  # rerun from its last checkpoint
    reporter.report(2, {MONITOR: 0.5})
    second.trial_epoch(0, 2, {MONITOR: 0.5})
    result = {"state": "complete", "value": 0.5, "best_epoch": 2, "duration_s": 1.0, "gpu_seconds": 0.0}
    (trial_dir / "result.json").write_text(json.dumps(result))
    second.trial_finished(0, "complete", 0.5, result, trial_dir)
    second.end_search({"status": "finished"})

    assert second.state.run_id("search") == parent_id and second.state.run_id("trial/0000") == child_id
    client = _client(second)
    runs = client.search_runs([second.state.experiment_id])
    assert sorted(r.info.run_id for r in runs) == sorted([parent_id, child_id]), "no duplicate runs"
    history = sorted((m.step, m.value) for m in client.get_metric_history(child_id, MONITOR))
    assert history == [(0, 0.2), (1, 0.4), (2, 0.5)]
    child = client.get_run(child_id)
    assert child.info.status == "FINISHED" and child.data.tags["best"] == "true"
    assert client.get_run(parent_id).info.status == "FINISHED"


def test_unreachable_server_spools_and_warns_once(tmp_path, capfd):
    """Nothing listens on the port: hooks still return, one warning line tells the user, the events wait
    in the spool, and `automl sync` says in one line that the store is still away."""
    from automl.tracking.server import free_port

    run_dir = tmp_path / "offline"
    dead = f"http://127.0.0.1:{free_port()}"
    tracker = MlflowTracker(run_dir, dead, flush_timeout_s=1.0)
    play_search(tracker, run_dir, "offline", promote=False)
    err = capfd.readouterr().err
    warnings = [line for line in err.splitlines() if " is unreachable (" in line]
    assert len(warnings) == 1, err
    assert dead in warnings[0] and "automl sync offline" in warnings[0]
    assert "not delivered" in err
    pending = Spool(run_dir).pending()
    assert len(pending) > 20 and {e["op"] for e in pending} >= {"open", "metrics", "close", "artifact"}
    out = subprocess.run([*AUTOML, "sync", "offline", "--output", str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("error: tracking store http://127.0.0.1:")
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert len(Spool(run_dir).pending()) == len(pending)


def test_plain_training_run_is_tracked(tmp_path):
    results = tmp_path / "train_out"
    reporter = FileReporter(results)
    for epoch, value in enumerate([0.3, 0.6]):
        reporter.report(epoch, {MONITOR: value, "train_loss": 1 - value})
    (results / "checkpoints").mkdir()
    spec_path = results / "spec.yaml"
    spec_path.write_text("train:\n  num_epochs: 2\n")
    run_id = track_training_run(results, model="toy_tracking", spec={"train": {"num_epochs": 2, "optim": {"lr": 0.1}}},
                                spec_path=spec_path, result={"best_value": 0.6, "best_epoch": 1,
                                                             "best_checkpoint": str(results / "checkpoints/best.ckpt")},
                                command="automl train --model toy")
    client = MlflowClient(tracking_uri=f"sqlite:///{results / 'mlflow.db'}")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["automl.kind"] == "train"
    assert run.data.params == {"train.num_epochs": "2", "train.optim.lr": "0.1"}
    assert sorted((m.step, m.value) for m in client.get_metric_history(run_id, MONITOR)) == [(0, 0.3), (1, 0.6)]
    assert run.data.metrics["best_value"] == 0.6
    assert run.data.tags["automl.checkpoint"].endswith("best.ckpt")
    assert "spec/spec.yaml" in {a.path for a in client.list_artifacts(run_id, "spec")}
