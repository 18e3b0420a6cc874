"""Every algorithm end to end on the toy trainer (slow: ~5-10 s each), plus --reeval-top and
--warm-start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _search_helpers import results, toy_search

pytestmark = pytest.mark.slow

DEFAULTS = {"toy.lr": 0.01, "toy.width": 3, "toy.activation": "relu", "toy.momentum": 0.9}


@pytest.mark.parametrize("algorithm", ["tpe", "gp", "random", "cmaes", "qmc", "grid"])
def test_single_fidelity_algorithms(tmp_path, algorithm):
    summary = toy_search(tmp_path, budget=8, workers=2, algorithm=algorithm, seed=0, promote=False,
                         overrides=["train.num_epochs=4"])
    res = results(summary["run_dir"])
    assert sorted(res) == list(range(8))
    assert res[0]["params"] == DEFAULTS
    assert summary["best"]["value"] >= summary["baseline"]["value"]
    configs = [json.dumps(r["params"], sort_keys=True) for r in res.values()]
    if algorithm == "grid":
        assert len(set(configs)) == 8, "grid points are distinct"


def test_nsga2_gives_a_pareto_front(tmp_path):
    summary = toy_search(tmp_path, budget=8, workers=2, algorithm="nsga2", seed=0, promote=False,
                         objectives="val_score:max,latency_ms:min", overrides=["train.num_epochs=3"])
    front = summary["pareto_front"]
    assert front and all(len(p["values"]) == 2 for p in front)
    # no point of the front is dominated by a complete trial
    pts = [r["values"] for r in results(summary["run_dir"]).values() if r["state"] == "complete"]
    for p in front:
        a, lat = p["values"]
        assert not any(b >= a and l <= lat and (b > a or l < lat) for b, l in pts)


@pytest.mark.parametrize("algorithm", ["hyperband", "bohb"])
def test_hyperband_brackets_pause_and_promote(tmp_path, algorithm):
    summary = toy_search(tmp_path, budget=9, workers=2, algorithm=algorithm, seed=0, promote=False,
                         overrides=["train.num_epochs=9"], settings={"min_epochs": 1, "reduction_factor": 3})
    res = results(summary["run_dir"])
    first_rungs = {json.loads(Path(r["trial_dir"], "job.json").read_text())["max_epochs"]
                   for r in res.values() if r["extra"].get("kind") == "new"}
    assert len(first_rungs) >= 2, "brackets start at different rungs"
    assert any(r["state"] == "complete" and r["epochs_done"] == 9 for r in res.values())
    for r in res.values():
        assert r["epochs_run"] == r["epochs_done"], "promotions resumed, never retrained"


def test_pbt_exploits_checkpoints_and_explores(tmp_path):
    summary = toy_search(tmp_path, budget=12, workers=2, algorithm="pbt", seed=0, promote=True,
                         overrides=["train.num_epochs=6"], settings={"population": 4, "perturbation_interval": 2})
    res = results(summary["run_dir"])
    # 4 members x 3 segments at most; a member that copies a member further ahead needs fewer
    assert 8 <= len(res) <= 12
    latest = {}
    for n, r in sorted(res.items()):
        latest[r["extra"]["member"]] = r
    assert sorted(latest) == [0, 1, 2, 3]
    exploited = [r for r in res.values() if "exploited" in r["extra"]]
    assert exploited, "some member copied a better member's checkpoint"
    for r in exploited:
        job = json.loads(Path(r["trial_dir"], "job.json").read_text())
        donor = res[r["extra"]["exploited"]]
        assert job["resume_from"].startswith(donor["trial_dir"])
        assert r["params"] != donor["params"], "explore perturbed the donor's values"
    assert res[summary["best"]["number"]]["epochs_done"] == 6, "the winner is a fully trained member"
    assert summary["promotion"]["checkpoint"]["status"] == "ok"


def test_reeval_top_and_warm_start(tmp_path):
    first = toy_search(tmp_path, name="first", budget=5, seed=0, reeval_top=2, keep_checkpoints=True,
                       overrides=["train.num_epochs=3", "toy.noise=0.05"])
    reeval = first["reevaluation"]
    # the top 2 and the baseline (always re-trained: the noise and the gain are measured against it)
    assert reeval and "0" in reeval and len(reeval) in (2, 3) and all(len(v) == 3 for v in reeval.values())  # original + 2 seeds
    assert all(Path(first["run_dir"], "trials", f"{n:04d}", "checkpoints").exists() for n in range(5))  # kept
    second = toy_search(tmp_path, name="second", budget=3, seed=1, warm_start="first", promote=False,
                        overrides=["train.num_epochs=3", "toy.noise=0.05"])
    res = results(second["run_dir"])
    best_first = sorted((r for r in results(first["run_dir"]).values() if r["state"] == "complete"),
                        key=lambda r: -r["value"])
    assert res[1]["params"] == best_first[0]["params"], "trial 1 replays the earlier run's best config"
