"""The scale benchmark's simulated cluster (benchmarks/scale.py) at 500 trials on 8 simulated GPUs:
no slot idles while the controller has a decision to make, and the run folder agrees with the study.

asha: its trials pause at rungs and resume from checkpoints, so the run folder has the most to get right
(``result.prev.json``, checkpoints, metrics across stretches); it is also the quickest of the three
algorithms the benchmark runs (TPE took ~50 s here on the loaded shared host, asha ~5 s)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from automl.reporting import read_metrics
from automl.trials.rundir import read_json, read_trials

ROOT = Path(__file__).resolve().parents[1]
TRIALS, GPUS = 500, 8


@pytest.fixture
def run_root(tmp_path):
    """The run folder on tmpfs where there is one: this test checks behaviour, not speed, and ~3000
    journal fsyncs on a shared VM disk took half of its time."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    root = Path(tempfile.mkdtemp(prefix="automl-scale-", dir=shm))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_scale_benchmark_500_trials_8_gpus(run_root):
    tmp_path = run_root
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--child", "asha", "--trials",
                           str(TRIALS), "--gpus", str(GPUS), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=os.environ)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    run_dir = Path(figures["run_dir"])

    simulation = read_json(run_dir / "simulation.json")
    assert simulation["simulation"] is True and simulation["slots"] == GPUS
    # every time the controller went idle, no slot was free while the budget had trials to start
    assert simulation["idle_with_budget_left"] == 0
    assert simulation["utilisation_while_budget_left"] > 0.999
    assert simulation["jobs"] > TRIALS  # promotions are jobs too
    assert read_json(run_dir / "search.json")["backend_options"]["simulation"]

    records = read_trials(run_dir)
    assert sorted(r.number for r in records) == list(range(TRIALS))
    study = optuna.load_study(study_name=f"asha-{TRIALS}",
                              storage=JournalStorage(JournalFileBackend(str(run_dir / "journal"))))
    in_study = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert len(in_study) == TRIALS
    for record in records:
        folder = Path(record.trial_dir)
        for name in ("config.json", "spec.yaml", "metrics.jsonl", "result.json"):
            assert (folder / name).exists(), (record.number, name)
        epochs = {int(r["epoch"]) for r in read_metrics(folder)}
        assert epochs == set(range(record.epochs_done)), record.number
        assert read_json(folder / "config.json") == record.params
        trial = in_study[record.number]
        assert trial.state.name == {"complete": "COMPLETE", "pruned": "PRUNED"}[record.state], record.number
        if record.state == "complete":
            assert record.epochs_done == 9 and trial.value == record.value
        else:  # stopped at a rung (its checkpoint is deleted with the losers' at the end)
            assert record.epochs_done in (1, 3), record.number
    assert sum(r.state == "complete" for r in records) > 0
