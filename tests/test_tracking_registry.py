"""Who holds the registry alias ``champion`` across searches on one real ``mlflow server``: a later
search's winner takes it only when it beats the champion on the same evaluation; otherwise it is
registered as ``challenger`` and the user is told; ``--force-champion`` overrides."""

from __future__ import annotations

import pytest
from _mlflow_server import MlflowServer
from _tracking_helpers import MONITOR, play_search
from mlflow import MlflowClient

from automl.tracking.mlflow import MlflowTracker


def _search(tmp_path, server, name: str, value: float, force: bool = False) -> MlflowTracker:
    run_dir = tmp_path / "runs" / name
    tracker = MlflowTracker(run_dir, server.url, force_champion=force)
    play_search(tracker, run_dir, name, numbers=[0, 2], promoted_value=value)
    return tracker


@pytest.mark.slow  # a server and four small searches: ~1-2 min
def test_a_worse_second_search_does_not_take_champion(tmp_path, capfd):
    with MlflowServer(tmp_path / "server") as server:
        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        _search(tmp_path, server, "first", 0.7)
        assert client.get_model_version_by_alias("toy_tracking", "champion").version == "1"

        second = _search(tmp_path, server, "second", 0.6)
        champion = client.get_model_version_by_alias("toy_tracking", "champion")
        challenger = client.get_model_version_by_alias("toy_tracking", "challenger")
        assert (champion.version, challenger.version) == ("1", "2")
        assert challenger.tags["automl.search"] == "second" and challenger.tags["automl.alias"] == "challenger"
        assert (challenger.tags["automl.eval_metric"], challenger.tags["automl.eval_split"],
                float(challenger.tags["automl.eval_value"])) == (MONITOR, "validation", 0.6)
        err = capfd.readouterr().err
        assert "version 2 registered as 'challenger', 'champion' stays" in err and "does not beat" in err, err
        assert second.describe()["registered"]["alias"] == "challenger"

        _search(tmp_path, server, "better", 0.8)
        assert client.get_model_version_by_alias("toy_tracking", "champion").version == "3"

        _search(tmp_path, server, "forced", 0.1, force=True)
        forced = client.get_model_version_by_alias("toy_tracking", "champion")
        assert forced.version == "4" and forced.tags["automl.search"] == "forced"
