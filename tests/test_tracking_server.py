"""MLflow tracking against a real ``mlflow server`` process on localhost: a full search, and a search
during which the server goes away and comes back."""

from __future__ import annotations

import pytest
from _mlflow_server import MlflowServer
from _tracking_helpers import MONITOR, TRIALS, check_search, play_search
from mlflow import MlflowClient

from automl.tracking import create_tracker
from automl.tracking.mlflow import MlflowTracker
from automl.tracking.spool import Spool


@pytest.mark.slow  # the outage test below checks the same against a server, and more
def test_search_is_tracked_on_a_server(tmp_path):
    with MlflowServer(tmp_path / "server") as server:
        run_dir = tmp_path / "runs" / "teamsearch"
        tracker = create_tracker(run_dir, tracking_uri=server.url)
        play_search(tracker, run_dir, "teamsearch")
        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        check_search(client, tracker.state, "teamsearch")
        assert not (run_dir / "mlflow.db").exists(), "a server run keeps no local store"
        assert Spool(run_dir).pending() == []


def test_server_outage_mid_search_loses_nothing(tmp_path, capfd):
    """The server stops after trial 0 and comes back (same store, same port) after trial 2: trials 1 and 2
    are spooled while it is away, delivered when it is back, and every epoch's metric arrives once."""
    server = MlflowServer(tmp_path / "server").start()
    try:
        run_dir = tmp_path / "runs" / "outage"
        tracker = MlflowTracker(run_dir, server.url)

        def between_trials(number):
            if number == 0:
                assert tracker.flush(120), "trial 0 reached the server before the outage"
                server.stop()
            elif number == 2:
                assert Spool(run_dir).pending(), "trials 1-2 waited in the spool during the outage"
                server.start()

        def between_epochs(number, epoch):
            # Mid-trial the server is down for trial 1, so epochs are logged while it is away.
            if number == 1:
                assert server.proc is None

        play_search(tracker, run_dir, "outage", between_trials=between_trials, between_epochs=between_epochs)
        err = capfd.readouterr().err
        assert len([line for line in err.splitlines() if " is unreachable (" in line]) == 1, err
        assert "not delivered" not in err, "everything was delivered once the server was back"
        assert Spool(run_dir).pending() == []

        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        runs = check_search(client, tracker.state, "outage")
        for number, run in runs["children"].items():
            assert len(client.get_metric_history(run.info.run_id, MONITOR)) == len(TRIALS[number][1])

        assert len(client.search_runs([tracker.state.experiment_id])) == 1 + len(TRIALS)
    finally:
        server.stop()
