"""Crashes at any moment (issue 14): a search killed with SIGKILL anywhere in its life resumes to the
same end as an uninterrupted one; one controller per run folder; shared storages refuse cleanly.

Exact moments come from the test-only hook ``AUTOML_TEST_KILL_AT=<point>[#N]``
(:mod:`automl.testing.killpoints`): the search SIGKILLs itself (a point in a trial worker kills the
controller first) the N-th time it gets there. Real processes, real signals, the real CLI.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from _search_helpers import results

KILL_ENV = "AUTOML_TEST_KILL_AT"
TOY = ["run", "--model", "toy", "--seed", "0", "--algorithm", "random", "--setting", "pruner=none",
       "--reeval-top", "0"]
#: files a user reads (the study's own storage and the space's definition hold Optuna's names)
USER_FILES = ("*.json", "*.yaml", "*.csv", "*.jsonl")


def automl(cwd: Path, *args: str, kill_at: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    if kill_at:
        env[KILL_ENV] = kill_at
    return subprocess.run([sys.executable, "-m", "automl", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env, start_new_session=True)


def study_trials(run_dir: Path, name: str) -> list:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(run_dir / "journal")))
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def check_finished_search(run_dir: Path, name: str, budget: int, epochs: int) -> dict[int, dict]:
    """What an uninterrupted search leaves: the budget met exactly, numbers 0..budget-1 once each, every
    trial complete with its value in the study and in result.json, every epoch on disk, nothing
    running, no helper parameter in a user-visible file."""
    from optuna.trial import TrialState

    res = results(run_dir)
    assert sorted(res) == list(range(budget))
    trials = study_trials(run_dir, name)
    assert sorted(t.number for t in trials) == list(range(budget))
    assert all(t.state == TrialState.COMPLETE for t in trials), [(t.number, t.state) for t in trials]
    for t in trials:
        r = res[t.number]
        assert r["state"] == "complete" and r["value"] is not None, r
        assert r["value"] == pytest.approx(t.value), "the value the sampler saw is the one recorded"
        epochs_seen = {json.loads(line)["epoch"] for line in Path(r["trial_dir"], "metrics.jsonl").read_text().splitlines()}
        assert epochs_seen == set(range(epochs))
    for pattern in USER_FILES:
        for path in run_dir.rglob(pattern):
            if path.name != "space.json" and not path.name.endswith(".tmp"):
                assert "__u" not in path.read_text(), f"{path}: an internal helper parameter"
    return res


# (point, what it is): spread over the whole life of a search of 3 trials x 3 epochs
POINTS = [
    ("header", "search.json written, no study yet"),
    ("study_created", "study created, baseline not enqueued"),
    ("enqueued", "baseline enqueued, study not marked initialized"),
    ("tracking_started", "before the backend starts"),
    ("ask", "first trial asked, nothing sent"),
    ("ask#3", "third trial asked"),
    ("dispatch", "job sent to the worker"),
    ("trial_files", "config.json and spec.yaml written"),
    ("epoch", "mid-epoch, before the first checkpoint"),
    ("checkpoint_write#2", "checkpoint of epoch 1 written, not yet renamed into place"),
    ("metrics_written", "epoch 0 in metrics.jsonl, report not sent"),
    ("metrics_written#5", "second trial's epoch 1"),
    ("report", "controller got epoch 0's report"),
    ("report#4", "second trial's first report"),
    ("tell", "first trial told to the study, result.json not written"),
    ("result_written#2", "second result.json written"),
    ("trials_done", "every trial done, nothing promoted"),
    ("promotion", "before best/ is made"),
    ("summary", "summary written, tracking not flushed"),
    ("tracking_flushed", "tracking flushed, before the process exits"),
]
CHEAP = {"header", "checkpoint_write#2", "tell"}


@pytest.mark.parametrize("point", [pytest.param(p, id=p, marks=() if p in CHEAP else pytest.mark.slow)
                                   for p, _ in POINTS])
def test_sigkill_at_any_point_then_resume_finishes_the_search(tmp_path, point):
    promote = point in ("promotion", "summary", "tracking_flushed")
    tracking = point in ("tracking_started", "summary", "tracking_flushed")  # the embedded MLflow store
    args = [*TOY, "--budget", "3", "--name", "s", "train.num_epochs=3",
            *(() if promote else ("--no-promote",)), *(() if tracking else ("--no-tracking",))]
    killed = automl(tmp_path, *args, kill_at=point)
    assert killed.returncode == -signal.SIGKILL, f"{point}: not killed ({killed.returncode}) {killed.stderr[-2000:]}"
    run_dir = tmp_path / "runs" / "s"
    assert (run_dir / "search.json").is_file(), "search.json exists from the first kill point on"
    again = automl(tmp_path, *args)
    assert again.returncode != 0 and "--resume" in again.stderr and "Traceback" not in again.stderr

    resumed = automl(tmp_path, *args, "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert [t["number"] for t in summary["trials"]] == [0, 1, 2]
    check_finished_search(run_dir, "s", budget=3, epochs=3)
    if promote:
        assert (run_dir / "best" / "promotion.json").is_file()
    if tracking:
        _check_mlflow(run_dir, budget=3)


def test_interrupted_creation_is_finished_by_resume(tmp_path):
    args = [*TOY, "--budget", "2", "--name", "c", "--no-tracking", "--no-promote", "train.num_epochs=2"]
    assert automl(tmp_path, *args, kill_at="header").returncode == -signal.SIGKILL
    resumed = automl(tmp_path, *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "interrupted while being created" in resumed.stdout + resumed.stderr
    res = check_finished_search(tmp_path / "runs" / "c", "c", budget=2, epochs=2)
    assert res[0]["extra"]["kind"] == "new"


def test_a_checkpoint_that_does_not_load_falls_back_and_says_so(tmp_path):
    """A torn last.ckpt (an older version wrote in place; a full disk) is not resumed from: the trial
    goes on from its best checkpoint and completes, with no EOFError recorded."""
    args = [*TOY, "--budget", "1", "--name", "t", "--no-tracking", "--no-promote", "train.num_epochs=4"]
    assert automl(tmp_path, *args, kill_at="metrics_written#3").returncode == -signal.SIGKILL
    last = tmp_path / "runs" / "t" / "trials" / "0000" / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    resumed = automl(tmp_path, *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "last.ckpt does not load" in resumed.stdout + resumed.stderr
    res = check_finished_search(tmp_path / "runs" / "t", "t", budget=1, epochs=4)
    assert res[0]["reason"] is None and res[0]["extra"]["kind"] == "rerun"


def test_a_checkpoint_killed_mid_write_leaves_the_previous_one(tmp_path):
    args = [*TOY, "--budget", "1", "--name", "w", "--no-tracking", "--no-promote", "train.num_epochs=3"]
    assert automl(tmp_path, *args, kill_at="checkpoint_write#2").returncode == -signal.SIGKILL
    import torch

    folder = tmp_path / "runs" / "w" / "trials" / "0000" / "checkpoints"
    last = folder / "last.ckpt"
    assert int(torch.load(last, weights_only=True)["epoch"]) == 0, "the last complete checkpoint, untouched"
    stale = list(folder.glob("last.ckpt.*-*.tmp"))
    assert len(stale) == 1, sorted(p.name for p in folder.iterdir())
    for name in ("notes.tmp", "last.ckpt.tmp", "last.ckpt.12-x.tmp"):  # not names the writers make
        (folder / name).write_text("kept")
    resumed = automl(tmp_path, *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "from its last checkpoint" in resumed.stdout + resumed.stderr
    check_finished_search(tmp_path / "runs" / "w", "w", budget=1, epochs=3)
    assert sorted(p.name for p in folder.glob("*.tmp")) == ["last.ckpt.12-x.tmp", "last.ckpt.tmp", "notes.tmp"], \
        "the resumed trial removed the stale temporary its killed run left, and nothing else"


def test_remove_temporaries_takes_only_the_names_the_atomic_writers_make(tmp_path):
    from automl.fsutil import _temporary, remove_temporaries

    ours = ["best.ckpt.123-140245.tmp", "result.json.9-1.tmp"]
    others = ["best.ckpt", "notes.tmp", ".resume.ckpt.tmp", "a.1-2.tmp.bak", "a.1-2.tmpx", "a.-2.tmp", "epoch_003.ckpt"]
    for name in ours + others:
        (tmp_path / name).write_text("x")
    assert sorted(p.name for p in remove_temporaries(tmp_path)) == sorted(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(others)
    assert remove_temporaries(tmp_path / "missing") == []
    tmp = _temporary(tmp_path / "f.json")  # the name every atomic writer of automl.fsutil uses
    tmp.write_text("x")
    assert remove_temporaries(tmp_path) == [tmp]


def _popen(cwd: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    return subprocess.Popen([sys.executable, "-m", "automl", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)


def test_second_controller_on_one_run_folder_is_refused(tmp_path):
    args = [*TOY, "--budget", "1", "--name", "l", "--no-tracking", "--no-promote", "train.num_epochs=6",
            "toy.sleep_s=1.5"]
    first = _popen(tmp_path, *args)
    run_dir = tmp_path / "runs" / "l"
    try:
        deadline = time.time() + 120
        while not list(run_dir.glob("trials/*/metrics.jsonl")):
            assert first.poll() is None and time.time() < deadline, "the first search never got going"
            time.sleep(0.1)
        second = automl(tmp_path, *args, "--resume")
        assert first.poll() is None, "the first search ended before the second one was tried"
        assert second.returncode != 0
        assert f"pid {first.pid} on {socket.gethostname()}" in second.stderr, second.stderr[-2000:]
        assert "Traceback" not in second.stderr
        status = automl(tmp_path, "status", "l", "--json")
        assert status.returncode == 0, status.stderr[-2000:]
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    # the refused controllers touched nothing: each epoch once
    for r in results(run_dir).values():
        epochs = [json.loads(line)["epoch"] for line in Path(r["trial_dir"], "metrics.jsonl").read_text().splitlines()]
        assert epochs == [0, 1, 2, 3, 4, 5]


def test_two_new_searches_share_a_fresh_sqlite_storage(tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared' / 'study.db'}"
    (tmp_path / "shared").mkdir()
    procs = [_popen(tmp_path, *TOY, "--budget", "1", "--name", f"n{i}", "--no-tracking", "--no-promote",
                    "--storage", storage, "train.num_epochs=1") for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]


OPEN_STORAGE_AT_ONCE = """
import sys, time
from pathlib import Path
from types import SimpleNamespace
from automl.backends.optuna.storage import open_storage
go = Path(sys.argv[2])
Path(sys.argv[3]).touch()
while not go.exists():
    time.sleep(0.001)
for k in range(10):  # ten fresh databases in the same order: ten races
    open_storage(SimpleNamespace(storage=sys.argv[1].format(k), run_dir=Path(".")))
"""


def test_six_processes_opening_a_fresh_sqlite_storage_at_once(tmp_path):
    """The schema-creation race, hit on purpose: six processes open one fresh database the same
    millisecond (the searches above rarely start that close together)."""
    storage, go = f"sqlite:///{tmp_path / 'study{}.db'}", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_STORAGE_AT_ONCE, storage, str(go), str(tmp_path / f"ready{i}")],
                              cwd=tmp_path, stderr=subprocess.PIPE, text=True) for i in range(6)]
    deadline = time.time() + 120
    while len(list(tmp_path.glob("ready*"))) < 6:
        assert time.time() < deadline and all(p.poll() is None for p in procs), "the processes did not start"
        time.sleep(0.05)
    go.touch()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [e[-500:] for e in errors if e]


def test_a_name_another_search_holds_in_a_shared_storage_is_refused_cleanly(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    args = [*TOY, "--budget", "2", "--name", "x", "--no-tracking", "--no-promote", "--storage", storage,
            "train.num_epochs=2", "toy.activation=gelu"]
    assert automl(tmp_path, *args, "--output", "one").returncode == 0
    other = automl(tmp_path, *args, "--output", "two")
    assert other.returncode != 0 and "already exists" in other.stderr and "Traceback" not in other.stderr
    assert not (tmp_path / "two" / "x").exists(), "a refused search leaves no folder"
    # a copy of the first folder elsewhere must not adopt the first search's study
    (tmp_path / "two").mkdir(exist_ok=True)  # (it holds the demo data)
    subprocess.run(["cp", "-r", str(tmp_path / "one" / "x"), str(tmp_path / "two" / "x")], check=True)
    for path in (tmp_path / "two" / "x" / "trials").glob("*/result.json"):
        path.unlink()
    adopted = automl(tmp_path, *args, "--output", "two", "--resume")
    assert adopted.returncode != 0 and "belongs to the search in" in adopted.stderr, adopted.stderr[-2000:]
    assert not list((tmp_path / "two" / "x" / "trials").glob("*/result.json"))


def _our_processes(root: Path) -> list[psutil.Process]:
    """Processes running in the test's folder (a controller or worker left behind)."""
    out = []
    for proc in psutil.process_iter(["cwd"]):
        try:
            if proc.info["cwd"] and Path(proc.info["cwd"]).is_relative_to(root) and proc.pid != os.getpid():
                out.append(proc)
        except (psutil.Error, ValueError):
            continue
    return out


def _check_mlflow(run_dir: Path, budget: int) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{run_dir / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    state = json.loads((run_dir / "mlflow.json").read_text())
    runs = client.search_runs([state["experiment_id"]], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [p.info.run_id for p in parents] == [state["runs"]["search"]], "one MLflow parent run"
    children = sorted(int(r.data.tags["automl.trial_number"]) for r in runs if r is not parents[0])
    assert children == list(range(budget)), "one child run per trial"


@pytest.mark.slow
def test_chaos_30_sigkills_at_random_moments(tmp_path):
    """30 SIGKILLs at random moments (the controller alone, or the whole search) across several
    searches with 2 workers and MLflow tracking; after the final resume every search is what an
    uninterrupted one would be."""
    rng = random.Random(14)
    budget, epochs, names = 6, 3, ["c0", "c1", "c2"]
    args = [*TOY, "--budget", str(budget), "--workers", "2", "--no-promote", "--output", "runs",
            f"train.num_epochs={epochs}", "toy.sleep_s=0.3"]
    kept: dict[tuple[str, int], float] = {}  # completed values seen on disk: never lost or changed
    kills, done = 0, set()
    while kills < 30:
        if len(done) == len(names):  # every search ran to its end before 30 kills: one more search
            names.append(f"c{len(names)}")
        name = rng.choice([n for n in names if n not in done])
        run_dir = tmp_path / "runs" / name
        resume = ("--resume",) if (run_dir / "search.json").exists() else ()
        log = tmp_path / f"{name}.log"
        with log.open("w") as out:  # a file, not a pipe: nobody reads a pipe while the search runs
            proc = subprocess.Popen([sys.executable, "-m", "automl", *args, "--name", name, *resume], cwd=tmp_path,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={k: v for k, v in os.environ.items() if k != KILL_ENV})
        try:
            proc.wait(timeout=rng.uniform(0.5, 20.0))
            assert proc.returncode == 0, log.read_text()[-3000:]
            done.add(name)
        except subprocess.TimeoutExpired:
            if rng.random() < 0.5:
                os.kill(proc.pid, signal.SIGKILL)  # the controller: its workers must follow it
            else:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            kills += 1
        psutil.wait_procs(_our_processes(tmp_path), timeout=20)
        assert not [p for p in _our_processes(tmp_path) if p.status() != psutil.STATUS_ZOMBIE], "an orphan process"
        for name_ in names:
            for number, r in results(tmp_path / "runs" / name_).items():
                if r["state"] == "complete":
                    assert kept.setdefault((name_, number), r["value"]) == r["value"]
    for name in names:
        run_dir = tmp_path / "runs" / name
        resume = ("--resume",) if (run_dir / "search.json").exists() else ()
        final = automl(tmp_path, *args, "--name", name, *resume, timeout=600)
        assert final.returncode == 0, final.stderr[-3000:]
        res = check_finished_search(run_dir, name, budget=budget, epochs=epochs)
        for (name_, number), value in kept.items():
            if name_ == name:
                assert res[number]["value"] == value, f"{name} trial {number}: a completed value changed"
        _check_mlflow(run_dir, budget)
    assert not _our_processes(tmp_path), "an orphan process"


MAKE_TRACKER = """
import sys
from automl.tracking import create_tracker
create_tracker(sys.argv[1], None, enabled=True)
"""


@pytest.mark.slow
def test_a_search_killed_while_its_mlflow_store_is_built_can_start_again(tmp_path):
    """MLflow builds a new SQLite store with dozens of migrations; a kill half way through must not
    leave a mlflow.db that no MLflow can open again ("table _alembic_tmp_... already exists")."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", MAKE_TRACKER, str(run_dir)], cwd=tmp_path, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not [p for p in run_dir.iterdir() if "mlflow.db" in p.name]:
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-2000:]
        time.sleep(0.005)
    time.sleep(0.2)  # into the migrations
    proc.kill()
    proc.wait()
    proc.stderr.close()
    again = subprocess.run([sys.executable, "-c", MAKE_TRACKER, str(run_dir)], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
