"""Noise-aware search results: the verdict rule (a gain under 2x the seed noise is no win), the
``--reeval-top auto`` rule, and a toy search whose baseline and winner are re-trained with more seeds
and evaluated on the held-out split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _search_helpers import automl_cli
from automl.search.promote import noise_verdict, pooled_std, reeval_count


def test_pooled_std_measures_each_config_around_its_own_mean():
    # two configs far apart, each spread +-0.01: the noise is 0.01, not the gap between them
    assert pooled_std([[0.40, 0.42], [0.80, 0.82]]) == pytest.approx(0.01 * 2 ** 0.5)
    assert pooled_std([[0.5], [0.7]]) is None  # no config seen twice
    assert pooled_std([[0.1, 0.2, 0.3], [0.5]]) == pytest.approx(0.1)  # single values add nothing


@pytest.mark.parametrize("baseline, best, mode, verdict", [
    ([0.40, 0.42, 0.41], [0.56, 0.55, 0.57], "max", "win"),            # gain 0.15, noise 0.01
    ([0.40, 0.45, 0.35], [0.44, 0.50, 0.41], "max", "within noise"),   # gain 0.05, noise ~0.05
    ([0.56, 0.55, 0.57], [0.40, 0.42, 0.41], "max", "loss"),
    ([1.20, 1.22, 1.21], [0.90, 0.91, 0.92], "min", "win"),            # lower is better
    ([0.90, 0.91, 0.92], [1.20, 1.22, 1.21], "min", "loss"),
    ([0.41, 0.42], [0.41, 0.42], "max", "within noise"),               # the baseline won: no gain
])
def test_noise_verdict(baseline, best, mode, verdict):
    out = noise_verdict(baseline, best, mode)
    assert out["verdict"] == verdict
    sign = 1 if mode == "max" else -1
    assert out["gain"] == pytest.approx(sign * (sum(best) / len(best) - sum(baseline) / len(baseline)))
    assert out["noise_std"] == pytest.approx(pooled_std([baseline, best]))


def test_noise_verdict_edges():
    # noise 0.141: a gain of 0.4 (> 2x) is a win, one of 0.2 (< 2x) is not
    assert noise_verdict([0.0, 0.2], [0.4, 0.6], "max")["verdict"] == "win"  # gain 0.4, noise 0.1414
    assert noise_verdict([0.0, 0.2], [0.2, 0.4], "max")["verdict"] == "within noise"  # gain 0.2 < 0.283
    # other configs only sharpen the noise estimate: a large spread elsewhere swallows the gain
    assert noise_verdict([0.40, 0.42], [0.50, 0.52], "max", others=[[0.1, 0.9]])["verdict"] == "within noise"
    # without seed repeats there is no noise estimate: never a win, and the reason is named
    out = noise_verdict([0.40], [0.90], "max")
    assert out == {"gain": pytest.approx(0.5), "noise_std": None, "verdict": "unknown (no seed repeats: --reeval-top 0)"}
    assert noise_verdict([], [0.9], "max")["verdict"].startswith("unknown")


def test_reeval_top_auto_follows_the_budget():
    assert reeval_count("auto", 20) == 2 and reeval_count("auto", 10) == 2 and reeval_count("auto", 9) == 0
    assert reeval_count(0, 50) == 0 and reeval_count(3, 4) == 3


def test_toy_search_reports_baseline_and_winner_on_held_out_with_seed_repeats(tmp_path):
    proc = automl_cli("run", "--model", "toy", "--budget", "4", "--name", "noise", "--seed", "0", "--json",
                      "--no-tracking", "--reeval-top", "1", "--reeval-seeds", "2", "train.num_epochs=3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    ev = summary["evaluation"]
    assert ev["split"].startswith("held-out (") and ev["metric"] == "test_score" and ev["mode"] == "max"
    assert ev["baseline"]["number"] == 0 and ev["best"]["number"] == summary["best"]["number"]
    for block in (ev["baseline"], ev["best"]):
        assert len(block["values"]) == 3 and len(block["validation_values"]) == 3, block
        assert block["mean"] == pytest.approx(sum(block["values"]) / 3) and block["std"] > 0  # seeds differ
        # toy's held-out score is its validation score minus a fixed gap, per checkpoint
        assert block["values"] == pytest.approx([v - 0.02 for v in block["validation_values"]])
    assert ev["verdict"] in ("win", "within noise", "loss") and ev["noise_std"] > 0 and ev["errors"] == []
    assert len(ev["seeds"]) == 3
    # baseline and winner were re-trained (not counted as trials), every checkpoint evaluated, the
    # re-runs' checkpoints deleted after
    run_dir = Path(summary["run_dir"])
    assert [t["number"] for t in summary["trials"]] == [0, 1, 2, 3]
    assert set(summary["reevaluation"]) == {"0", str(ev["best"]["number"])}
    evaluated = sorted(p.parent.parent.name for p in run_dir.glob("reeval/*/evaluate/evaluate.json"))
    numbers = sorted({0, ev["best"]["number"]})
    assert evaluated == [f"{n:04d}-seed{k}" for n in numbers for k in range(3)]
    assert not list(run_dir.glob("reeval/*/checkpoints"))
    assert json.loads((run_dir / "best" / "summary.json").read_text())["evaluation"] == ev
    assert f"test_score: baseline {ev['baseline']['mean']:.3f}" in proc.stderr
    assert f": {ev['verdict']}" in proc.stderr and f"verdict: {ev['verdict']}" in proc.stderr
