"""The reid trainer end to end on generated data: it learns, checkpoints load weights-only, evaluate
writes its plots, inference its rankings, export an ONNX model with parity, and a paused run resumes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from automl.errors import AutomlError
from automl.reporting import read_metrics
from automl.spec import apply_config, load_yaml
from trainers.reid import plugin
from trainers.reid.model import build_net

TINY = {
    "model.backbone": "test_resnet.r160_in1k", "model.input_height": 64, "model.input_width": 32,
    "dataset.batch_size": 32, "dataset.num_instances": 4, "dataset.val_batch_size": 64, "dataset.num_workers": 0,
    "dataset.padding": 4, "train.num_epochs": 12, "train.checkpoint_interval": 0, "train.seed": 7,
    "train.optim.base_lr": 3e-3, "train.optim.warmup_iters": 1, "train.optim.lr_steps": [30],
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return plugin.make_dataset(tmp_path_factory.mktemp("reid_data"), seed=0, classes=32, per_class=8, size=64, cameras=4)


def tiny_spec(data: dict, **extra) -> dict:
    return apply_config(load_yaml(plugin.spec_template("train")), {**data, **TINY, **extra})


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> tuple[dict, Path]:
    results = tmp_path_factory.mktemp("reid_run")
    return plugin.train(tiny_spec(data), results), results


def _evaluate(checkpoint: str, data: dict, out: Path, **extra) -> dict:
    spec = apply_config(load_yaml(plugin.spec_template("evaluate")), {
        "evaluate.checkpoint": checkpoint, "evaluate.query_dataset": data["dataset.query_dataset_dir"],
        "evaluate.test_dataset": data["dataset.test_dataset_dir"], **extra})
    return plugin.evaluate(spec, out)


def _untrained_checkpoint(spec: dict, num_classes: int, seed: int, path: Path) -> str:
    """The same network before training, saved as a checkpoint so it is evaluated the same way."""
    torch.manual_seed(seed)
    net = build_net(spec, num_classes)
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "automl": {"model": "reid", "spec": spec, "num_classes": num_classes, "pids": []}}, path)
    return str(path)


def test_training_beats_an_untrained_model(trained, data, tmp_path):
    result, results_dir = trained
    untrained = _untrained_checkpoint(tiny_spec(data), data["dataset.num_classes"], 7, tmp_path / "untrained.ckpt")
    before = _evaluate(untrained, data, tmp_path / "before")
    after = _evaluate(result["best_checkpoint"], data, tmp_path / "after")
    assert after["cmc_rank_1"] == pytest.approx(result["best_value"])
    assert after["cmc_rank_1"] >= before["cmc_rank_1"] + 0.1, (before, after)
    assert after["mAP"] > before["mAP"] + 0.05, (before, after)


# The template's defaults on `automl data make --task reid`'s defaults, measured with
# `benchmarks/default_learning.py --model reid --seeds 3` (benchmarks/RESULTS.md, "Default configs learn"):
# best-epoch cmc_rank_1 0.391 / 0.391 / 0.337 (seeds 1234-1236): mean 0.373, std 0.031, min 0.337 (a repeat
# run: 0.364 / 0.391 / 0.337); mAP at that epoch 0.397 / 0.374 / 0.348: mean 0.373, std 0.025, min 0.348;
# the untrained network: cmc_rank_1 0.000, mAP 0.011. The thresholds sit 4-5 std below the lowest seed.
DEFAULT_MIN_RANK1 = 0.20
DEFAULT_MIN_MAP = 0.20


@pytest.fixture(scope="module")
def default_data(tmp_path_factory) -> dict:
    return plugin.make_dataset(tmp_path_factory.mktemp("reid_default_data"), seed=0)


@pytest.mark.slow
def test_the_default_config_learns(default_data, tmp_path):
    """The template as shipped (compact CNN at 64x32, 10 epochs) on the default demo data, two seeds:
    rank-1 and mAP far above the untrained network's, each seed on its own."""
    spec = apply_config(load_yaml(plugin.spec_template("train")), default_data)
    for seed in (1234, 1235):
        result = plugin.train(apply_config(spec, {"train.seed": seed}), tmp_path / f"seed{seed}")
        assert result["num_query"] >= 150  # one query is at most 0.0067 of rank-1
        best = max(result["history"], key=lambda h: h["cmc_rank_1"])
        untrained = _untrained_checkpoint(spec, default_data["dataset.num_classes"], seed, tmp_path / f"u{seed}.ckpt")
        before = _evaluate(untrained, default_data, tmp_path / f"before{seed}")
        assert best["cmc_rank_1"] >= max(DEFAULT_MIN_RANK1, before["cmc_rank_1"] + 0.15), (seed, before, best)
        assert best["mAP"] >= max(DEFAULT_MIN_MAP, before["mAP"] + 0.15), (seed, before, best)


def test_train_result_reports_and_checkpoints(trained):
    result, results_dir = trained
    assert result["epochs_run"] == 12 and result["num_classes"] == 32
    records = read_metrics(results_dir)
    assert [r["epoch"] for r in records] == list(range(12))
    assert all({"cmc_rank_1", "cmc_rank_5", "cmc_rank_10", "mAP"} <= set(r["metrics"]) for r in records)
    best = max(r["metrics"]["cmc_rank_1"] for r in records)
    assert result["best_value"] == pytest.approx(best)
    for name in ("best.ckpt", "last.ckpt"):
        ckpt = torch.load(results_dir / "checkpoints" / name, weights_only=True)
        assert ckpt["automl"]["model"] == "reid" and ckpt["automl"]["num_classes"] == 32


def test_evaluate_writes_metrics_and_plots(trained, data, tmp_path):
    result, _ = trained
    out = _evaluate(result["best_checkpoint"], data, tmp_path,
                    **{"evaluate.output_cmc_curve_plot": str(tmp_path / "plots" / "cmc.png")})
    assert Path(out["cmc_curve_plot"]) == tmp_path / "plots" / "cmc.png"
    for key in ("cmc_curve_plot", "sampled_matches_plot"):
        assert Path(out[key]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out["num_scored_queries"] == out["num_query"]
    assert out["cmc"] == sorted(out["cmc"])  # a CMC curve never decreases
    reranked = _evaluate(result["best_checkpoint"], data, tmp_path / "rr", **{"re_ranking.re_ranking": True})
    assert reranked["re_ranking"] is True and 0.0 <= reranked["mAP"] <= 1.0


def test_inference_writes_ranked_matches(trained, data, tmp_path):
    result, _ = trained
    spec = apply_config(load_yaml(plugin.spec_template("inference")), {
        "inference.checkpoint": result["best_checkpoint"], "inference.query_dataset": data["dataset.query_dataset_dir"],
        "inference.test_dataset": data["dataset.test_dataset_dir"], "inference.output_file": str(tmp_path / "ranks.json")})
    out = plugin.inference(spec, tmp_path)
    rows = json.loads((tmp_path / "ranks.json").read_text())["results"]
    assert len(rows) == out["num_query"] and out["top_k"] == 10
    for row in rows:
        distances = [m["distance"] for m in row["matches"]]
        assert distances == sorted(distances) and [m["rank"] for m in row["matches"]] == list(range(1, 11))


def test_export_onnx_parity_at_the_trained_size(trained, tmp_path):
    result, _ = trained
    spec = apply_config(load_yaml(plugin.spec_template("export")), {
        "export.checkpoint": result["best_checkpoint"], "export.onnx_file": str(tmp_path / "reid.onnx")})
    out = plugin.export(spec, tmp_path)
    assert out["input_shape"] == [3, 64, 32]
    assert out["parity"]["max_abs_diff"] <= 1e-4
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "reid.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {session.get_inputs()[0].name: torch.zeros(3, 3, 64, 32).numpy()})[0].shape == (3, 96)


def test_paused_run_resumes_to_the_same_horizon(data, tmp_path):
    spec = tiny_spec(data, **{"train.num_epochs": 2, "model.with_center_loss": True, "model.with_flip_feature": True})
    first = plugin.train(spec, tmp_path, max_epochs=1)
    assert first["epochs_run"] == 1
    resumed = apply_config(spec, {"train.resume_training_checkpoint_path": first["last_checkpoint"]})
    second = plugin.train(resumed, tmp_path, max_epochs=2)
    assert second["epochs_run"] == 2
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [0, 1]
    ckpt = torch.load(second["last_checkpoint"], weights_only=True)
    assert ckpt["state_dict"]["criterion.center.centers"].shape == (32, 96)  # center loss trained and saved


def test_compact_backbones_build_and_unknown_names_list_them():
    from automl.training.backbones import COMPACT_BACKBONES

    for name in COMPACT_BACKBONES:
        net = build_net({"model": {"backbone": name, "last_stride": 1}}, 4).eval()  # last_stride: ResNet-only, ignored
        assert net(torch.zeros(2, 3, 64, 32)).shape == (2, net.feat_dim)
    with pytest.raises(AutomlError, match="compact_cnn_m"):
        build_net({"model": {"backbone": "no_such_net"}}, 4)


def test_num_classes_mismatch_is_inferred_from_the_data(data, tmp_path, caplog):
    # the whole train action with TAO's 751: tests/test_tao_templates.py
    with caplog.at_level(logging.WARNING, logger="automl.trainers.reid"):
        datamodule = plugin.build_datamodule(tiny_spec(data, **{"dataset.num_classes": 751}))
    assert datamodule.num_classes == 32
    assert any("dataset.num_classes is 751 but" in r.getMessage() and "using 32" in r.getMessage() for r in caplog.records)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    torch.save({"state_dict": {}, "automl": {"model": "mae"}}, tmp_path / "x.ckpt")
    spec = apply_config(load_yaml(plugin.spec_template("export")), {"export.checkpoint": str(tmp_path / "x.ckpt")})
    with pytest.raises(AutomlError, match="not a checkpoint of the reid trainer"):
        plugin.export(spec, tmp_path)


def test_gen_trt_engine_without_tensorrt_is_one_clear_error(trained, tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here: the engine build itself is exercised on GPU machines")
    result, _ = trained
    onnx_file = tmp_path / "reid.onnx"
    plugin.export(apply_config(load_yaml(plugin.spec_template("export")), {
        "export.checkpoint": result["best_checkpoint"], "export.onnx_file": str(onnx_file)}), tmp_path)
    spec = apply_config(load_yaml(plugin.spec_template("gen_trt_engine")), {"gen_trt_engine.onnx_file": str(onnx_file)})
    with pytest.raises(AutomlError, match="TensorRT"):
        plugin.gen_trt_engine(spec, tmp_path)


DDP_SCRIPT = """
import json, os, sys
from pathlib import Path
from automl.spec import apply_config, load_yaml
from trainers.reid import plugin
spec = apply_config(load_yaml(plugin.spec_template("train")), json.loads(sys.argv[1]))
result = plugin.train(spec, Path(sys.argv[2]))
if os.environ.get("LOCAL_RANK", "0") == "0":
    print("RESULT " + json.dumps({k: v for k, v in result.items() if k != "history"}))
"""


@pytest.mark.slow
def test_two_process_ddp_on_cpu(data, tmp_path):
    """Lightning DDP over gloo with 2 CPU processes (AUTOML_CPU_PROCESSES=2): the P x K batches are
    dealt to the ranks and rank 0 reports. The NCCL/GPU branch cannot run on this machine."""
    import os
    import subprocess
    import sys

    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    config = {**data, **TINY, "train.num_epochs": 2}
    env = {**os.environ, "AUTOML_CPU_PROCESSES": "2"}
    proc = subprocess.run([sys.executable, str(script), json.dumps(config), str(tmp_path / "run")], env=env,
                          capture_output=True, text=True, timeout=900, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "MEMBER: 2/2" in proc.stderr + proc.stdout
    result = json.loads(proc.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert result["epochs_run"] == 2 and Path(result["best_checkpoint"]).is_file()
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [0, 1]  # only rank 0 reports
