"""Real 2-process DDP on the CPU (gloo), launched by Lightning from the CLI as on a GPU node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from automl.data.folders import ClassFolderDataset
from automl.reporting import read_metrics
from automl.training.sampler import PKBatchSampler
from trainers.ml_recog import plugin

ROOT = Path(__file__).resolve().parents[1]


def test_two_process_cpu_ddp_trains_one_epoch(tmp_path):
    plugin.make_dataset(tmp_path / "data", seed=0, classes=12, per_class=16, size=32)
    env = {**os.environ, "AUTOML_CPU_PROCESSES": "2", "PYTHONUNBUFFERED": "1"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [sys.executable, "-m", "automl", "train", "--model", "ml_recog", "--data", str(tmp_path / "data"),
           "train.num_epochs=1", "train.batch_size=16", "--results-dir", str(tmp_path / "run"), "--json"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])  # rank 0 only prints
    assert sum(1 for line in proc.stdout.splitlines() if line.startswith("{")) == 1
    assert result["epochs_run"] == 1
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [0]  # rank 0 only reports
    state = torch.load(result["last_checkpoint"], weights_only=True)
    # each rank took half of the epoch's P x K batches (whole batches dealt round-robin)
    labels = ClassFolderDataset(tmp_path / "data" / "known_classes" / "train").labels
    single = len(PKBatchSampler(labels, 16, 4, seed=1234))
    per_rank = len(PKBatchSampler(labels, 16, 4, seed=1234, rank=0, world_size=2))
    assert state["global_step"] == per_rank == single // 2 > 0
