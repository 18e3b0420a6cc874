"""A small real search on the ml_recog trainer with generated data (slow: real Lightning training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _search_helpers import automl_cli, results

pytestmark = pytest.mark.slow


def test_small_ml_recog_asha_search(tmp_path):
    pytest.importorskip("trainers.ml_recog")
    proc = automl_cli("run", "--model", "ml_recog", "--budget", "3", "--workers", "2", "--algorithm", "asha",
                      "--name", "mr", "--seed", "0", "--no-tracking", "--json", "--setting", "min_epochs=1",
                      "--setting", "reduction_factor=2", "train.num_epochs=2", cwd=tmp_path, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    res = results(summary["run_dir"])
    assert sorted(res) == [0, 1, 2]
    # a sampled config can be infeasible for the data (e.g. a batch needing more classes than the
    # generated set has): it is recorded failed with the trainer's reason and the search goes on
    assert all(r["state"] in ("complete", "pruned") or (r["state"] == "failed" and r["reason"]) for r in res.values())
    assert res[0]["state"] == "complete", "the baseline (defaults) trains"
    metric = "val Precision at Rank 1"
    assert summary["monitor"] == metric and summary["best"]["value"] is not None
    full = [r for r in res.values() if r["state"] == "complete"]
    assert full and all(r["epochs_done"] == 2 for r in full)
    for r in res.values():
        assert r["epochs_run"] == r["epochs_done"], "promotion resumed the Lightning checkpoint"
    promo = summary["promotion"]
    assert promo["checkpoint"]["status"] == "ok" and Path(summary["run_dir"], "best", "model.ckpt").is_file()
    assert promo["evaluate"]["status"] == "ok", promo["evaluate"]
    assert promo["export"]["status"] == "ok", promo["export"]
    assert promo["tensorrt"]["status"] == "skipped"


def test_a_trial_trains_with_two_process_ddp_inside_its_worker(tmp_path):
    """A multi-device trial: Lightning re-executes the worker module for rank 1, which finds the job
    in the environment (gloo on the CPU here; on a GPU node the same path runs NCCL over the slot's GPUs)."""
    pytest.importorskip("trainers.ml_recog")
    from trainers.ml_recog import plugin

    plugin.make_dataset(tmp_path / "data", seed=0, classes=12, per_class=16, size=32)
    proc = automl_cli("run", "--model", "ml_recog", "--budget", "1", "--name", "ddp", "--no-tracking", "--json",
                      "--data", str(tmp_path / "data"), "train.num_epochs=1", "train.batch_size=16",
                      cwd=tmp_path, timeout=900, env={"AUTOML_CPU_PROCESSES": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    res = results(summary["run_dir"])
    assert res[0]["state"] == "complete" and res[0]["value"] is not None, res[0]
    trial = Path(summary["run_dir"], "trials", "0000")
    assert (trial / "train.rank1.log").is_file(), "rank 1 ran in its own process"
    assert [json.loads(line)["epoch"] for line in (trial / "metrics.jsonl").read_text().splitlines()] == [0]
    log = (trial / "train.log").read_text()
    assert "devices: cpu x2 on 1 node(s), DDP over gloo" in log and "MEMBER: 1/2" in log, log[-2000:]
