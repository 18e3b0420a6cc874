"""Plain training has one path: ``automl train`` and ``automl run --automl off`` validate the spec the
same way and write the same result files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from automl.plugins import get_trainer
from automl.reporting import read_metrics

ROOT = Path(__file__).resolve().parents[1]


def _automl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "automl", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_run_automl_off_rejects_a_bad_value_like_train(tmp_path):
    spec = yaml.safe_load(get_trainer("toy").spec_template("train").read_text())
    spec["toy"]["activation"] = "swish"  # not in the schema's enum
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(spec))
    train = _automl("train", "--model", "toy", "-e", str(bad), "--results-dir", str(tmp_path / "t"), cwd=tmp_path)
    off = _automl("run", "--model", "toy", "--automl", "off", "-e", str(bad), "--name", "off", cwd=tmp_path)
    assert train.returncode == off.returncode == 2
    error = train.stderr.strip()
    assert len(error.splitlines()) == 1 and error.startswith("error: ") and "swish" in error, error
    assert off.stderr.strip() == error
    assert not (tmp_path / "runs" / "off" / "train.json").exists()


def test_run_automl_off_writes_what_train_writes(tmp_path):
    train = _automl("train", "--model", "toy", "train.num_epochs=2", "--results-dir", str(tmp_path / "t"), "--json",
                    cwd=tmp_path)
    off = _automl("run", "--model", "toy", "--automl", "off", "train.num_epochs=2", "--name", "off", "--json",
                  cwd=tmp_path)
    assert train.returncode == 0 and off.returncode == 0, off.stderr[-2000:]
    by_train, by_off = json.loads(train.stdout.splitlines()[-1]), json.loads(off.stdout.splitlines()[-1])
    assert by_off["results_dir"] == str(tmp_path / "runs" / "off")
    assert json.loads(Path(by_off["results_dir"], "train.json").read_text()) == by_off
    for folder in (by_train["results_dir"], by_off["results_dir"]):
        assert {"spec.yaml", "train.json", "metrics.jsonl"} <= {p.name for p in Path(folder).iterdir()}
    assert by_train["action"] == by_off["action"] == "train" and by_train["epochs_run"] == by_off["epochs_run"] == 2


def test_run_automl_off_under_ddp_trains_into_one_folder(tmp_path):
    """Lightning's DDP launcher re-runs the command line in each rank: the ranks must share rank 0's
    time-stamped folder, and only rank 0 prints and writes results."""
    get_trainer("ml_recog").make_dataset(tmp_path / "data", seed=0, classes=8, per_class=8, size=32)
    env = {**os.environ, "AUTOML_CPU_PROCESSES": "2"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.run([sys.executable, "-m", "automl", "run", "--model", "ml_recog", "--automl", "off", "--data",
                           str(tmp_path / "data"), "--json", "train.num_epochs=1", "train.batch_size=16",
                           "dataset.workers=0"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sum(1 for line in proc.stdout.splitlines() if line.startswith("{")) == 1
    result = json.loads(proc.stdout.splitlines()[-1])
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [Path(result["results_dir"]).name]
    assert result["epochs_run"] == 1 and [r["epoch"] for r in read_metrics(result["results_dir"])] == [0]
