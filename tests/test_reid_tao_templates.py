"""A TAO user's reid spec files (../shared/tao-models/tao-train-reid) run here after setting only the
dataset paths (and dataset.num_classes, which TAO's skill page lists among the mandatory overrides)."""

from __future__ import annotations

from pathlib import Path

import pytest

from automl.space import load_schema, validate_spec
from automl.spec import apply_config, load_yaml
from trainers.reid import plugin

TAO = Path(__file__).resolve().parents[1].parent / "shared" / "tao-models" / "tao-train-reid" / "references"
pytestmark = pytest.mark.skipif(not TAO.is_dir(), reason=f"TAO reference specs not found at {TAO} (../shared is absent)")

# CPU-sized model and data for the default test run; the slow test runs TAO's own values.
CPU = {"model.backbone": "test_resnet.r160_in1k", "model.input_height": 64, "model.input_width": 32,
       "dataset.batch_size": 16, "dataset.num_workers": 0, "train.num_epochs": 1}


def tao(action: str) -> dict:
    return load_yaml(TAO / f"spec_template_{action}.yaml")


def data_paths(keys: dict) -> dict:
    return {k: v for k, v in keys.items() if k.startswith("dataset.")}


@pytest.mark.parametrize("action", ["train", "evaluate", "inference", "export"])
def test_tao_specs_validate_against_our_schema(action):
    assert validate_spec(tao(action), load_schema(plugin.schema_path()), source=action) == []


def _run_all_actions(keys: dict, tmp_path: Path, extra: dict) -> dict:
    train = plugin.train(apply_config(tao("train"), {**data_paths(keys), **extra}), tmp_path / "train")
    ckpt = train["best_checkpoint"]
    q, g = keys["dataset.query_dataset_dir"], keys["dataset.test_dataset_dir"]
    evaluated = plugin.evaluate(apply_config(tao("evaluate"), {"evaluate.checkpoint": ckpt, "evaluate.query_dataset": q,
                                                               "evaluate.test_dataset": g}), tmp_path / "evaluate")
    inferred = plugin.inference(apply_config(tao("inference"), {"inference.checkpoint": ckpt, "inference.query_dataset": q,
                                                                "inference.test_dataset": g}), tmp_path / "inference")
    exported = plugin.export(apply_config(tao("export"), {"export.checkpoint": ckpt}), tmp_path / "export")
    return {"train": train, "evaluate": evaluated, "inference": inferred, "export": exported}


def test_tao_templates_run_on_cpu_sized_settings(tmp_path):
    keys = plugin.make_dataset(tmp_path / "data", seed=0, classes=8, per_class=6, size=64, cameras=3)
    out = _run_all_actions(keys, tmp_path, {"dataset.num_classes": keys["dataset.num_classes"], **CPU})
    assert out["train"]["epochs_run"] == 1
    assert Path(out["evaluate"]["cmc_curve_plot"]).is_file() and Path(out["inference"]["output_file"]).is_file()
    assert out["export"]["parity"]["max_abs_diff"] <= 1e-4


@pytest.mark.slow
@pytest.mark.heavy
def test_tao_templates_run_with_tao_values(tmp_path):
    """resnet_50 at 256x128, batch 64 (16 x 4), TAO's 10 epochs: minutes on a CPU."""
    keys = plugin.make_dataset(tmp_path / "data", seed=0, classes=16, per_class=8, size=128, cameras=4)
    out = _run_all_actions(keys, tmp_path, {"dataset.num_classes": keys["dataset.num_classes"]})
    assert out["train"]["epochs_run"] == 10
    assert out["export"]["input_shape"] == [3, 256, 128]
