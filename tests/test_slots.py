"""Slot and GPU assignment on simulated inventories (no GPU on this machine)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from automl.errors import AutomlError
from automl.trials.slots import gpu_inventory, make_slots, parse_gpus, slot_env


def gpus_of(slots):
    return [s["gpus"] for s in slots]


def test_cpu_slots_without_gpus(monkeypatch):
    from automl.trials import slots as slots_module

    monkeypatch.delenv("AUTOML_CPU_SLOTS", raising=False)
    assert gpus_of(make_slots(3, None, inventory=[])) == [[], [], []]
    # default: one single-thread slot per core, capped
    for cores, expected in ((1, 1), (2, 2), (16, slots_module.MAX_DEFAULT_CPU_SLOTS)):
        monkeypatch.setattr(slots_module, "cpu_count", lambda cores=cores: cores)
        slots = make_slots(None, None, inventory=[])
        assert len(slots) == expected and all(s["gpus"] == [] for s in slots)
    assert [s["threads"] for s in make_slots(None, None, inventory=[])] == [4] * 4  # 16 cores / 4 slots
    monkeypatch.setenv("AUTOML_CPU_SLOTS", "3")
    assert len(make_slots(None, None, inventory=[])) == 3
    monkeypatch.setenv("AUTOML_CPU_SLOTS", "two")
    with pytest.raises(AutomlError, match="AUTOML_CPU_SLOTS='two'"):
        make_slots(None, None, inventory=[])


def test_a_cpu_search_without_workers_runs_one_trial_per_core(tmp_path):
    """End to end, without the suite's ``AUTOML_CPU_SLOTS=1``: the default slots of a CPU search."""
    import json
    import os


    from automl.trials.slots import MAX_DEFAULT_CPU_SLOTS, cpu_count

    env = {k: v for k, v in os.environ.items() if k != "AUTOML_CPU_SLOTS"}
    proc = subprocess.run([sys.executable, "-m", "automl", "run", "--model", "toy", "--no-tracking", "--output", "runs",
                           "--name", "d", "--budget", "2", "--no-promote", "--json", "train.num_epochs=1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    header = json.loads((tmp_path / "runs" / "d" / "search.json").read_text())
    assert header["workers"] == min(cpu_count(), MAX_DEFAULT_CPU_SLOTS)
    assert f"{header['workers']} worker(s)" in proc.stderr
    assert slot_env({"index": 1, "gpus": []}, {})["CUDA_VISIBLE_DEVICES"] == ""


def test_one_trial_per_gpu_by_default():
    assert gpus_of(make_slots(None, None, inventory=[0, 1, 2, 3])) == [[0], [1], [2], [3]]


def test_several_gpus_per_trial():
    slots = make_slots(None, [0, 1, 2, 3], gpus_per_trial=2, inventory=[0, 1, 2, 3])
    assert gpus_of(slots) == [[0, 1], [2, 3]]
    assert slot_env(slots[1], {})["CUDA_VISIBLE_DEVICES"] == "2,3"


def test_several_trials_per_gpu_spread_round_robin():
    slots = make_slots(None, [0, 1], trials_per_gpu=3, inventory=[0, 1])
    assert gpus_of(slots) == [[0], [1], [0], [1], [0], [1]]
    # a worker cap takes slots across devices first
    assert gpus_of(make_slots(2, [0, 1], trials_per_gpu=3, inventory=[0, 1])) == [[0], [1]]


def test_subset_of_gpus_and_errors():
    assert gpus_of(make_slots(None, [2, 3], inventory=[0, 1, 2, 3])) == [[2], [3]]
    with pytest.raises(AutomlError, match="GPU 7 does not exist"):
        make_slots(None, [0, 7], inventory=[0, 1])
    with pytest.raises(AutomlError, match="does not divide"):
        make_slots(None, [0, 1, 2], gpus_per_trial=2, inventory=[0, 1, 2])
    with pytest.raises(AutomlError, match="only 2 GPU slots"):
        make_slots(3, [0, 1], inventory=[0, 1])
    with pytest.raises(AutomlError, match="listed twice"):
        make_slots(None, [0, 0], inventory=[0, 1])
    with pytest.raises(AutomlError, match="--gpus"):
        parse_gpus("a,b")
    assert parse_gpus("none") == [] and parse_gpus("auto") is None and parse_gpus("0, 2") == [0, 2]


def test_simulated_inventory(monkeypatch):
    monkeypatch.setenv("AUTOML_SIMULATED_GPUS", "4")
    assert gpu_inventory() == [0, 1, 2, 3]
    monkeypatch.setenv("AUTOML_SIMULATED_GPUS", "0,2")
    assert gpu_inventory() == [0, 2]
    monkeypatch.setenv("AUTOML_SIMULATED_GPUS", "")
    assert gpu_inventory() == []


def test_cpu_slots_share_the_cores_unless_the_user_set_thread_counts(monkeypatch):
    from automl.trials import slots as slots_module

    monkeypatch.setattr(slots_module, "cpu_count", lambda: 8)
    four = make_slots(4, None, inventory=[])
    assert [s["threads"] for s in four] == [2, 2, 2, 2]
    assert make_slots(16, None, inventory=[])[0]["threads"] == 1
    env = slot_env(four[0], {})
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "2" and env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert slot_env(four[0], {"OMP_NUM_THREADS": "3"})["OMP_NUM_THREADS"] == "3"
    assert "OMP_NUM_THREADS" not in slot_env(make_slots(None, None, inventory=[0])[0], {})  # GPU slots: untouched
