"""ml_recog on generated data in TAO's layout (``automl data make``): evaluate with one folder as both
query and reference does not count self matches (checked against pytorch-metric-learning), and TAO's
export template (no ``export.checkpoint``) exports the train run found from ``results_dir``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainers.ml_recog import config, plugin
from trainers.ml_recog.model import load_network

from _ml_recog_helpers import TAO_REFERENCES
from _cli_helpers import run_cli, run_cli_steps


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A generated dataset and a 1-epoch train run (tiny), both through the CLI (MLflow tracking off:
    not what these tests check, and it triples the run time)."""
    root = tmp_path_factory.mktemp("ml_recog_outputs")
    patch = pytest.MonkeyPatch()
    patch.setenv("AUTOML_TRACKING", "off")
    run_cli_steps(["data", "make", "--task", "ml_recog", "--out", str(root / "data"), "--classes", "6", "--per-class", "4",
                   "--size", "24"],
                  ["train", "--model", "ml_recog", "--data", str(root / "data"), "train.num_epochs=1", "train.batch_size=8",
                   "--results-dir", str(root / "train")])
    yield root
    patch.undo()


def test_same_folder_as_query_and_reference_excludes_self_matches(trained, capsys):
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    from automl.data.folders import ClassFolderDataset
    from trainers.ml_recog.data import eval_transform

    folder = trained / "data" / "unknown_classes" / "reference"
    ckpt = trained / "train" / "checkpoints" / "best.ckpt"
    code, out, err = run_cli(["evaluate", "--model", "ml_recog", f"evaluate.checkpoint={ckpt}",
                              f"dataset.val_dataset.reference={folder}", f"dataset.val_dataset.query={folder}",
                              "evaluate.report_accuracy_per_class=false", "evaluate.topk=1", "--results-dir", str(trained / "e"), "--json"],
                             capsys)
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["num_self_matches_excluded"] == result["num_query"] == result["num_reference"]
    # independent: pml's own self-match handling on the same embeddings
    net, meta = load_network(ckpt, "evaluate.checkpoint")
    spec = plugin._eval_spec(config.resolve({}, "evaluate"), "evaluate", meta)
    data = ClassFolderDataset(folder, eval_transform(spec), key="reference")
    emb, labels = plugin._embed(net, data, spec, 64)
    calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision", "r_precision", "mean_reciprocal_rank"),
                              k=None, knn_func=CustomKNN(LpDistance(normalize_embeddings=True)))
    expected = calc.get_accuracy(emb.double(), labels)
    got = result["metrics"]
    assert got["Precision at Rank 1"] == pytest.approx(expected["precision_at_1"], abs=1e-6)
    assert got["Mean Average Precision"] == pytest.approx(expected["mean_average_precision"], abs=1e-6)
    assert got["r-Precision"] == pytest.approx(expected["r_precision"], abs=1e-6)
    assert got["Mean Reciprocal Rank"] == pytest.approx(expected["mean_reciprocal_rank"], abs=1e-6)
    assert result["top1_accuracy"] == got["Precision at Rank 1"]
    assert got["Precision at Rank 1"] < 1.0  # counting self matches made it 1.0 whatever the model


def test_tao_export_template_finds_the_train_runs_checkpoint(trained, capsys):
    template = TAO_REFERENCES / "spec_template_export.yaml"
    if not template.is_file():
        pytest.skip(f"TAO reference specs not found at {TAO_REFERENCES} (../shared is absent)")
    code, out, err = run_cli(["export", "--model", "ml_recog", "-e", str(template), f"results_dir={trained / 'train'}",
                              "--json"], capsys)
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["checkpoint"] == str(trained / "train" / "checkpoints" / "best.ckpt")
    assert Path(result["onnx_file"]).is_file() and result["parity"]["max_abs_diff"] <= 1e-4
    # no train run there: one line naming the key and where it looked
    code, _, err = run_cli(["export", "--model", "ml_recog", "-e", str(template), f"results_dir={trained / 'nothing'}"],
                           capsys)
    assert code == 2 and "export.checkpoint is not set and no train run's checkpoint was found" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_training_validation_knows_the_shared_files(trained):
    from automl.spec import apply_config
    from trainers.ml_recog.data import MLRecogDataModule

    data = trained / "data"
    folder = data / "known_classes" / "reference"
    spec = apply_config(config.resolve({}, "train"), {**plugin.data_keys(data), "dataset.val_dataset.query": str(folder)})
    datamodule = MLRecogDataModule(spec)
    datamodule.setup("fit")
    # every query is a reference file: each one pairs with itself, in loader order
    assert datamodule.self_matches.tolist() == [[i, i] for i in range(len(datamodule.query_set))]
    distinct = MLRecogDataModule(apply_config(config.resolve({}, "train"), plugin.data_keys(data)))
    distinct.setup("fit")
    assert len(distinct.self_matches) == 0
