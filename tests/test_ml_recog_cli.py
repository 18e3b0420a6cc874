"""The ml_recog CLI: spec errors are one line (exit 2); a TAO user's spec runs after setting only the
dataset paths (plus tiny-model overrides for speed); --json prints the result last."""

from __future__ import annotations

import json
import logging

import pytest

from trainers.ml_recog import plugin

from _ml_recog_helpers import TAO_REFERENCES, make_data
from _cli_helpers import run_cli


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("glyphs_cli"))


@pytest.mark.parametrize("override, expected", [
    ("train.optim.trunk.base_lr=fast", "'train.optim.trunk.base_lr' must be a number"),
    ("train.bach_size=32", "unknown key 'train.bach_size' (did you mean 'train.batch_size'?)"),
    ("model.backbone=fan_small", "allowed values: compact_cnn_s, compact_cnn_m"),
    ("train.optim.name=RMSprop", "allowed values: Adam, SGD, Adamax"),
    ("train.optim.triplet_loss_margin=5", "'train.optim.triplet_loss_margin' = 5 is outside"),
])
def test_spec_errors_are_one_line_with_exit_2(override, expected, capsys, tmp_path):
    code, out, err = run_cli(["train", "--model", "ml_recog", override, "--results-dir", str(tmp_path)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    assert lines[0].startswith("error: override: ")  # names where the bad value came from: the override


def test_unavailable_backbone_lists_the_available_ones():
    from automl.errors import AutomlError
    from trainers.ml_recog.config import timm_name

    with pytest.raises(AutomlError, match="'fan_small' is a TAO backbone with no timm implementation; available: resnet_18"):
        timm_name("fan_small")


def test_missing_dataset_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(["train", "--model", "ml_recog", "train.num_epochs=1", "--results-dir", str(tmp_path)], capsys)
    assert code == 2 and err.strip() == "error: dataset.train_dataset: no dataset path set"


def test_tao_train_template_runs_after_setting_dataset_paths(data, capsys, caplog, tmp_path):
    template = TAO_REFERENCES / "spec_template_train.yaml"
    if not template.is_file():
        pytest.skip(f"TAO reference specs not found at {TAO_REFERENCES} (../shared is absent)")
    keys = plugin.data_keys(data)
    args = ["train", "--model", "ml_recog", "-e", str(template), *(f"{k}={v}" for k, v in keys.items()),
            # speed only (a CPU): the TAO spec is correct without these
            "model.backbone=test_convnext", "model.input_width=32", "model.input_height=32", "train.num_epochs=1",
            "--results-dir", str(tmp_path), "--json"]
    with caplog.at_level(logging.WARNING, logger="automl.trainers.ml_recog"):
        code, out, err = run_cli(args, capsys)
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result == json.loads((tmp_path / "train.json").read_text())
    assert result["epochs_run"] == 1 and result["best_checkpoint"].endswith("best.ckpt")
    ignored = [r.getMessage() for r in caplog.records if "no effect here" in r.getMessage()]
    assert len(ignored) == 1 and "wandb" in ignored[0] and "encryption_key" in ignored[0]


def test_cli_evaluate_export_and_data_make(data, capsys, tmp_path):
    code, out, err = run_cli(["data", "make", "--task", "ml_recog", "--out", str(tmp_path / "d"), "--classes", "6",
                              "--per-class", "4", "--size", "24", "--json"], capsys)
    assert code == 0, err
    made = json.loads(out.strip().splitlines()[-1])
    assert made["spec_keys"]["dataset.train_dataset"].endswith("known_classes/train")
    code, out, err = run_cli(["train", "--model", "ml_recog", "--data", str(tmp_path / "d"), "train.num_epochs=1",
                              "train.batch_size=8", "--results-dir", str(tmp_path / "t"), "--json"], capsys)
    assert code == 0, err
    ckpt = json.loads(out.strip().splitlines()[-1])["best_checkpoint"]
    code, out, err = run_cli(["evaluate", "--model", "ml_recog", "--data", str(tmp_path / "d"),
                              f"evaluate.checkpoint={ckpt}", "--results-dir", str(tmp_path / "e"), "--json"], capsys)
    assert code == 0, err
    assert "Precision at Rank 1" in json.loads(out.strip().splitlines()[-1])["metrics"]
    code, out, err = run_cli(["export", "--model", "ml_recog", f"export.checkpoint={ckpt}",
                              "--results-dir", str(tmp_path / "x"), "--json"], capsys)
    assert code == 0, err
    exported = json.loads(out.strip().splitlines()[-1])
    assert exported["parity"]["max_abs_diff"] <= 1e-4 and (tmp_path / "x" / "model.onnx").is_file()
    code, _, err = run_cli(["gen_trt_engine", "--model", "ml_recog", f"gen_trt_engine.onnx_file={exported['onnx_file']}",
                            "--results-dir", str(tmp_path / "g")], capsys)
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert code == 2 and "gen_trt_engine needs TensorRT" in err


def test_templates_and_example_specs_validate():
    from pathlib import Path

    from automl.space import load_schema, validate_spec
    from automl.spec import load_yaml

    schema = load_schema(plugin.schema_path())
    root = Path(__file__).resolve().parents[1]
    files = sorted((root / "experiments").glob("ml_recog_*.yaml")) + sorted((root / "search_spaces/ml_recog").glob("*.yaml"))
    assert len(files) >= 7
    for path in files:
        assert validate_spec(load_yaml(path), schema, str(path)) == [], path
    assert schema.default_spec()["model"]["backbone"] == "compact_cnn_m"
