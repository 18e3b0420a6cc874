"""benchmarks/search_quality.py and its TAO AutoML comparator, on tiny data (slow: real training, and the
first run pip-installs nvidia-tao-automl into benchmarks/.venv-tao)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_glyphs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("search_quality") / "glyphs"
    proc = subprocess.run([sys.executable, "-m", "automl", "data", "make", "--task", "ml_recog", "--classes", "12",
                           "--per-class", "8", "--out", str(out)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def _tao_or_skip() -> None:
    from peers.tao_automl import TaoUnavailable, ensure_tao_venv

    try:
        ensure_tao_venv(log=lambda message: None)
    except TaoUnavailable as exc:  # the message ends with the failing step's last output line (pip's error)
        pytest.skip(f"nvidia-tao-automl cannot be installed here: {exc}")


def _check_common(result: dict, out: Path) -> None:
    assert result["error"] is None
    header = json.loads((out / "search.json").read_text())
    tao_view = json.loads((out / "tao_space.json").read_text())
    assert set(tao_view["parameters"]) == set(header["searched"]), "TAO searches the names our space searches"
    space = _space(header)
    for job in result["jobs"]:
        if job["state"] == "complete":
            searched = {k: v for k, v in job["config"].items() if k in space}
            assert len(searched) == len(space.names)
            assert space.check(searched) == [], f"a repaired config passes our constraints: {job['config']}"
    assert result["epochs_total"] == sum(j["epochs"] for j in result["jobs"])
    curve = result["curve"]
    assert curve and curve[-1][0] <= result["epochs_total"]
    assert all(b[1] >= a[1] for a, b in zip(curve, curve[1:])), "best-so-far never decreases"
    assert result["winner"] is not None and Path(result["winner"]["checkpoint"]).is_file()
    assert result["heldout_error"] is None and 0.0 <= result["heldout"] <= 1.0


def _space(header: dict):
    """The compiled space of the run (what `automl run` searches with the same overrides)."""
    from peers.tao_automl import _resolve

    return _resolve(header["model"], header["budget"], header["spec_file"], header["overrides"], Path(header["data"]),
                    header["seed"]).space


def test_tao_bayesian_drives_our_trainer_for_three_trials(tiny_glyphs, tmp_path):
    _tao_or_skip()
    from peers.tao_automl import run_tao_search

    out = tmp_path / "tao-bayesian"
    result = run_tao_search(algorithm="bayesian", data_dir=tiny_glyphs, out_dir=out, budget=3, seed=0,
                            overrides=["train.num_epochs=1"], log=lambda message: None)
    _check_common(result, out)
    assert result["configs_tried"] == 3 and result["jobs_trained"] == 3 and result["jobs_skipped"] == 0
    done = [j for j in result["jobs"] if j["state"] == "complete"]
    assert done, [j["reason"] for j in result["jobs"]]
    assert all(j["epochs"] == 1 and j["num_epochs"] == 1 for j in done), "Bayesian trains the spec's epochs"
    assert len({json.dumps(j["config"], sort_keys=True) for j in result["jobs"]}) == 3, "three different configs"
    assert result["best_val"] == max(j["value"] for j in done)


def test_tao_hyperband_allocates_epochs_and_promotions_resume(tiny_glyphs, tmp_path):
    """max epochs 3, reduction factor 3: TAO's one bracket trains 3 configs for 1 epoch, then promotes the
    best to 3 epochs, which resumes its parent's last checkpoint and trains only epochs 2 and 3."""
    _tao_or_skip()
    from peers.tao_automl import run_tao_search

    out = tmp_path / "tao-hyperband"
    result = run_tao_search(algorithm="hyperband", data_dir=tiny_glyphs, out_dir=out, budget=3, seed=0,
                            overrides=["train.num_epochs=3"], log=lambda message: None)
    _check_common(result, out)
    jobs = result["jobs"]
    first = [j for j in jobs if j["resume_from_job_id"] is None]
    promoted = [j for j in jobs if j["resume_from_job_id"] is not None]
    assert len(first) == 3 and all(j["num_epochs"] == 1 for j in first)
    assert len(promoted) == 1 and promoted[0]["state"] == "complete", promoted
    job = promoted[0]
    assert job["num_epochs"] == 3 and job["resume_from_epoch"] == 1 and job["epochs"] == 2
    parent = out / "jobs" / f"p0-{job['resume_from_job_id']}" / "checkpoints" / "last.ckpt"
    assert job["config"]["train.resume_training_checkpoint_path"] == str(parent)
    epochs = [json.loads(line)["epoch"] for line in Path(job["job_dir"], "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2], "the promotion continued from epoch 1"
    assert result["epochs_total"] == 3 + 2
    assert result["winner"]["id"] == job["rec_id"], "TAO's winner is the config trained at the largest budget"


def test_quick_benchmark_writes_table_json_and_plot(tiny_glyphs, tmp_path):
    out = tmp_path / "bench"
    cmd = [sys.executable, str(REPO / "benchmarks" / "search_quality.py"), "--quick", "--budget", "2",
           "--contestants", "tpe,random,asha,tao-bayesian", "--data-options", "classes=12,per_class=8",
           "--search-timeout", "400", "--out", str(out), "train.num_epochs=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=560)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["budget"] == 2 and results["settings"]["datasets"] == ["glyphs"]
    cells = {c["contestant"]: c for c in results["cells"]}
    assert sorted(cells) == ["asha", "random", "tao-bayesian", "tpe"]
    for name in ("tpe", "random", "asha"):
        cell = cells[name]
        assert cell["error"] is None, cell["error"]
        assert 0.0 <= cell["heldout"] <= 1.0 and cell["best_val"] is not None and cell["epochs_total"] >= 2
        assert cell["curve"] and cell["wall_s"] > 0
    tao = cells["tao-bayesian"]
    if tao["error"]:  # the package could not be installed or driven: said plainly, the others still ran
        assert tao["error"] in (out / "table.md").read_text()
    else:
        assert tao["configs_tried"] == 2 and tao["heldout"] is not None
    table = (out / "table.md").read_text()
    for label in ("automl tpe (default)", "automl random", "automl asha", "TAO AutoML bayesian", "## Targets"):
        assert label in table
    statuses = {t["target"]: t["status"] for t in results["targets"]}
    assert len(statuses) == 3 and all(s in ("MET", "NOT MET", "n/a") for s in statuses.values())
    assert (out / "best_so_far.png").stat().st_size > 1000
    assert "Targets (measured vs target):" in proc.stdout
