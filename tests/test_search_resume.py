"""Kill the controller with SIGKILL mid-search and resume: no trial lost, none duplicated, interrupted
trials continue from their last checkpoint, the budget counts what was done."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from _search_helpers import automl_cli, results


def _interrupted(run_dir: Path, epochs: int = 6) -> list[Path]:
    """Trial folders with a checkpoint, fewer than all their epochs on disk and no result: trials
    running right now (a trial that trained all its epochs may only be waiting for its result.json,
    which the controller writes once the next trial is under way)."""
    out = []
    for folder in sorted((run_dir / "trials").glob("*")):
        if not (folder / "result.json").exists() and (folder / "checkpoints" / "last.ckpt").exists():
            done = (folder / "metrics.jsonl").read_text().count("\n")
            if done < epochs:
                out.append(folder)
    return out


def test_resume_after_sigkill_loses_and_duplicates_nothing(tmp_path):
    args = ["run", "--model", "toy", "--budget", "6", "--workers", "2", "--name", "k", "--seed", "0", "--no-tracking",
            "--algorithm", "random", "--setting", "pruner=none", "train.num_epochs=6", "toy.sleep_s=0.25"]
    proc = subprocess.Popen([sys.executable, "-m", "automl", *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    run_dir = tmp_path / "runs" / "k"
    deadline = time.time() + 180
    try:
        while time.time() < deadline:
            done = len(list(run_dir.glob("trials/*/result.json")))
            if done >= 2 and _interrupted(run_dir):
                break
            assert proc.poll() is None, "the search ended before it could be killed"
            time.sleep(0.1)
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True)]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    interrupted = {int(p.name) for p in _interrupted(run_dir)}
    finished_before = {n for n, r in results(run_dir).items()}
    assert interrupted and len(finished_before) >= 2
    # the workers die with the controller (no orphan keeps training)
    psutil.wait_procs(workers, timeout=15)
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]

    resumed = automl_cli(*args, "--resume", "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    res = results(run_dir)
    assert sorted(res) == list(range(6)), "6 trials in all, numbers never repeated"
    assert [t["number"] for t in summary["trials"]] == list(range(6))
    assert all(r["state"] == "complete" for r in res.values())
    for number in interrupted:
        r = res[number]
        epochs = [json.loads(l)["epoch"] for l in Path(r["trial_dir"], "metrics.jsonl").read_text().splitlines()]
        assert sorted(set(epochs)) == list(range(6))
        if r["extra"].get("rebuilt"):  # it finished in the instant between the check and the kill
            continue
        assert r["extra"]["kind"] == "rerun"
        # resumed from the last checkpoint, not from scratch: at most the epoch in flight at the kill
        # ran twice; epochs_run counts every epoch trained, the cut-off run's included
        assert len(epochs) - len(set(epochs)) <= 1
        assert r["epochs_run"] == len(epochs)
    assert any(res[n]["extra"].get("kind") == "rerun" for n in interrupted)
    for number in finished_before:  # completed trials were kept, not rerun
        assert res[number]["extra"].get("kind") == "new"
