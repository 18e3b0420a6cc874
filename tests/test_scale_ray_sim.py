"""The Ray side of the scale benchmark (benchmarks/scale_ray.py): 100 simulated trials on 8 logical GPUs
through the real Ray Tune search (Tuner, OptunaSearch with our TPE, driver callback, run folder).

Checks what the benchmark's figures rest on: every trial Tune knows has one run-folder entry whose
state, epochs and value agree with Tune's, trial numbers are 0..N-1, and trials ran side by side (the
simulation's epochs sleep, so trials overlap even on a loaded 2-core host where Ray starts few
workers at a time). The search runs in a child process with its own private Ray, shut down with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from automl.reporting import read_metrics
from automl.trials.rundir import read_json, read_trials

ROOT = Path(__file__).resolve().parents[1]
TRIALS, GPUS = 100, 8
#: 9 epochs of 60 s x width/4 x 0.004: ~0.24 s per epoch, ~2 s per trial
TIME_SCALE = 0.004


def _max_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


@pytest.mark.slow
def test_ray_scale_simulation_100_trials_8_gpus(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale_ray.py"), "--child", "tpe", "--trials",
                           str(TRIALS), "--gpus", str(GPUS), "--time-scale", str(TIME_SCALE), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    run_dir = Path(figures["run_dir"])
    header = read_json(run_dir / "search.json")
    assert header["backend"] == "ray" and header["backend_options"]["simulation"]["time_scale"] == TIME_SCALE

    records = read_trials(run_dir)
    assert sorted(r.number for r in records) == list(range(TRIALS))
    numbers = {k: int(v) for k, v in read_json(run_dir / "ray" / "trial_numbers.json").items()}
    assert sorted(numbers.values()) == list(range(TRIALS))

    from ray.tune import ExperimentAnalysis

    tune_trials = {t.trial_id: t for t in ExperimentAnalysis(str(run_dir / "ray")).trials}
    assert set(tune_trials) == set(numbers), "every Tune trial has a number, every number a Tune trial"
    by_number = {r.number: r for r in records}
    for trial_id, trial in tune_trials.items():
        record = by_number[numbers[trial_id]]
        folder = Path(record.trial_dir)
        for name in ("config.json", "spec.yaml", "metrics.jsonl", "result.json"):
            assert (folder / name).exists(), (record.number, name)
        assert trial.status == "TERMINATED" and record.state == "complete", (record.number, trial.status, record.state)
        assert record.extra["ray_trial_id"] == trial_id
        epochs = [int(r["epoch"]) for r in read_metrics(folder)]
        assert epochs == list(range(9)) and record.epochs_done == 9, record.number
        last = trial.last_result
        assert last["training_iteration"] == 9 and last["epoch"] == 8
        assert last["val_score"] == pytest.approx(read_metrics(folder)[-1]["metrics"]["val_score"])

    simulation = read_json(run_dir / "simulation.json")
    assert simulation["simulation"] is True and simulation["slots"] == GPUS and simulation["stretches"] == TRIALS
    # trials ran side by side: seen by the driver callback, and in the trials' own report times
    assert simulation["max_running_at_once"] >= 2, simulation
    spans = []
    for record in records:
        times = [r["time"] for r in read_metrics(Path(record.trial_dir))]
        spans.append((min(times), max(times)))
    assert _max_overlap(spans) >= 2
    assert figures["decisions"][str(TRIALS)]["trials"] == 10  # the timer saw the last 10 % of decisions
