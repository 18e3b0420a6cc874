"""Both backends, every algorithm, on a space with a dependent parameter: the same rules.

The space is toy's plus ``toy.batch``, a multiple of ``toy.width`` (``math_cond: "/ depends_on"``, the
rule ml_recog's and reid's ``train.batch_size`` follow). In Ray's form such a parameter is a
``tune.sample_from`` decoded from a helper unit, which is what crashed Ray's fixed points (the
baseline) before. The toy trainer ignores ``toy.batch``; the trials are real ones (worker processes,
Ray trials). The Ray runs start a private local Ray in this process (slow: ~1 min per algorithm on
two cores).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _search_helpers import results
from automl.plugins import get_trainer
from automl.trials import algorithms
from automl.search.controller import resolve_setup, run_search
from automl.tracking import NullTracker


@pytest.fixture(scope="module")
def dependent_schema(tmp_path_factory) -> Path:
    schema = json.loads(Path(get_trainer("toy").schema_path()).read_text())
    schema["default"]["toy"]["batch"] = 12
    schema["automl_default_parameters"].append("toy.batch")
    schema["properties"]["toy"]["properties"]["batch"] = {
        "type": "int", "default": 12, "minimum": 2, "maximum": 48, "math_cond": "/ depends_on",
        "depends_on": "toy.width", "description": "A multiple of toy.width (like batch_size and num_instance)."}
    path = tmp_path_factory.mktemp("schema") / "toy_dependent.train.schema.json"
    path.write_text(json.dumps(schema))
    return path


def dependent_search(tmp_path: Path, schema: Path, backend: str, algorithm: str, *, budget: int = 5,
                     epochs: int = 9, overrides=(), settings=None, max_failures: int = 5):
    from automl.space import compile_space, load_schema

    setup = resolve_setup(model="toy", budget=budget, workers=1 if algorithm == "grid" else 2, name=f"{backend}-{algorithm}", seed=0,
                          output=tmp_path / "runs", algorithm=algorithm, settings=settings or {},
                          overrides=[f"train.num_epochs={epochs}", *overrides], max_failures=max_failures,
                          command="test")
    setup.space = compile_space(load_schema(schema), fixed=dict(setup.base_spec))
    assert "toy.batch" in setup.space.names and "toy.width" in setup.space.to_ray()
    summary = run_search(setup, backend=backend, tracker=NullTracker(), promote_best=False, reeval_top=0)
    return setup, summary, results(setup.run_dir)


#: what the two backends keep privately: their storage and worker plumbing; everything else is shared
BACKEND_PRIVATE = {"journal", "study.db", "ray", "workers"}
TRIAL_PRIVATE = {"job.json", "result.prev.json", "env.json"}


def cases() -> list:
    """(backend, algorithm) for every algorithm a backend offers; Ray's are slow (a Ray per process,
    trials as Tune trials). bohb on Ray needs hpbandster, which is not installed here."""
    out = []
    for backend in (algorithms.OPTUNA, algorithms.RAY):
        for a in algorithms.REGISTRY.values():
            if backend in a.backends and not (backend == algorithms.RAY and a.name == "bohb"):
                marks = [pytest.mark.slow] if backend == algorithms.RAY else []
                out.append(pytest.param(backend, a.name, marks=marks, id=f"{backend}-{a.name}"))
    return out


@pytest.mark.parametrize("backend,algorithm", cases())
def test_every_algorithm_on_a_space_with_a_dependent_parameter(tmp_path, dependent_schema, backend, algorithm, capfd):
    """The baseline runs exactly, only valid configs run, multi-fidelity trials stop on the registry's
    rung ladder, no trial is left paused, the run folder has the same files on both backends, and no
    traceback reaches the console (Tune's checkpoint cleanup printed one under PBT)."""
    setup, summary, trials = dependent_search(tmp_path, dependent_schema, backend, algorithm, budget=4, epochs=9)
    assert "Traceback" not in capfd.readouterr().err
    space = setup.space
    assert sorted(trials) == list(range(4)) and summary["trials_used"] == 4
    configs = {n: json.loads((setup.run_dir / "trials" / f"{n:04d}" / "config.json").read_text()) for n in trials}
    assert configs[0] == space.defaults()  # the baseline, its dependent value included
    for number, config in configs.items():
        assert space.check(config) == [], (number, config)
        assert config["toy.batch"] % config["toy.width"] == 0
    assert {n: r["reason"] for n, r in trials.items() if r["state"] not in ("complete", "pruned")} == {}
    assert summary["best"] is not None
    if algorithm in algorithms.MULTI_FIDELITY:
        ladder = algorithms.rungs_of(setup).ladder
        assert ladder == [1, 3, 9]  # min_epochs max(1, 9 // 9), eta 3: the same on both backends
        assert {r["epochs_done"] for r in trials.values()} <= set(ladder), trials
    for r in trials.values():  # a promoted trial resumes from its checkpoint: no epoch trained twice
        lines = (Path(r["trial_dir"]) / "metrics.jsonl").read_text().splitlines()
        own = [json.loads(x) for x in lines if not json.loads(x).get("inherited")]
        assert r["epochs_run"] == len(own)
    top = {p.name for p in setup.run_dir.iterdir()} - BACKEND_PRIVATE
    # best/ and reeval/ are the controller's, written the same way after either backend
    assert top - {"best", "reeval"} == {"search.json", "search.lock", "base_spec.yaml", "space.json", "trials",
                                        "summary.csv"}
    for folder in (setup.run_dir / "trials").iterdir():
        files = {p.name for p in folder.iterdir()} - TRIAL_PRIVATE - {"checkpoints"}  # losers' are deleted
        assert files == {"config.json", "spec.yaml", "metrics.jsonl", "result.json", "train.log"}, folder


@pytest.mark.parametrize("backend", [algorithms.OPTUNA, pytest.param(algorithms.RAY, marks=pytest.mark.slow)])
def test_the_same_failure_streak_message(tmp_path, dependent_schema, backend):
    _, summary, trials = dependent_search(tmp_path, dependent_schema, backend, "random", budget=6, epochs=2,
                                          overrides=["toy.fail=raise"], max_failures=2)
    assert summary["stopped_reason"].startswith("stopped: 2 trials failed in a row (last: trial ")
    assert summary["stopped_reason"].endswith(": RuntimeError: toy trainer: injected failure)")
    assert all(r["state"] == "failed" for r in trials.values())


def test_a_stretch_cut_off_without_a_result_still_counts_its_epochs(tmp_path):
    """A trial killed mid-run (no result.json) and run again from its last checkpoint: epochs_run
    counts the epochs of the cut-off stretch too, the one in flight at the kill included (it ran twice)."""
    import shutil

    from automl.reporting import FileReporter, read_metrics
    from automl.trials.worker import run_trial
    from automl.spec import load_yaml

    spec = load_yaml(get_trainer("toy").spec_template())
    first = run_trial("toy", spec, tmp_path / "t", FileReporter(tmp_path / "t"), max_epochs=4)
    assert first["epochs_run"] == 4
    # the kill: result.json never written; the last checkpoint Tune/Optuna kept is from epoch 2, so
    # epoch 3 (in flight) is trained again
    (tmp_path / "t" / "result.json").unlink()
    shutil.copy(tmp_path / "t" / "checkpoints" / "last.ckpt", tmp_path / "epoch3.ckpt")
    import torch

    state = torch.load(tmp_path / "epoch3.ckpt", weights_only=True)
    state["epoch"] = torch.tensor(2)
    torch.save(state, tmp_path / "epoch2.ckpt")
    resumed = {**spec, "train": {**spec["train"], "resume_training_checkpoint_path": str(tmp_path / "epoch2.ckpt")}}
    second = run_trial("toy", resumed, tmp_path / "t", FileReporter(tmp_path / "t"))
    assert len(read_metrics(tmp_path / "t")) == 4 + (9 - 3)
    assert second["epochs_run"] == 4 + 6 and second["epochs_done"] == 9


def test_a_pbt_segment_does_not_count_the_history_it_starts_from(tmp_path):
    from automl.reporting import FileReporter
    from automl.trials.outcome import INHERITED
    from automl.trials.worker import run_trial
    from automl.spec import load_yaml

    spec = load_yaml(get_trainer("toy").spec_template())
    source = run_trial("toy", spec, tmp_path / "a", FileReporter(tmp_path / "a"), max_epochs=3)
    segment = tmp_path / "b"
    segment.mkdir()
    lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    segment.joinpath("metrics.jsonl").write_text("".join(json.dumps({**json.loads(x), INHERITED: True}) + "\n"
                                                         for x in lines))
    resumed = {**spec, "train": {**spec["train"], "resume_training_checkpoint_path": source["last_checkpoint"]}}
    result = run_trial("toy", resumed, segment, FileReporter(segment), max_epochs=5)
    assert result["epochs_run"] == 2 and result["epochs_done"] == 5


def test_one_failure_streak_rule():
    from automl.trials.records import TrialRecord
    from automl.trials.outcome import FailureStreak

    streak = FailureStreak(2)
    assert streak.add(TrialRecord(0, "failed", reason="boom")) is None
    assert streak.add(TrialRecord(1, "paused")) is None  # a paused trial trained fine: the streak ends
    assert streak.add(TrialRecord(2, "failed", reason="boom")) is None
    assert streak.add(TrialRecord(3, "failed", reason="oom")) == "stopped: 2 trials failed in a row (last: trial 3: oom)"
    assert FailureStreak(0).add(TrialRecord(0, "failed")) is None  # 0: never stop


def test_one_best_so_far_rule_kept_as_trials_finish():
    """Both backends' search_progress: the kept best equals a scan of every finished trial, also when the
    best trial itself is announced again with a worse value (a promoted trial's final run)."""
    from automl.plugins import Monitor
    from automl.trials.outcome import BestSoFar, best_so_far
    from automl.trials.records import TrialRecord

    monitor, records = Monitor("acc", "max"), {}
    kept = BestSoFar(monitor)
    for number, state, value in [(0, "failed", None), (1, "complete", 0.5), (2, "pruned", 0.7), (3, "complete", 0.6),
                                 (2, "complete", 0.4), (4, "failed", None), (5, "paused", 0.65)]:
        records[number] = record = TrialRecord(number, state, value=value)
        best = kept.after(record, records.values())
        assert best == best_so_far(records.values(), monitor), number
    assert best.number == 5 and BestSoFar(monitor).after(records[0], [records[0]]) is None


def test_one_algorithm_registry():
    from automl.errors import AutomlError

    assert algorithms.canonical("bayesian") == "tpe" and algorithms.canonical("successive_halving") == "asha"
    # the same defaults for both backends, one rule each
    s = algorithms.resolve_settings("asha", {}, max_epochs=27, budget=10)
    assert s["min_epochs"] == 3 and s["reduction_factor"] == 3
    s = algorithms.resolve_settings("pbt", {"quantile_fraction": "0.5"}, max_epochs=9, budget=10)
    assert s["perturbation_interval"] == 3 and s["quantile_fraction"] == 0.5 and s["population"] == 4
    with pytest.raises(AutomlError, match="did you mean 'quantile_fraction'"):
        algorithms.check_setting_names(["quantile"], "pbt")
    with pytest.raises(AutomlError, match="must be at least 2"):
        algorithms.resolve_settings("asha", {"reduction_factor": 1}, max_epochs=9, budget=10)
    with pytest.raises(AutomlError, match="not available with --backend ray"):
        algorithms.check_backend("grid", "ray")
    with pytest.raises(AutomlError, match="needs --algorithm"):
        algorithms.check_objectives("asha", 2)
    assert set(algorithms.MULTI_OBJECTIVE) == {"tpe", "random", "qmc", "nsga2"}


def test_resume_keeps_the_backend_and_address_the_search_recorded(tmp_path):
    from types import SimpleNamespace

    from automl.errors import AutomlError
    from automl.search.controller import resumed_backend
    from automl.trials import rundir

    rundir.write_json(tmp_path / rundir.SEARCH_JSON, {"backend": "ray", "backend_options": {"address": "10.0.0.1:6379"}})
    resumed = SimpleNamespace(resume=True, run_dir=tmp_path, name="s")
    assert resumed_backend(resumed, None, None) == ("ray", {"address": "10.0.0.1:6379"})
    assert resumed_backend(resumed, "ray", {"address": "auto"}) == ("ray", {"address": "auto"})
    with pytest.raises(AutomlError, match="ran with --backend ray, not optuna"):
        resumed_backend(resumed, "optuna", None)
    fresh = SimpleNamespace(resume=False, run_dir=tmp_path, name="s")
    assert resumed_backend(fresh, None, None) == ("optuna", {})
    with pytest.raises(AutomlError, match="--address is an option of --backend ray"):
        resumed_backend(fresh, None, {"address": "auto"})
