"""The Ray Tune backend (``automl run --backend ray``) on a real two-node Ray cluster on this machine.

The cluster (tests/_ray_cluster.py: ``ray start --head`` + ``ray start --address``, one CPU each) is
started once for the module and stopped afterwards. The searches run the ``toy`` trainer through the
real ``automl`` command line, so the controller, the tracker (MLflow, embedded store) and promotion are
the real ones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _ray_cluster import HEAD_RESOURCE, WORKER_RESOURCE, RayCluster  # noqa: E402

from automl.backends.ray import backend as ray_backend, cluster as ray_checks, search as ray_search  # noqa: E402
from automl.trials.records import SearchSetup  # noqa: E402
from automl.errors import AutomlError  # noqa: E402
from automl.trials.window import WindowedSampler  # noqa: E402
from automl.plugins import Monitor, get_trainer  # noqa: E402
from automl.trials.algorithms import resolve_settings  # noqa: E402

AUTOML = str(Path(sys.executable).with_name("automl"))
#: what the two backends keep privately: their storage and worker plumbing; everything else is shared
BACKEND_PRIVATE = ("journal", "study.db", "ray", "workers")
TRIAL_PRIVATE = ("job.json", "job.payload.json")


def toy_space():
    from automl.space import compile_space, load_schema

    return compile_space(load_schema(get_trainer("toy").schema_path()))


def automl_run(*args: str, env: dict | None = None, timeout: float = 240) -> dict:
    proc = subprocess.run([AUTOML, "run", "--model", "toy", "--json", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def results(run_dir: Path) -> dict[int, dict]:
    return {int(p.parent.name): json.loads(p.read_text()) for p in sorted(run_dir.glob("trials/*/result.json"))}


@pytest.fixture(scope="module")
def cluster():
    with RayCluster(num_cpus=1) as c:
        yield c


# -- no cluster needed ------------------------------------------------------------------------------
def test_remote_cluster_with_local_storage_fails_at_once(tmp_path):
    started = time.time()
    proc = subprocess.run([AUTOML, "run", "--model", "toy", "--budget", "2", "--backend", "ray",
                           "--address", "10.255.255.1:6379", "--output", str(tmp_path), "--name", "r"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: --backend ray on a remote cluster needs storage every node can reach")
    assert "--storage" in line and "s3://" in line
    assert time.time() - started < 60  # refused before any connection attempt (that would hang)


def test_storage_rules():
    assert not ray_checks.address_is_remote(None)
    assert not ray_checks.address_is_remote("auto")
    assert not ray_checks.address_is_remote("127.0.0.1:6379")
    assert ray_checks.address_is_remote("10.255.255.1:6379")
    ray_checks.check_storage(Path("/tmp/x"), "s3://bucket/x", remote=False)
    with pytest.raises(AutomlError, match="--storage"):
        ray_checks.check_storage(Path("/tmp/x"), None, remote=True)
    with pytest.raises(AutomlError, match="run folder"):  # an object store for Tune, but trial folders local
        ray_checks.check_storage(Path("/tmp/x"), "s3://bucket/x", remote=True)


def test_resources_per_trial():
    setup = SearchSetup(name="x", run_dir=Path("/tmp/x"), model="toy", base_spec={}, space=None,
                        space_path=Path("/tmp/x/space.json"), gpus_per_trial=1, trials_per_gpu=4)
    assert ray_checks.trial_resources(setup, cluster_gpus=8) == {"cpu": 1.0, "gpu": 0.25}
    setup.trials_per_gpu, setup.gpus_per_trial = 1, 2
    assert ray_checks.trial_resources(setup, cluster_gpus=8, cpus_per_trial=4) == {"cpu": 4.0, "gpu": 2.0}
    assert ray_checks.trial_resources(setup, cluster_gpus=0) == {"cpu": 1.0}  # CPU-only cluster


def test_algorithm_mapping():
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, PopulationBasedTraining
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch

    space = toy_space()

    def built(algorithm):
        setup = SearchSetup(name="x", run_dir=Path("/tmp/x"), model="toy", base_spec={}, space=space,
                            space_path=Path("/tmp/x/space.json"), algorithm=algorithm, seed=0, workers=2,
                            objectives=[Monitor("val_score", "max")], max_epochs=9,
                            algorithm_settings=resolve_settings(algorithm, {}, max_epochs=9, budget=10))
        return ray_search.build_search(setup)

    search, scheduler, param_space = built("tpe")
    assert isinstance(search.inner, OptunaSearch) and isinstance(scheduler, FIFOScheduler) and param_space is None
    # the same TPE as the embedded backend's, history window included (one make_sampler for both)
    assert isinstance(search.inner._sampler, WindowedSampler) and search.inner._sampler.window == 250
    # the baseline comes first, then every suggestion passes the space's check
    assert space.from_ray(search.suggest("t0")) == space.defaults()
    for i in range(1, 15):
        assert space.check(space.from_ray(search.suggest(f"t{i}"))) == []
    search, scheduler, param_space = built("random")
    assert isinstance(search, BasicVariantGenerator) and set(space.names) <= set(param_space)
    assert isinstance(built("asha")[1], ASHAScheduler)
    assert isinstance(built("hyperband")[1], HyperBandScheduler)
    pbt = built("pbt")[1]
    assert isinstance(pbt, PopulationBasedTraining)
    explore = ray_search._ExploreRepair(space, seed=0)
    bad = space.to_ray_config(space.defaults()) | {"toy.width": 99}
    assert space.check(space.from_ray(explore(bad))) == []
    with pytest.raises(AutomlError, match="not available with --backend ray"):
        built("grid")


def test_every_sampler_pickles():
    """Tune pickles the searcher, sampler included (tuner.pkl, read by --resume): Optuna 5.1's NSGA-II
    holds a thread lock, which broke `--backend ray --algorithm nsga2` at tune.Tuner()."""
    import pickle

    from automl.trials.algorithms import REGISTRY, make_sampler

    for name in REGISTRY:
        sampler = make_sampler(name, 0, None, 2 if name == "nsga2" else 1, tpe_window=250)
        assert type(pickle.loads(pickle.dumps(sampler))) is type(sampler), name


def test_bohb_needs_hpbandster():
    try:
        import hpbandster  # noqa: F401
    except ImportError:
        with pytest.raises(AutomlError, match="pip install hpbandster ConfigSpace"):
            ray_checks.check_algorithm("bohb")
    else:
        ray_checks.check_algorithm("bohb")


# -- on the two-node cluster --------------------------------------------------------------------------
def test_search_runs_on_both_nodes_with_tracking(cluster, tmp_path):
    summary = automl_run("--budget", "6", "--workers", "2", "--backend", "ray", "--address", cluster.address,
                         "--output", str(tmp_path), "--name", "two", "--seed", "3",
                         "train.num_epochs=3", "toy.sleep_s=0.3", env=cluster.env)
    run_dir = tmp_path / "two"
    res = results(run_dir)
    assert sorted(res) == list(range(6)) and summary["trials_used"] == 6
    assert all(r["state"] == "complete" for r in res.values())
    # trial 0 is the baseline; every config passes the space's check
    space = toy_space()
    assert res[0]["params"] == space.defaults()
    for r in res.values():
        assert space.check(json.loads((Path(r["trial_dir"]) / "config.json").read_text())) == []
    # trials ran on both nodes
    nodes = {r["extra"]["node_id"] for r in res.values()}
    assert nodes == {cluster.node_of(HEAD_RESOURCE), cluster.node_of(WORKER_RESOURCE)}
    # the promoted winner is the best trial's best-epoch checkpoint
    assert summary["best"]["number"] == max(res, key=lambda n: res[n]["value"])
    assert (run_dir / "best" / "model.ckpt").is_file()
    # MLflow: a parent run for the search and one finished child per trial with its epochs
    from mlflow.tracking import MlflowClient

    info = json.loads((run_dir / "mlflow.json").read_text())
    client = MlflowClient(tracking_uri=info["tracking_uri"])
    parent = client.get_run(info["runs"]["search"])
    assert parent.info.status == "FINISHED"
    for number, r in res.items():
        child = client.get_run(info["runs"][f"trial/{number:04d}"])
        assert child.info.status == "FINISHED"
        assert child.data.tags.get("mlflow.parentRunId") == parent.info.run_id
        history = client.get_metric_history(child.info.run_id, "val_score")
        assert len(history) == 3 and max(m.value for m in history) == pytest.approx(r["value"])


def _tree(run_dir: Path) -> set[str]:
    out = set()
    for path in run_dir.rglob("*"):
        rel = path.relative_to(run_dir).parts
        if rel[0] in BACKEND_PRIVATE or rel[0] in ("mlartifacts",) or rel[-1] in TRIAL_PRIVATE:
            continue  # MLflow artifact folders are named by run id; compared below by count
        out.add("/".join(rel))
    return out


@pytest.mark.slow
def test_same_run_folder_layout_as_embedded(cluster, tmp_path):
    common = ["--budget", "3", "--workers", "2", "--seed", "1", "--output", str(tmp_path), "train.num_epochs=2"]
    automl_run("--name", "embedded", *common)
    automl_run("--name", "ray", "--backend", "ray", "--address", cluster.address, *common, env=cluster.env)
    embedded, on_ray = _tree(tmp_path / "embedded"), _tree(tmp_path / "ray")
    assert embedded == on_ray, (sorted(embedded ^ on_ray))
    for name in ("search.json", "base_spec.yaml", "space.json", "summary.csv", "best/model.ckpt",
                 "trials/0000/config.json", "trials/0000/spec.yaml", "trials/0000/metrics.jsonl",
                 "trials/0000/result.json", "trials/0000/train.log"):
        assert name in on_ray
    assert (tmp_path / "ray" / "ray" / "trial_numbers.json").is_file()
    runs = {name: len(list((tmp_path / name / "mlartifacts").iterdir())) for name in ("ray", "embedded")}
    assert runs["ray"] == runs["embedded"]


def test_driver_killed_and_resumed(cluster, tmp_path):
    epochs = 6
    args = [AUTOML, "run", "--model", "toy", "--json", "--budget", "5", "--workers", "2", "--backend", "ray",
            "--address", cluster.address, "--output", str(tmp_path), "--name", "k", "--seed", "2",
            f"train.num_epochs={epochs}", "toy.sleep_s=0.8"]
    run_dir = tmp_path / "k"
    env = {**os.environ, **cluster.env}
    driver = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                              env=env)

    def mid_trial_after_a_state_save() -> bool:
        """Two trials done, one part-way, and Tune saved its state after every started trial started
        (a trial started after the last save is unknown to the restored experiment: see the module
        docstring of automl.backends.ray.backend, 'Known limit')."""
        states = list((run_dir / "ray").glob("experiment_state-*.json"))
        if len(results(run_dir)) < 2 or not states:
            return False
        saved = max(p.stat().st_mtime for p in states)
        if any(p.stat().st_mtime >= saved for p in run_dir.glob("trials/*/config.json")):
            return False
        for metrics in run_dir.glob("trials/*/metrics.jsonl"):
            lines = metrics.read_text().splitlines()
            if not (metrics.parent / "result.json").exists() and 2 <= len(lines) <= epochs - 2:
                if saved > json.loads(lines[0])["time"]:
                    return True
        return False

    try:
        deadline = time.time() + 180
        while not mid_trial_after_a_state_save():
            assert driver.poll() is None, "the search ended before it could be killed"
            assert time.time() < deadline, "the search did not get far enough to be killed"
            time.sleep(0.1)
        os.kill(driver.pid, signal.SIGKILL)  # the `automl run` process itself, at once
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            os.kill(driver.pid, signal.SIGKILL)
    before = results(run_dir)
    interrupted = {int(p.parent.name) for p in run_dir.glob("trials/*/metrics.jsonl")} - set(before)
    assert interrupted

    proc = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    after = results(run_dir)
    assert sorted(after) == list(range(5))  # every number once, none lost, none repeated
    assert summary["trials_used"] == 5 and [t["number"] for t in summary["trials"]] == list(range(5))
    assert all(r["state"] == "complete" for r in after.values())
    for number, r in before.items():  # finished trials were kept: no epoch trained again
        assert after[number]["value"] == r["value"] and after[number]["epochs_run"] == r["epochs_run"]
    for number in interrupted:  # interrupted ones went on from their checkpoint, not from scratch
        records = [json.loads(line) for line in
                   (run_dir / "trials" / f"{number:04d}" / "metrics.jsonl").read_text().splitlines()]
        assert sorted({r["epoch"] for r in records}) == list(range(epochs))
        assert len(records) < 2 * epochs - 1  # at most the epoch in flight at the kill ran twice
        assert after[number]["epochs_done"] == epochs
    numbers = json.loads((run_dir / "ray" / "trial_numbers.json").read_text())
    assert sorted(numbers.values()) == list(range(5))


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["asha", "hyperband", "pbt"])
def test_schedulers_on_the_cluster(cluster, tmp_path, algorithm):
    """Tune's schedulers stop, pause and resume trials; every trial still ends with one final state."""
    summary = automl_run("--budget", "6", "--workers", "2", "--backend", "ray", "--address", cluster.address,
                         "--algorithm", algorithm, "--output", str(tmp_path), "--name", algorithm, "--seed", "0",
                         "--setting", "perturbation_interval=2", "train.num_epochs=4", "toy.sleep_s=0.2",
                         env=cluster.env)
    res = results(tmp_path / algorithm)
    assert sorted(res) == list(range(6)) and summary["trials_used"] == 6
    assert {r["state"] for r in res.values()} <= {"complete", "pruned"}
    assert res[0]["params"] == toy_space().defaults()
    for r in res.values():
        assert toy_space().check(r["params"]) == []
        assert r["epochs_done"] == len({int(e) for e in
                                        (json.loads(x)["epoch"] for x in
                                         (Path(r["trial_dir"]) / "metrics.jsonl").read_text().splitlines())})
    if algorithm == "asha":  # rungs at 1 and 3 epochs: some trials are stopped early
        assert any(r["state"] == "pruned" and r["epochs_done"] < 4 for r in res.values())


def test_fixed_points_leave_dependent_values_to_tune(tmp_path):
    """A parameter that depends on another is a tune.sample_from; the baseline's point carries its
    helper unit, and Tune's own placeholder resolution decodes the same value (a plain value in the
    point crashed it: "'int' object is not subscriptable")."""
    from collections import defaultdict

    from ray.tune.impl.placeholder import inject_placeholders, resolve_placeholders

    from automl.space import compile_space, load_schema

    schema = json.loads(Path(get_trainer("toy").schema_path()).read_text())
    schema["automl_default_parameters"].append("toy.batch")
    schema["properties"]["toy"]["properties"]["batch"] = {"type": "int", "default": 12, "minimum": 2, "maximum": 48,
                                                         "math_cond": "/ depends_on", "depends_on": "toy.width"}
    (tmp_path / "s.json").write_text(json.dumps(schema))
    space = compile_space(load_schema(tmp_path / "s.json"))
    for algorithm in ("random", "hyperband", "pbt"):
        setup = SearchSetup(name="x", run_dir=tmp_path, model="toy", base_spec={}, space=space,
                            space_path=tmp_path / "space.json", algorithm=algorithm, seed=0, workers=2,
                            objectives=[Monitor("val_score", "max")], max_epochs=9,
                            algorithm_settings=resolve_settings(algorithm, {}, max_epochs=9, budget=10))
        param_space = space.to_ray()
        [point] = ray_search._fixed_points(setup, param_space)
        assert "toy.batch" not in point and "toy.batch__u" in point
        replaced = defaultdict(list)
        config = {**inject_placeholders(param_space, replaced), **point}
        resolve_placeholders(config, replaced)
        assert space.from_ray(config) == space.defaults()
        ray_search.build_search(setup)  # every algorithm over this space builds
    # a searcher without a param_space (OptunaSearch) gets the whole config
    setup.algorithm = "tpe"
    assert ray_search._fixed_points(setup, None)[0]["toy.batch"] == 12


def test_private_ray_is_private_and_auto_joins(monkeypatch):
    """No --address: a Ray of our own even when RAY_ADDRESS or `ray start` names another cluster."""
    calls = []
    monkeypatch.setattr(ray_backend.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray_backend.ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setenv("RAY_ADDRESS", "10.255.255.1:6379")
    ray_backend.RayBackend()._connect(None)
    ray_backend.RayBackend()._connect("auto")
    assert calls[0]["address"] == "local" and calls[1]["address"] == "auto"
