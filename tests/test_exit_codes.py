"""Exit statuses a script can trust (issue 14; README "Running searches"): 0 ok, 1 the search failed
(no trial produced a value, or ``--max-failures`` stopped it), 2 bad input, 3 the promotion failed,
130 interrupted. The reason is printed once and is in ``--json`` (``exit_code``, ``exit_reason``)."""

from __future__ import annotations

import json
import pickle
import signal
import subprocess
import sys
import time
from collections import OrderedDict

from _search_helpers import automl_cli

RUN = ("run", "--model", "toy", "--no-tracking", "--output", "runs", "--json", "train.num_epochs=1")


def _summary(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_search_where_every_trial_failed_exits_1_with_the_reason(tmp_path):
    proc = automl_cli(*RUN, "--budget", "1", "--no-promote", "toy.fail=raise", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    summary = _summary(proc)
    assert summary["exit_code"] == 1 and summary["exit_reason"].startswith("no trial produced a value")
    assert proc.stderr.count("no trial produced a value") == 1
    assert "Traceback" not in proc.stderr


def test_a_search_stopped_by_max_failures_exits_1_and_says_so_once(tmp_path):
    proc = automl_cli(*RUN, "--budget", "4", "--max-failures", "2", "--no-promote", "toy.fail=raise", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    summary = _summary(proc)
    assert summary["exit_code"] == 1 and "2 trials failed in a row" in summary["exit_reason"]
    assert len(summary["trials"]) == 2
    assert proc.stderr.count("failed in a row") == 1, proc.stderr


def test_a_tampered_checkpoint_at_promotion_exits_3_in_one_line_per_step(tmp_path):
    first = automl_cli(*RUN, "--budget", "1", "--name", "t", "--no-promote", cwd=tmp_path)
    assert first.returncode == 0 and _summary(first)["exit_code"] == 0, first.stderr[-2000:]
    best = tmp_path / "runs" / "t" / "trials" / "0000" / "checkpoints" / "best.ckpt"
    with open(best, "wb") as f:  # what an attacker or a broken copy leaves: a pickle of a callable
        pickle.dump(OrderedDict(epoch=print), f)
    # the finished search resumed with promotion on: nothing to train, the winner is promoted
    proc = automl_cli(*RUN, "--budget", "1", "--name", "t", "--resume", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    summary = _summary(proc)
    assert summary["exit_code"] == 3 and summary["exit_reason"].startswith("promotion failed: evaluate:")
    for step in ("evaluate", "export"):
        assert summary["promotion"][step]["status"] == "failed"
        assert "is not a weights-only checkpoint" in summary["promotion"][step]["reason"]


def test_ctrl_c_exits_130_and_the_search_can_be_resumed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "automl", *RUN[:-1], "--budget", "1", "--name", "i", "--no-promote",
                             "train.num_epochs=3", "toy.sleep_s=1"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    started = tmp_path / "runs" / "i" / "trials" / "0000" / "metrics.jsonl"
    try:
        while not started.exists() and proc.poll() is None:  # the first epoch is reported: the search runs
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == "interrupted" and "Traceback" not in stderr
    resumed = automl_cli(*RUN[:-1], "--name", "i", "--no-promote", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0 and _summary(resumed)["exit_code"] == 0, resumed.stderr[-2000:]
