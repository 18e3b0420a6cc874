"""ml_recog end to end on generated glyphs: learning, checkpoints, resume, reporter stop, evaluate,
inference and ONNX export."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from automl.data.glyphs import split_sizes
from automl.reporting import FileReporter, read_metrics
from trainers.ml_recog import config, plugin
from trainers.ml_recog.model import load_network
from trainers.ml_recog.module import MLRecogModule

from _ml_recog_helpers import DATA_OPTIONS, eval_spec, make_data, train_spec

MONITOR = "val Precision at Rank 1"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("glyphs"))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """3 epochs of the default tiny config (the template), fixed seed."""
    out = tmp_path_factory.mktemp("train")
    result = plugin.train(train_spec(data, **{"train.num_epochs": 3}), out)
    return out, result


def unknown_precision(net, data):
    result = plugin.evaluate_network(net, config.resolve(eval_spec(data, "unused"), "evaluate"))
    return result["metrics"]["Precision at Rank 1"]


def test_three_epochs_lift_unknown_class_precision_well_above_untrained(data, trained):
    out, result = trained
    spec = config.resolve(train_spec(data), "train")
    pl.seed_everything(int(spec["train"]["seed"]), verbose=False)
    untrained = unknown_precision(MLRecogModule(spec).net, data)  # the very initial weights of the run
    net, _ = load_network(result["best_checkpoint"], "evaluate.checkpoint")
    learned = unknown_precision(net, data)
    print(f"unknown-class Precision@1: untrained {untrained:.3f} -> trained {learned:.3f}")
    # Measured 2026-12-01 on the 2-core CPU (this data and spec, seeds 1234/1235/1236 with 2 threads, 1234
    # with 1 thread): untrained 0.125-0.144, trained 0.417-0.557 (mean 0.49). The threshold is 0.17
    # below the worst run and 0.14 above the best untrained network. Before compact_cnn_m the default
    # (timm's test_convnext) reached 0.208-0.250 depending on the thread count and SIMD width alone,
    # which is why this test failed on another machine (issue 19).
    assert learned >= 0.25 and learned >= untrained + 0.12
    assert result["epochs_run"] == 3 and result["best_value"] == max(h[MONITOR] for h in result["history"])
    records = read_metrics(out)
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert all(MONITOR in r["metrics"] and "val Mean Average Precision" in r["metrics"] for r in records)
    assert all(r["checkpoint"].endswith("last.ckpt") for r in records)


def test_checkpoints_load_weights_only(trained):
    out, result = trained
    for name in ("best.ckpt", "last.ckpt"):
        data = torch.load(out / "checkpoints" / name, map_location="cpu", weights_only=True)
        assert any(k.startswith("net.trunk.") for k in data["state_dict"])
        assert data["automl"]["model"]["backbone"] == config.template()["model"]["backbone"]
    assert result["best_checkpoint"] == str(out / "checkpoints" / "best.ckpt")


class StopAfterFirst(FileReporter):
    def __init__(self, results_dir):
        super().__init__(results_dir)
        self.calls = 0

    def report(self, epoch, metrics, checkpoint=None):
        super().report(epoch, metrics, checkpoint)
        self.calls += 1

    def should_stop(self):
        return self.calls >= 1


def test_reporter_stop_then_resume_with_larger_max_epochs(data, tmp_path):
    spec = train_spec(data, **{"train.num_epochs": 4, "train.optim.steps": [2]})
    first = plugin.train(spec, tmp_path, reporter=StopAfterFirst(tmp_path), max_epochs=3)
    assert first["epochs_run"] == 1 and first["stopped_early"]
    last = tmp_path / "checkpoints" / "last.ckpt"
    lr_after_first = torch.load(last, weights_only=True)["lr_schedulers"][0]["_last_lr"]
    resumed = train_spec(data, **{"train.num_epochs": 4, "train.optim.steps": [2],
                                  "train.resume_training_checkpoint_path": str(last)})
    second = plugin.train(resumed, tmp_path, max_epochs=2)
    assert second["epochs_run"] == 2
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [0, 1]
    # resuming continued the same per-step curve (its horizon is num_epochs=4, not max_epochs):
    # full rate after epoch 0, decayed by gamma once epoch 2 begins
    ckpt = torch.load(last, weights_only=True)
    state = ckpt["lr_schedulers"][0]
    assert state["last_epoch"] == ckpt["global_step"] > 0
    base = config.template()["train"]["optim"]["trunk"]["base_lr"]
    assert lr_after_first[0] == pytest.approx(base)
    assert state["_last_lr"][0] == pytest.approx(base * 0.1)


def test_evaluate_and_inference(data, trained, tmp_path):
    _, result = trained
    ev = plugin.evaluate(eval_spec(data, result["best_checkpoint"]), tmp_path)
    assert 0 < ev["metrics"]["Precision at Rank 1"] <= 1 and ev["metrics"]["queries without reference"] == 0
    assert ev["num_classes"] == 12 and ev["top5_accuracy"] >= ev["metrics"]["Precision at Rank 1"]
    keys = plugin.evaluation_keys(data)
    spec = {"inference": {"checkpoint": result["best_checkpoint"], "input_path": keys["inference.input_path"], "topk": 3},
            "dataset": {"val_dataset": {"reference": keys["dataset.val_dataset.reference"]}}}
    inf = plugin.inference(spec, tmp_path)
    predictions = json.loads((tmp_path / "inference_results.json").read_text())
    queries = split_sizes(DATA_OPTIONS["per_class"], known=24, unknown=12)["unknown_classes/test"]
    assert inf["num_images"] == len(predictions) == 12 * queries
    first = predictions[0]
    assert len(first["matches"]) == 3 and first["true_class"]
    assert [m["distance"] for m in first["matches"]] == sorted(m["distance"] for m in first["matches"])
    assert abs(inf["top1_accuracy"] - np.mean([p["matches"][0]["class"] == p["true_class"] for p in predictions])) < 1e-9


def test_onnx_export_parity(trained, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    _, result = trained
    out = plugin.export({"export": {"checkpoint": result["best_checkpoint"], "onnx_file": str(tmp_path / "m.onnx")}},
                        tmp_path)
    onnx.checker.check_model(out["onnx_file"], full_check=True)
    assert out["parity"]["max_abs_diff"] <= 1e-4
    net, meta = load_network(result["best_checkpoint"], "export.checkpoint")
    size = meta["model"]["input_height"]
    session = ort.InferenceSession(out["onnx_file"], providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch" and session.get_inputs()[0].shape[2:] == [size, size]
    for batch in (1, 7):  # dynamic batch
        x = torch.randn(batch, 3, size, size)
        got = session.run(None, {"input": x.numpy()})[0]
        assert np.abs(got - net(x).detach().numpy()).max() <= 1e-4


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    """The data `automl run --model ml_recog` trains on when given none (48 classes, 32 per class)."""
    root = tmp_path_factory.mktemp("demo_glyphs")
    plugin.make_dataset(root, seed=0)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1234, 1235])
def test_default_config_learns_on_the_demo_data(demo_data, tmp_path, seed):
    """The template's defaults (compact_cnn_m, 10 epochs) on the demo data, as the demo search's baseline.

    Measured with `benchmarks/default_learning.py --model ml_recog --seeds 5` (2026-12-01, this 2-core
    CPU, seeds 1234-1238): val P@1 0.675 +- 0.034 (0.641-0.727); unknown-class P@1 0.653 +- 0.046
    (0.602-0.707); the untrained network scores 0.039 (val, chance 1/32) and 0.098 (unknown classes,
    chance 1/16). The thresholds sit 0.24 below the worst seed (7 seed stds) and far above the
    untrained scores: outside both the seed-to-seed and the machine-to-machine spread, and still
    failing for a network that does not learn.
    """
    result = plugin.train(train_spec(demo_data, **{"train.seed": seed}), tmp_path)
    net, _ = load_network(result["best_checkpoint"], "evaluate.checkpoint")
    held_out = unknown_precision(net, demo_data)
    print(f"seed {seed}: val P@1 {result['best_value']:.3f}, unknown-class P@1 {held_out:.3f}")
    assert result["best_value"] >= 0.40
    assert held_out >= 0.35
