"""`automl run --model toy --tracking-uri http://...` against a real `mlflow server`: what the controller
reports arrives in MLflow, also across a server outage in the middle of the search."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _mlflow_server import MlflowServer
from mlflow import MlflowClient

from automl.reporting import read_metrics
from automl.tracking.spool import Spool

REPO = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, name: str, url: str, budget: int = 3) -> list[str]:
    return [sys.executable, "-m", "automl", "run", "--model", "toy", "--budget", str(budget), "--name", name,
            "--seed", "0", "--output", str(tmp_path / "runs"), "--tracking-uri", url, "--json"]


def _check_run_folder_matches_mlflow(client: MlflowClient, run_dir: Path, summary: dict) -> None:
    state = json.loads((run_dir / "mlflow.json").read_text())
    runs = client.search_runs([state["experiment_id"]], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [p.info.run_id for p in parents] == [state["runs"]["search"]]
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.tags["automl.model"] == "toy"
    assert parent.data.tags["automl.budget"] == str(summary["budget"])
    children = {int(r.data.tags["automl.trial_number"]): r for r in runs if r is not parent}
    assert sorted(children) == [t["number"] for t in summary["trials"]]
    for number, run in children.items():
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        records = read_metrics(run_dir / "trials" / f"{number:04d}")
        expected = sorted((r["epoch"], r["metrics"]["val_score"]) for r in records)
        got = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_score"))
        assert got == expected, f"trial {number}: every epoch of metrics.jsonl exactly once"
    best = summary["best"]["number"]
    assert [n for n, r in children.items() if r.data.tags.get("best") == "true"] == [best]
    assert parent.data.tags["automl.best_trial"] == str(best)
    history = client.get_metric_history(parent.info.run_id, "best_so_far")
    assert max(m.value for m in history) == pytest.approx(summary["best"]["value"])
    assert {"plots/learning_curves.png", "plots/optimization_history.html"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    version = client.get_model_version_by_alias("toy", "champion")
    assert version.run_id == children[best].info.run_id
    assert version.tags["automl.search"] == run_dir.name and version.tags["automl.trial_number"] == str(best)
    assert version.tags["automl.parent_run_id"] == parent.info.run_id
    assert "promoted/model.onnx" in {a.path for a in client.list_artifacts(children[best].info.run_id, "promoted")}


def test_automl_run_tracks_on_a_server(tmp_path):
    with MlflowServer(tmp_path / "server") as server:
        out = subprocess.run(_run(tmp_path, "tracked", server.url), cwd=REPO, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        run_dir = tmp_path / "runs" / "tracked"
        assert Spool(run_dir).pending() == []
        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        _check_run_folder_matches_mlflow(client, run_dir, summary)
        import mlflow.artifacts
        import mlflow.pyfunc

        tracking = summary["tracking"]
        state = json.loads((run_dir / "mlflow.json").read_text())
        assert tracking["tracking_uri"] == server.url and tracking["parent_run_id"] == state["runs"]["search"]
        assert sorted(tracking["trial_run_ids"]) == [f"{t['number']:04d}" for t in summary["trials"]]
        assert tracking["registered"]["alias"] == "champion" and tracking["pending_events"] == 0
        version = client.get_model_version_by_alias("toy", "champion")
        logged = client.get_logged_model(version.source.removeprefix("models:/"))
        assert logged.source_run_id == version.run_id
        local = mlflow.artifacts.download_artifacts(artifact_uri=logged.artifact_location, tracking_uri=server.url)
        model = mlflow.pyfunc.load_model(local)  # the ONNX flavour, run by onnxruntime
        assert "onnx" in model.metadata.flavors
        assert (Path(local) / "model.onnx").stat().st_size == (tmp_path / "runs/tracked/best/model.onnx").stat().st_size


@pytest.mark.slow
def test_automl_run_survives_a_server_outage(tmp_path):
    server = MlflowServer(tmp_path / "server").start()
    run_dir = tmp_path / "runs" / "outage"
    err_path = tmp_path / "outage.stderr"
    err_file = err_path.open("w")
    proc = subprocess.Popen(_run(tmp_path, "outage", server.url, budget=4), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=err_file, text=True)
    try:
        def wait_for(done, what: str, timeout: float = 300, allow_exit: bool = False) -> None:
            deadline = time.monotonic() + timeout
            while not done():
                if proc.poll() is not None:
                    assert allow_exit and proc.returncode == 0, err_path.read_text()[-3000:]
                    return
                assert time.monotonic() < deadline, f"{what} never happened"
                time.sleep(0.2)

        wait_for((run_dir / "trials" / "0000" / "result.json").exists, "trial 0")
        server.stop()
        wait_for((run_dir / "trials" / "0002" / "result.json").exists, "trial 2", allow_exit=True)
        # Keep the store down until the tracker has really tried it (its delivery thread may lag behind
        # fast toy trials), so the outage is observed rather than raced.
        wait_for(lambda: " is unreachable (" in err_path.read_text(), "the unreachable warning", allow_exit=True)
        server.start()
        stdout, _ = proc.communicate(timeout=600)
        err_file.close()
        stderr = err_path.read_text()
        assert proc.returncode == 0, stderr[-3000:]
        assert len([line for line in stderr.splitlines() if " is unreachable (" in line]) == 1, stderr
        summary = json.loads(stdout.strip().splitlines()[-1])
        if Spool(run_dir).pending():  # the run ended before the store answered again: what sync is for
            out = subprocess.run([sys.executable, "-m", "automl", "sync", "outage", "--output",
                                  str(tmp_path / "runs")], cwd=REPO, capture_output=True, text=True, timeout=300)
            assert out.returncode == 0, out.stderr
        assert Spool(run_dir).pending() == []
        _check_run_folder_matches_mlflow(MlflowClient(tracking_uri=server.url, registry_uri=server.url), run_dir,
                                         summary)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()


@pytest.mark.slow
def test_resume_after_sigkill_reattaches_to_the_same_runs(tmp_path):
    """Kill the controller while trials run, resume: the same parent run, the interrupted trials' child
    runs reused, no run duplicated, every epoch on disk exactly once in MLflow (embedded store)."""
    args = [sys.executable, "-m", "automl", "run", "--model", "toy", "--budget", "4", "--workers", "2", "--name",
            "k", "--seed", "0", "--output", str(tmp_path / "runs"), "--algorithm", "random", "--setting",
            "pruner=none", "train.num_epochs=6", "toy.sleep_s=0.5"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    run_dir = tmp_path / "runs" / "k"
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            # Whatever the tracker had delivered by then: runs not created yet are in the spool.
            running = [f for f in run_dir.glob("trials/*") if not (f / "result.json").exists()
                       and (f / "checkpoints" / "last.ckpt").exists()]
            if len(list(run_dir.glob("trials/*/result.json"))) >= 1 and running:
                break
            assert proc.poll() is None, "the search ended before it could be killed"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    before = json.loads((run_dir / "mlflow.json").read_text())["runs"]
    resumed = subprocess.run([*args, "--resume", "--json"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    after = json.loads((run_dir / "mlflow.json").read_text())["runs"]
    assert {k: after[k] for k in before} == before, "resume re-attached to the runs it had"
    uri = f"sqlite:///{run_dir / 'mlflow.db'}"
    _check_run_folder_matches_mlflow(MlflowClient(tracking_uri=uri, registry_uri=uri), run_dir, summary)
