"""The MLflow tracker's pure parts: which trial is marked best, and what the runs record (no store)."""

from __future__ import annotations

from pathlib import Path

from automl.tracking.mlflow.best import BestTrial
from automl.tracking.mlflow.names import SEARCH, run_key
from automl.tracking.mlflow.records import numbers, outcome_tags, summary_record


def _recorder():
    ops: list[tuple[str, dict]] = []
    return ops, lambda op, **fields: ops.append((op, fields))


def test_best_trial_moves_the_tag_and_logs_best_so_far():
    ops, submit = _recorder()
    best = BestTrial(submit)
    best.mode = "min"
    best.trial_finished(0, "complete", 0.5)
    best.trial_finished(1, "complete", 0.7)   # worse when minimising
    best.trial_finished(2, "failed", 0.1)     # a failed trial never wins
    best.trial_finished(3, "complete", 0.2)
    assert best.current == (3, 0.2)
    assert ("untag", {"key": run_key(0), "tag": "best"}) in ops
    assert ("tags", {"key": run_key(3), "tags": {"best": "true"}}) in ops
    curve = [(f["step"], f["metrics"]["best_so_far"]) for op, f in ops if op == "metrics"]
    assert curve == [(0, 0.5), (1, 0.5), (2, 0.5), (3, 0.2)]


def test_the_controllers_best_wins_from_its_first_answer_on():
    ops, submit = _recorder()
    best = BestTrial(submit)
    best.trial_finished(0, "complete", 0.9)
    best.controller_says({"number": 1, "value": 0.8}, step=1)   # e.g. a higher rung
    best.trial_finished(2, "complete", 0.99)                     # no longer decided here
    assert best.current == (1, 0.8)
    assert ("tags", {"key": SEARCH, "tags": {"automl.best_trial": 1, "automl.best_value": 0.8}}) in ops
    assert not any(op == "tags" and f["key"] == run_key(2) for op, f in ops)


def test_summary_record_holds_the_evaluation_and_the_status():
    scores, tags, status = summary_record({
        "trials": 5, "stopped_reason": "budget", "ok": True,
        "evaluation": {"baseline": {"mean": 0.5}, "best": {"mean": 0.6}, "noise_std": 0.01, "gain": 0.1,
                       "verdict": "better", "split": "test", "metric": "acc"},
    })
    assert scores == {"search/trials": 5, "evaluation/baseline_mean": 0.5, "evaluation/best_mean": 0.6,
                      "evaluation/noise_std": 0.01, "evaluation/gain": 0.1}
    assert status == "stopped"
    assert tags == {"automl.status": "stopped", "automl.verdict": "better", "automl.evaluation_split": "test",
                    "automl.evaluation_metric": "acc", "automl.stopped_reason": "budget"}


def test_outcome_tags_and_final_numbers(tmp_path):
    tags = outcome_tags("pruned", {"reason": "asha", "best_checkpoint": "checkpoints/best.ckpt"}, tmp_path)
    assert tags == {"automl.state": "pruned", "automl.reason": "asha",
                    "automl.checkpoint": str(tmp_path / "checkpoints" / "best.ckpt")}
    absolute = Path("/elsewhere/last.ckpt")
    assert outcome_tags("complete", {"last_checkpoint": str(absolute)}, tmp_path)["automl.checkpoint"] == str(absolute)
    assert numbers({"duration_s": 3.0, "best_epoch": None, "gpu_seconds": float("nan")},
                   ("duration_s", "best_epoch", "gpu_seconds", "trial_value")) == {"duration_s": 3.0}
