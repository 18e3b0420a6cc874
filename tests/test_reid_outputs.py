"""reid on a generated Market-1501 folder (``automl data make --task reid``), through the CLI:
inference predictions survive the CLI's summary, TAO's export template finds the train run, and data
with no scorable query is refused in one line (before training, and in evaluate)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automl.errors import AutomlError
from automl.spec import apply_config, load_yaml
from trainers.reid import plugin
from trainers.reid.data import ReidDataModule
from _cli_helpers import run_cli, run_cli_steps

TAO = Path(__file__).resolve().parents[1].parent / "shared" / "tao-models" / "tao-train-reid" / "references"
CPU = ["model.backbone=test_resnet.r160_in1k", "model.input_height=64", "model.input_width=32", "dataset.batch_size=16",
       "dataset.num_workers=0", "train.num_epochs=1", "train.checkpoint_interval=0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Generated data and a 1-epoch CPU-sized train run (MLflow tracking off: not checked here)."""
    root = tmp_path_factory.mktemp("reid_outputs")
    patch = pytest.MonkeyPatch()
    patch.setenv("AUTOML_TRACKING", "off")
    run_cli_steps(["data", "make", "--task", "reid", "--out", str(root / "data"), "--classes", "8", "--per-class", "6"],
                  ["train", "--model", "reid", "--data", str(root / "data"), *CPU, "--results-dir", str(root / "train")])
    yield root
    patch.undo()


def _inference(trained: Path, out: Path, capsys, *extra: str):
    data = trained / "data"
    return run_cli(["inference", "--model", "reid", f"inference.checkpoint={trained / 'train/checkpoints/best.ckpt'}",
                    f"inference.query_dataset={data / 'query'}", f"inference.test_dataset={data / 'bounding_box_test'}",
                    *extra, "--results-dir", str(out), "--json"], capsys)


def test_inference_predictions_survive_the_summary(trained, capsys, tmp_path):
    code, out, err = _inference(trained, tmp_path / "default", capsys)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    predictions = json.loads((tmp_path / "default" / "inference_results.json").read_text())
    assert summary["output_file"] == str(tmp_path / "default" / "inference_results.json")
    assert json.loads((tmp_path / "default" / "inference.json").read_text()) == summary
    num_query = len(list((trained / "data" / "query").iterdir()))
    assert len(predictions["results"]) == summary["num_query"] == num_query
    assert all(len(row["matches"]) == predictions["top_k"] for row in predictions["results"])
    # TAO's inference.output_file is honoured
    code, out, err = _inference(trained, tmp_path / "named", capsys, f"inference.output_file={tmp_path / 'p' / 'reid.json'}")
    assert code == 0, err
    assert json.loads((tmp_path / "p" / "reid.json").read_text())["results"] == predictions["results"]


def test_output_file_on_the_summary_path_is_refused_before_running(trained, capsys, tmp_path):
    code, _, err = _inference(trained, tmp_path, capsys, f"inference.output_file={tmp_path / 'inference.json'}")
    assert code == 2 and "inference.output_file" in err and "summary" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "inference.json").exists()


def test_tao_export_template_finds_the_train_runs_checkpoint(trained, capsys):
    if not TAO.is_dir():
        pytest.skip(f"TAO reference specs not found at {TAO} (../shared is absent)")
    code, out, err = run_cli(["export", "--model", "reid", "-e", str(TAO / "spec_template_export.yaml"),
                              f"results_dir={trained / 'train'}", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert Path(result["onnx_file"]).is_file() and result["parity"]["max_abs_diff"] <= 1e-4


def test_no_scorable_query_is_refused_by_evaluate_and_before_training(trained, capsys, tmp_path):
    data = trained / "data"
    # training identities never appear in the test gallery: not one query can be scored
    code, _, err = run_cli(["evaluate", "--model", "reid", f"evaluate.checkpoint={trained / 'train/checkpoints/best.ckpt'}",
                            f"evaluate.query_dataset={data / 'bounding_box_train'}",
                            f"evaluate.test_dataset={data / 'bounding_box_test'}", "--results-dir", str(tmp_path)], capsys)
    assert code == 2 and "no query can be scored" in err and "evaluate.query_dataset" in err
    assert len(err.strip().splitlines()) == 1
    spec = apply_config(load_yaml(plugin.spec_template("train")),
                        {**plugin.data_keys(data), "dataset.query_dataset_dir": str(data / "bounding_box_train")})
    with pytest.raises(AutomlError, match="no query can be scored.*dataset.query_dataset_dir"):
        ReidDataModule(spec)
