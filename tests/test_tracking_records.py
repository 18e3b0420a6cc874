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
    assert curve == [(1, 0.5), (2, 0.5), (3, 0.5), (4, 0.2)]


def test_best_so_far_is_monotone_over_trials_finished():
    """Logged when a trial finishes, at step = trials finished: a late-finishing worse trial does not pull
    the curve down (it used to be logged at the trial's number: [(0,.2),(1,.2),(2,.3),(3,.2)]); a trial
    paused at a rung is counted when it finishes."""
    ops, submit = _recorder()
    best = BestTrial(submit)
    for number, state, value in ((0, "complete", 0.2), (1, "pruned", 0.9), (3, "complete", 0.3),
                                 (2, "complete", 0.25), (5, "paused", 0.95), (4, "failed", None)):
        best.trial_finished(number, state, value)
    curve = [(f["step"], f["metrics"]["best_so_far"]) for op, f in ops if op == "metrics"]
    assert curve == [(1, 0.2), (2, 0.2), (3, 0.3), (4, 0.3), (5, 0.3)]
    assert [value for _, value in curve] == sorted(value for _, value in curve)


def test_the_optimisation_history_png_draws_the_same_curve(tmp_path):
    import json
    import os

    from automl.tracking.plots import best_curve, collect_trials, render

    for finish, (number, state, value) in enumerate(((0, "complete", 0.2), (1, "pruned", 0.9), (3, "complete", 0.3),
                                                     (2, "complete", 0.25))):
        folder = tmp_path / "trials" / f"{number:04d}"
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps({"number": number, "state": state, "value": value,
                                                        "best_epoch": 0, "params": {"lr": 0.1 * (number + 1)}}))
        os.utime(folder / "result.json", (1000 + finish, 1000 + finish))
    rows = collect_trials(tmp_path, "acc")
    assert [(count, best) for count, _, best in best_curve(rows, "max")] == [(1, 0.2), (3, 0.3), (4, 0.3)]
    written = {p.name for p in render(tmp_path, tmp_path / "plots", "acc", "max", html=False)}
    assert {"summary.csv", "learning_curves.png", "optimization_history.png"} == written


def test_one_winner_rule_on_ties():
    """Equal values: the earlier best epoch wins, then the lower trial number, whatever order trials
    finish in; the tracker, the controller's ranking and best_so_far agree."""
    from automl.plugins import Monitor
    from automl.trials.outcome import best_so_far, ranked, winner_key
    from automl.trials.records import TrialRecord

    assert winner_key("max", 0.5, 1, 3) < winner_key("max", 0.5, 2, 1) < winner_key("max", 0.5, 2, 2)
    assert winner_key("min", 0.1, 9, 9) < winner_key("min", 0.2, 0, 0)
    finished = [(3, 0.5, 2), (2, 0.5, 1), (1, 0.5, 1), (0, 0.4, 0)]  # (number, value, best epoch), finish order
    ops, submit = _recorder()
    best = BestTrial(submit)
    for number, value, epoch in finished:
        best.trial_finished(number, "complete", value, epoch)
    records = [TrialRecord(number=n, state="complete", value=v, best_epoch=e) for n, v, e in finished]
    monitor = Monitor("acc", "max")
    assert best.current[0] == ranked(records, monitor)[0].number == best_so_far(records, monitor).number == 1
    tagged = [f["key"] for op, f in ops if op == "tags" and f["tags"] == {"best": "true"}]
    assert tagged[-1] == run_key(1)


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


def test_plots_are_self_contained_and_quiet_when_no_trial_completes(tmp_path, capfd):
    """No matplotlib or Optuna warning reaches the console when nothing completed, and the HTML plots
    carry plotly.js themselves (MLflow's preview works offline)."""
    import json
    import warnings

    from automl.tracking.plots import render

    for number in (0, 1):
        folder = tmp_path / "trials" / f"{number:04d}"
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps({"number": number, "state": "failed", "value": None,
                                                        "params": {"lr": 0.1 * (number + 1)}}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = render(tmp_path, tmp_path / "plots", "acc", "max", html=True)
    assert [str(w.message) for w in caught] == []
    assert capfd.readouterr().err == ""
    pages = [p for p in written if p.suffix == ".html"]
    assert pages, "Optuna's plots render even without a completed trial"
    for page in pages:
        text = page.read_text()
        assert "<script src=\"http" not in text and "Plotly.newPlot" in text and len(text) > 1_000_000
