"""A small search played through the tracker hooks over a real run folder (the files the controller
writes, see ARCHITECTURE.md), for the tracking tests. Runs no training: the point is the tracker."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from automl.reporting import FileReporter
from automl.tracking import Tracker

MONITOR = "val Precision at Rank 1"

# number -> (params, per-epoch monitor values, final state, reason)
TRIALS: dict[int, tuple[dict[str, Any], list[float], str, str | None]] = {
    0: ({"train.optim.lr": 0.01, "train.batch_size": 16, "model.backbone": "resnet"}, [0.2, 0.4, 0.5], "complete", None),
    1: ({"train.optim.lr": 0.3, "train.batch_size": 32, "model.backbone": "vit"}, [0.1], "pruned", "pruned at epoch 0"),
    2: ({"train.optim.lr": 0.001, "train.batch_size": 8, "model.backbone": "resnet"}, [0.3, 0.6, 0.7], "complete", None),
    3: ({"train.optim.lr": 0.05, "train.batch_size": 16, "model.backbone": "convnext"}, [0.25], "failed",
        "RuntimeError: CUDA out of memory (simulated)"),
}


#: the summary's noise-aware evaluation (see automl.search.promote.evaluation_summary)
EVALUATION = {"split": "held-out (data)", "metric": "Precision at Rank 1", "mode": "max",
              "baseline": {"number": 0, "values": [0.40, 0.42, 0.41], "mean": 0.41, "std": 0.01},
              "best": {"number": 2, "values": [0.56, 0.55, 0.57], "mean": 0.56, "std": 0.01},
              "noise_std": 0.01, "gain": 0.15, "verdict": "win", "seeds": [0, 1001, 2001], "errors": []}


def search_info(run_dir: Path, name: str, resumed: bool = False) -> dict[str, Any]:
    return {"name": name, "model": "toy_tracking", "algorithm": "bayesian", "budget": len(TRIALS),
            "backend": "optuna", "seed": 7, "command": f"automl run --model toy --name {name}",
            "monitor": MONITOR, "mode": "max", "resumed": resumed,
            "base_spec": str(run_dir / "base_spec.yaml"), "space": str(run_dir / "space.json")}


def write_search_files(run_dir: Path, name: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "base_spec.yaml").write_text("train:\n  num_epochs: 3\n  optim:\n    lr: 0.01\n")
    (run_dir / "space.json").write_text(json.dumps({"train.optim.lr": {"type": "float", "low": 1e-4, "high": 1.0}}))
    (run_dir / "search.json").write_text(json.dumps(search_info(run_dir, name)))


def play_trial(tracker: Tracker, run_dir: Path, number: int, between_epochs=None) -> dict[str, Any]:
    params, curve, state, reason = TRIALS[number]
    trial_dir = run_dir / "trials" / f"{number:04d}"
    (trial_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (trial_dir / "config.json").write_text(json.dumps(params))
    (trial_dir / "spec.yaml").write_text(f"train:\n  optim:\n    lr: {params['train.optim.lr']}\n")
    tracker.trial_started(number, params, trial_dir)
    reporter = FileReporter(trial_dir)
    started = time.time()
    for epoch, value in enumerate(curve):
        metrics = {MONITOR: value, "train_loss": 1.0 - value, "epoch_time_s": 0.01}
        ckpt = trial_dir / "checkpoints" / "last.ckpt"
        ckpt.write_bytes(b"weights")
        reporter.report(epoch, metrics, ckpt)
        tracker.trial_epoch(number, epoch, metrics)
        if between_epochs is not None:
            between_epochs(number, epoch)
    best_epoch = max(range(len(curve)), key=lambda e: curve[e])
    value = curve[best_epoch] if state == "complete" else None
    result = {"number": number, "state": state, "params": params, "value": value, "best_epoch": best_epoch,
              "best_checkpoint": str(trial_dir / "checkpoints" / "best.ckpt"), "reason": reason,
              "duration_s": time.time() - started, "gpu_seconds": 2 * (time.time() - started),
              "spec": str(trial_dir / "spec.yaml")}
    (trial_dir / "checkpoints" / "best.ckpt").write_bytes(b"weights")
    (trial_dir / "result.json").write_text(json.dumps(result))
    tracker.trial_finished(number, state, value, result, trial_dir)
    return result


def write_best(run_dir: Path, number: int) -> tuple[Path, Any]:
    """The promotion output: a real tiny torch module, its checkpoint and a real ONNX file."""
    import onnx
    import torch
    from onnx import TensorProto, helper

    torch.manual_seed(0)
    module = torch.nn.Linear(4, 2)
    best_dir = run_dir / "best"
    best_dir.mkdir(parents=True, exist_ok=True)
    torch.save(module.state_dict(), best_dir / "model.ckpt")
    weight = helper.make_tensor("W", TensorProto.FLOAT, [4, 2], module.weight.detach().t().flatten().tolist())
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "toy",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), best_dir / "model.onnx")
    # TensorRT cannot run on this machine: the engine file stands in for gen_trt_engine's output.
    (best_dir / "model.engine").write_bytes(b"serialized-engine")
    (best_dir / "evaluate.json").write_text(json.dumps({MONITOR: 0.7, "mAP": 0.55}))
    (best_dir / "summary.json").write_text(json.dumps({"trial": number}))
    return best_dir, module


def play_search(tracker: Tracker, run_dir: Path, name: str, numbers=None, promote: bool = True,
                between_trials=None, between_epochs=None, end: bool = True, promoted_value: float = 0.7) -> None:
    write_search_files(run_dir, name)
    tracker.start_search(run_dir, search_info(run_dir, name))
    results = []
    for number in numbers if numbers is not None else sorted(TRIALS):
        results.append(play_trial(tracker, run_dir, number, between_epochs))
        done = [r for r in results if r["state"] == "complete"]
        best = max(done, key=lambda r: r["value"]) if done else None
        tracker.search_progress({"number": best["number"], "value": best["value"]} if best else None)
        if between_trials is not None:
            between_trials(number)
    if promote:
        best_dir, module = write_best(run_dir, 2)
        import numpy as np

        tracker.promoted({"number": 2, "value": promoted_value, "torch_module": module,
                          "input_example": np.ones((1, 4), dtype=np.float32)}, best_dir)
    if end:
        tracker.end_search({"name": name, "status": "finished", "trials": len(results), "best_value": 0.7,
                            "evaluation": EVALUATION})


def check_search(client, state, name: str) -> dict[str, Any]:
    """Assert what the UI must show for :func:`play_search`; returns {"parent": run, "children": {n: run}}."""
    import numpy as np

    experiment_id = state.experiment_id
    runs = client.search_runs([experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    parent = parents[0]
    assert parent.info.run_name == name and parent.info.status == "FINISHED"
    tags = parent.data.tags
    assert tags["automl.model"] == "toy_tracking" and tags["automl.algorithm"] == "bayesian"
    assert tags["automl.budget"] == "4" and tags["automl.backend"] == "optuna" and tags["automl.seed"] == "7"
    assert tags["automl.command"] == f"automl run --model toy --name {name}"
    assert tags["automl.best_trial"] == "2"
    assert tags["automl.verdict"] == "win" and tags["automl.evaluation_split"] == "held-out (data)"
    assert {k: parent.data.metrics[k] for k in ("evaluation/baseline_mean", "evaluation/best_mean",
                                                 "evaluation/noise_std", "evaluation/gain")} == \
        {"evaluation/baseline_mean": 0.41, "evaluation/best_mean": 0.56, "evaluation/noise_std": 0.01,
         "evaluation/gain": 0.15}
    history = client.get_metric_history(parent.info.run_id, "best_so_far")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.5), (2, 0.5), (3, 0.7), (4, 0.7)]
    parent_files = {a.path for a in client.list_artifacts(parent.info.run_id, "search")}
    assert {"search/base_spec.yaml", "search/space.json", "search/search.json"} <= parent_files
    plot_files = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/learning_curves.png", "plots/optimization_history.png", "plots/optimization_history.html",
            "plots/parallel_coordinate.html", "plots/param_importances.html", "plots/baseline_vs_winner.png"} <= plot_files
    assert not any(k.startswith("champion/") for k in parent.data.metrics), "single values are tags, not charts"
    assert parent.data.tags["automl.champion.mAP"] == "0.55"
    assert "summary.csv" in {a.path for a in client.list_artifacts(parent.info.run_id)}

    children = {int(r.data.tags["automl.trial_number"]): r for r in runs if r is not parent}
    assert sorted(children) == sorted(TRIALS), "one child run per trial"
    expected_status = {"complete": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}
    for number, run in children.items():
        params, curve, state_name, reason = TRIALS[number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["mlflow.source.name"] == "automl run" and run.data.tags["automl.search"] == name
        assert run.info.status == expected_status[state_name]
        assert run.data.tags["automl.state"] == state_name
        if reason:
            assert run.data.tags["automl.reason"] == reason
        assert run.data.params == {k: str(v) if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
        metric = client.get_metric_history(run.info.run_id, MONITOR)
        assert [(m.step, m.value) for m in sorted(metric, key=lambda m: m.step)] == list(enumerate(curve)), \
            f"trial {number}: every epoch exactly once"
        assert len(client.get_metric_history(run.info.run_id, "train_loss")) == len(curve)
        assert "duration_s" in run.data.metrics and "gpu_seconds" in run.data.metrics
        assert run.data.tags["automl.checkpoint"].endswith(f"{number:04d}/checkpoints/best.ckpt")
        assert "spec/spec.yaml" in {a.path for a in client.list_artifacts(run.info.run_id, "spec")}
    assert [n for n, r in children.items() if r.data.tags.get("best") == "true"] == [2], "the best tag moved to 2"

    version = client.get_model_version_by_alias("toy_tracking", "champion")
    assert version.run_id == children[2].info.run_id
    assert version.tags["automl.search"] == name
    assert version.tags["automl.parent_run_id"] == parent.info.run_id
    assert version.tags["automl.trial_number"] == "2"
    promoted = {a.path for a in client.list_artifacts(children[2].info.run_id, "promoted")}
    assert {"promoted/model.onnx", "promoted/model.engine", "promoted/model.ckpt"} <= promoted
    import mlflow.pytorch
    import torch

    import mlflow.artifacts

    # An MLflow 3 logged model of the trial's run, with a signature, what the version points at.
    outputs = client.get_run(children[2].info.run_id).outputs.model_outputs
    assert len(outputs) == 1 and version.source == f"models:/{outputs[0].model_id}"
    logged = client.get_logged_model(outputs[0].model_id)
    assert logged.source_run_id == children[2].info.run_id and str(logged.status).endswith("READY")
    assert version.tags["automl.alias"] == "champion" and version.tags["automl.eval_metric"] == MONITOR
    # Not mlflow.set_tracking_uri: it exports MLFLOW_TRACKING_URI to every later subprocess.
    local = mlflow.artifacts.download_artifacts(artifact_uri=logged.artifact_location, tracking_uri=state.tracking_uri)
    from mlflow.models import Model

    signature = Model.load(local).signature
    assert signature is not None and signature.inputs.input_types()[0] == np.float32
    model = mlflow.pytorch.load_model(local)
    _, module = write_best_module()
    x = np.ones((1, 4), dtype=np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(np.asarray(model(torch.from_numpy(x))), module(torch.from_numpy(x)).numpy(),
                                   rtol=1e-5)
    return {"parent": parent, "children": children}


def write_best_module():
    import torch

    torch.manual_seed(0)
    return None, torch.nn.Linear(4, 2)
