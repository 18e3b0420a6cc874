"""The search controller on the toy trainer: budget and workers, baseline, pruning, pause-and-promote,
failures, invalid configs, promotion of the best epoch's checkpoint, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _search_helpers import automl_cli, results, toy_search
from automl.errors import AutomlError


def test_budget_8_two_workers_baseline_best_and_promotion(tmp_path):
    summary = toy_search(tmp_path, budget=8, workers=2, seed=3, overrides=["toy.sleep_s=0.05", "train.num_epochs=4"])
    run_dir = Path(summary["run_dir"])
    res = results(run_dir)
    assert sorted(res) == list(range(8)), "8 trials, numbered 0..7, none lost or duplicated"
    assert [t["number"] for t in summary["trials"]] == list(range(8))
    # trial 0 is the model's defaults
    assert json.loads((run_dir / "trials/0000/config.json").read_text()) == {
        "toy.lr": 0.01, "toy.width": 3, "toy.activation": "relu", "toy.momentum": 0.9}
    assert summary["baseline"]["number"] == 0 and summary["baseline"]["value"] is not None
    best = summary["best"]
    assert best["value"] >= summary["baseline"]["value"]
    assert summary["improvement_over_baseline"] == pytest.approx(best["value"] - summary["baseline"]["value"])
    # the two slots ran trials at the same time (their epoch intervals overlap)
    spans = []
    for number in res:
        times = [json.loads(line)["time"] for line in (run_dir / f"trials/{number:04d}/metrics.jsonl").read_text().splitlines()]
        spans.append((min(times), max(times)))
    assert any(a0 < b1 and b0 < a1 for i, (a0, a1) in enumerate(spans) for (b0, b1) in spans[i + 1:])
    # the promoted checkpoint is the best epoch's, evaluated and exported with parity; TensorRT skipped, with why
    promo = summary["promotion"]
    assert promo["trial"] == best["number"] and promo["best_epoch"] == best["best_epoch"]
    assert (run_dir / "best/model.ckpt").is_file() and (run_dir / "best/model.onnx").is_file()
    assert promo["evaluate"]["status"] == "ok" and promo["evaluate"]["epoch"] == best["best_epoch"]
    assert promo["export"]["parity"] is True
    assert promo["tensorrt"]["status"] == "skipped" and "TensorRT" in promo["tensorrt"]["reason"]
    # losing trials' checkpoints are gone, the winner's kept; the run folder has its header files
    for number in res:
        assert (run_dir / f"trials/{number:04d}/checkpoints").exists() == (number == best["number"])
    for name in ("search.json", "base_spec.yaml", "space.json", "journal", "summary.csv", "best/summary.json"):
        assert (run_dir / name).exists(), name
    assert (run_dir / "summary.csv").read_text().count("\n") == 9


def test_best_epoch_checkpoint_is_promoted_not_the_last(tmp_path):
    # a high noise level makes the last epoch rarely the best one
    summary = toy_search(tmp_path, budget=1, overrides=["toy.noise=0.5", "train.num_epochs=6"], seed=0)
    run_dir = Path(summary["run_dir"])
    metrics = [json.loads(l) for l in (run_dir / "trials/0000/metrics.jsonl").read_text().splitlines()]
    best_epoch = max(metrics, key=lambda m: m["metrics"]["val_score"])["epoch"]
    assert summary["best"]["best_epoch"] == best_epoch
    assert summary["promotion"]["evaluate"]["epoch"] == best_epoch  # the checkpoint evaluated is that epoch's
    assert summary["best"]["value"] == pytest.approx(max(m["metrics"]["val_score"] for m in metrics))


def test_median_pruning_fires(tmp_path):
    summary = toy_search(tmp_path, budget=10, workers=1, algorithm="random", seed=0,
                         overrides=["train.num_epochs=5"], promote=False)
    states = [t["state"] for t in summary["trials"]]
    assert states.count("pruned") >= 1, states
    pruned = [r for r in results(summary["run_dir"]).values() if r["state"] == "pruned"]
    assert all(r["epochs_done"] < 5 for r in pruned), "a pruned trial stopped before its last epoch"


def test_a_trial_that_trained_all_its_epochs_is_complete_not_pruned(tmp_path):
    # no warm-up, no start-up trials: the median pruner may stop any trial at any epoch but the last one
    summary = toy_search(tmp_path, budget=8, workers=1, algorithm="random", seed=0, promote=False,
                         overrides=["train.num_epochs=2", "toy.noise=0"],
                         settings={"pruner_warmup_epochs": 0, "pruner_startup_trials": 0})
    res = results(summary["run_dir"])
    assert all(r["state"] in ("complete", "pruned") for r in res.values()), res
    for r in res.values():
        assert (r["state"] == "complete") == (r["epochs_done"] == 2), r
    # the final epoch's value still reached the study (the pruner compares the trials that follow with it)
    import optuna

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(Path(summary["run_dir"]) / "journal")))
    study = optuna.load_study(study_name="s", storage=storage)
    for trial in study.get_trials():
        assert max(trial.intermediate_values) == res[trial.number]["epochs_done"] - 1


def test_job_json_is_written_where_a_resume_needs_it(tmp_path):
    from automl.spec import load_yaml

    # single fidelity: the study holds all a resume needs, so no job.json
    summary = toy_search(tmp_path, name="tpe", budget=2, promote=False, overrides=["train.num_epochs=2"])
    for number in (0, 1):
        folder = Path(summary["run_dir"]) / "trials" / f"{number:04d}"
        assert not (folder / "job.json").exists()
        assert (folder / "config.json").is_file() and (folder / "spec.yaml").is_file()
    # multi-fidelity: each stretch's epoch budget is kept with the job the worker ran
    summary = toy_search(tmp_path, name="asha", budget=3, algorithm="asha", promote=False,
                         overrides=["train.num_epochs=3"])
    for number in range(3):
        folder = Path(summary["run_dir"]) / "trials" / f"{number:04d}"
        job = json.loads((folder / "job.json").read_text())
        assert job["plugin"] == "toy" and job["trial_dir"] == str(folder) and job["max_epochs"] >= 1
        assert job["config"] == json.loads((folder / "config.json").read_text())
        assert job["spec"] == load_yaml(folder / "spec.yaml")
        assert job["extra"]["number"] == number


def test_asha_promotion_resumes_from_checkpoint(tmp_path):
    summary = toy_search(tmp_path, budget=9, workers=2, algorithm="asha", seed=1, overrides=["train.num_epochs=9"],
                         settings={"min_epochs": 1, "reduction_factor": 3}, promote=False)
    res = results(summary["run_dir"])
    assert len(res) == 9
    full = [r for r in res.values() if r["state"] == "complete"]
    assert full and all(r["epochs_done"] == 9 for r in full)
    promoted = [r for r in res.values() if r["extra"].get("kind") == "promote"]
    assert promoted, "some trial was promoted past its first rung"
    for r in promoted:
        # resumed from its checkpoint: every epoch ran exactly once, however many stretches it took
        assert r["epochs_run"] == r["epochs_done"]
        log = [json.loads(l)["epoch"] for l in Path(r["trial_dir"], "metrics.jsonl").read_text().splitlines()]
        assert log == list(range(r["epochs_done"])), "no epoch repeated after a promotion"
    # without resume each promotion would retrain from epoch 0: 1 + 3 + 9 for a trial reaching 9
    rungs = [1, 3, 9]
    from_scratch = sum(sum(x for x in rungs if x <= r["epochs_done"]) for r in res.values())
    total = sum(r["epochs_run"] for r in res.values())
    assert total < from_scratch
    assert summary["epochs_run_total"] == total


def test_each_failure_kind_is_recorded_and_survived(tmp_path):
    summary = toy_search(tmp_path, budget=6, workers=2, seed=0, trial_timeout=8, promote=False,
                         overrides=["train.num_epochs=2", "toy.fail_plan=raise@1,segfault@2,oom@3,hang@4"])
    res = results(summary["run_dir"])
    assert sorted(res) == list(range(6))
    reasons = {n: (r["state"], r["reason"] or "") for n, r in res.items()}
    assert reasons[1][0] == "failed" and "RuntimeError: toy trainer: injected failure" in reasons[1][1]
    assert reasons[2][0] == "failed" and "SIGSEGV" in reasons[2][1]
    assert reasons[3][0] == "failed" and "SIGKILL" in reasons[3][1]
    assert reasons[4][0] == "failed" and "timeout" in reasons[4][1]
    assert reasons[0][0] in ("complete", "pruned") and reasons[5][0] in ("complete", "pruned")
    assert "Traceback" in Path(res[1]["trial_dir"], "train.log").read_text()
    assert summary["stopped_reason"] is None


def test_consecutive_failures_stop_the_search(tmp_path):
    summary = toy_search(tmp_path, budget=10, workers=1, max_failures=3, overrides=["toy.fail=raise"], promote=False)
    assert len(summary["trials"]) == 3
    assert "3 trials failed in a row" in summary["stopped_reason"]
    assert summary["best"] is None


def test_invalid_config_never_starts(tmp_path):
    def bad_warm_start(setup):
        setup.warm_start_configs = [{**setup.space.defaults(), "toy.width": 99}]

    summary = toy_search(tmp_path, budget=3, edit=bad_warm_start, promote=False, overrides=["train.num_epochs=1"])
    res = results(summary["run_dir"])
    assert res[1]["state"] == "failed" and "invalid config" in res[1]["reason"] and "toy.width" in res[1]["reason"]
    assert not Path(res[1]["trial_dir"], "spec.yaml").exists(), "the trainer never saw it"
    assert res[0]["state"] == "complete" and res[2]["state"] in ("complete", "pruned")


def test_gpu_slots_on_a_simulated_inventory(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOML_SIMULATED_GPUS", "4")
    summary = toy_search(tmp_path, budget=4, gpus="0,1,2,3", gpus_per_trial=2, promote=False,
                         overrides=["train.num_epochs=1", "toy.sleep_s=0.3"], workers=None)
    run_dir = Path(summary["run_dir"])
    seen = {json.loads((run_dir / f"trials/{n:04d}/env.json").read_text())["CUDA_VISIBLE_DEVICES"] for n in range(4)}
    assert seen == {"0,1", "2,3"}
    header = json.loads((run_dir / "search.json").read_text())
    assert header["slots"] == [{"index": 0, "gpus": [0, 1]}, {"index": 1, "gpus": [2, 3]}]
    assert summary["gpu_hours"] > 0  # two GPUs per trial are charged


def test_existing_run_needs_resume(tmp_path):
    toy_search(tmp_path, budget=1, name="dup", overrides=["train.num_epochs=1"], promote=False)
    with pytest.raises(AutomlError, match="--resume"):
        toy_search(tmp_path, budget=1, name="dup", overrides=["train.num_epochs=1"])


def test_cli_run_json_status_best_and_errors(tmp_path):
    proc = automl_cli("run", "--model", "toy", "--budget", "3", "--name", "cli", "--seed", "0", "--json", "--no-tracking",
                      "train.num_epochs=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["baseline"]["number"] == 0
    assert [t["number"] for t in summary["trials"]] == [0, 1, 2]
    assert all({"number", "state", "value"} <= set(t) for t in summary["trials"])
    status = automl_cli("status", "cli", "--json", cwd=tmp_path)
    assert status.returncode == 0 and len(json.loads(status.stdout)["trials"]) == 3
    table = automl_cli("status", "cli", cwd=tmp_path, env={"COLUMNS": "200"})
    assert table.returncode == 0 and "complete" in table.stdout
    best = automl_cli("best", "cli", "--json", cwd=tmp_path)
    assert json.loads(best.stdout)["best"]["number"] == summary["best"]["number"]
    bad = automl_cli("run", "--model", "toy", "--algorithm", "tpee", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --algorithm 'tpee'") and "Traceback" not in bad.stderr
    assert "did you mean 'tpe'" in bad.stderr


def test_tao_settings_and_names(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("automl:\n  automl_algorithm: hyperband\n  automl_max_recommendations: 2\n"
                    "  automl_max_epochs: 3\n  automl_reduction_factor: 3\ntoy:\n  sleep_s: 0.0\n")
    from automl.search.controller import resolve_setup

    setup = resolve_setup(model="toy", spec_file=str(spec), output=tmp_path / "runs", name="tao")
    assert setup.algorithm == "hyperband" and setup.budget_trials == 2 and setup.max_epochs == 3
    assert setup.algorithm_settings["reduction_factor"] == 3
    assert resolve_setup(model="toy", algorithm="bayesian", output=tmp_path / "runs", name="b").algorithm == "tpe"


def test_time_budget_stops_new_trials(tmp_path):
    summary = toy_search(tmp_path, budget=50, workers=1, time_budget=2.0, promote=False,
                         overrides=["train.num_epochs=2", "toy.sleep_s=0.3"])
    assert len(summary["trials"]) < 50
    assert "time budget" in summary["stopped_reason"]
    assert all(t["state"] != "running" for t in summary["trials"])


def test_resume_a_finished_search_with_a_larger_budget(tmp_path):
    first = toy_search(tmp_path, name="grow", budget=3, seed=0, promote=False, overrides=["train.num_epochs=2"])
    second = toy_search(tmp_path, name="grow", budget=5, resume=True, promote=False)
    assert [t["number"] for t in second["trials"]] == [0, 1, 2, 3, 4]
    res = results(second["run_dir"])
    assert all(res[n]["extra"]["kind"] == "new" for n in range(5))
    assert [t["value"] for t in second["trials"][:3]] == [t["value"] for t in first["trials"]]


def test_a_result_json_lost_in_a_crash_is_rebuilt_on_resume(tmp_path):
    # the controller writes result.json after telling the study, once the next trial is under way: a
    # kill in between leaves a finished trial without it, which --resume rebuilds from the study and
    # the trial's metrics.jsonl and checkpoints
    first = toy_search(tmp_path, name="lost", budget=3, seed=0, promote=False, overrides=["train.num_epochs=3"])
    run_dir = Path(first["run_dir"])
    before = results(run_dir)
    # the best trial (its checkpoints are kept; losing trials' are deleted at the end of a search)
    n = first["best"]["number"]
    assert Path(before[n]["best_checkpoint"]).exists()
    (run_dir / "trials" / f"{n:04d}" / "result.json").unlink()
    second = toy_search(tmp_path, name="lost", budget=3, resume=True, promote=False)
    assert [t["number"] for t in second["trials"]] == [0, 1, 2]  # nothing rerun, nothing added
    rebuilt = results(run_dir)[n]
    for key in ("state", "value", "best_epoch", "epochs_done", "params", "best_checkpoint"):
        assert rebuilt[key] == before[n][key], key
    assert rebuilt["extra"] == {"rebuilt": True}


def test_plain_training_with_automl_off(tmp_path):
    proc = automl_cli("run", "--model", "toy", "--automl", "off", "--name", "plain", "--json", "train.num_epochs=2",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["epochs_run"] == 2 and Path(out["results_dir"], "checkpoints", "best.ckpt").is_file()
    assert len(Path(out["results_dir"], "metrics.jsonl").read_text().splitlines()) == 2


def test_sqlite_storage_with_parallel_workers(tmp_path):
    db = tmp_path / "study.db"
    summary = toy_search(tmp_path, budget=6, workers=2, seed=0, storage=f"sqlite:///{db}", promote=False,
                         overrides=["train.num_epochs=2"])
    assert [t["state"] for t in summary["trials"]].count("failed") == 0
    import optuna

    study = optuna.load_study(study_name="s", storage=f"sqlite:///{db}")
    assert len(study.trials) == 6 and all(t.state.is_finished() for t in study.trials)


def test_a_search_with_a_sqlite_storage_opens_it_once(tmp_path, monkeypatch, capsys):
    """The CLI's checks before the run folder exists (the storage opens, the name is free) and the study
    itself share one storage: one RDBStorage per command, new search or --resume."""
    from optuna.storages import RDBStorage

    from _cli_helpers import run_cli
    from automl.backends.optuna import storage as optuna_storage

    opened, calls = [], []
    real_init, real_open = RDBStorage.__init__, optuna_storage.open_storage

    def counting_init(self, *args, **kwargs):
        opened.append(args[0] if args else kwargs.get("url"))
        real_init(self, *args, **kwargs)

    def counting_open(setup):
        calls.append(setup.name)
        return real_open(setup)

    monkeypatch.setattr(RDBStorage, "__init__", counting_init)
    monkeypatch.setattr(optuna_storage, "open_storage", counting_open)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    args = ["run", "--model", "toy", "--name", "once", "--output", str(tmp_path / "runs"), "--storage", url,
            "--no-tracking", "--no-promote", "--reeval-top", "0", "--seed", "0", "train.num_epochs=1"]
    code, _, err = run_cli([*args, "--budget", "1"], capsys)
    assert code in (0, None), err[-2000:]
    assert (opened, calls) == ([url], ["once"])
    opened.clear()
    calls.clear()
    code, _, err = run_cli([*args, "--budget", "2", "--resume"], capsys)
    assert code in (0, None), err[-2000:]
    assert (opened, calls) == ([url], ["once"])
    assert sorted(results(tmp_path / "runs" / "once")) == [0, 1]
