"""mae through the CLI on a generated folder (``automl data make --task mae``): ``--data`` follows
``train.stage`` (finetune trains on the labelled split), inference predictions survive the CLI's
summary, and a labelled validation split too small for the k-NN accuracy is refused before training."""

from __future__ import annotations

import json

import pytest

from automl.cli.actions import load_spec
from automl.errors import AutomlError
from automl.spec import apply_config, dump_yaml, load_yaml
from trainers.mae import plugin
from trainers.mae.data import MaeDataModule
from _cli_helpers import run_cli, run_cli_steps

TINY = {"model.arch": "test_vit", "model.timm_kwargs": {"patch_size": 8}, "model.decoder_embed_dim": 64,
        "model.decoder_depth": 1, "dataset.batch_size": 8, "dataset.num_workers_per_gpu": 0,
        "train.checkpoint_interval": 0, "train.num_epochs": 1, "dataset.augmentation.auto_aug": "",
        "dataset.augmentation.mixup": 0.0, "dataset.augmentation.cutmix": 0.0}


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """``automl data make`` then ``automl train --data DIR train.stage=finetune`` (tiny, tracking off)."""
    root = tmp_path_factory.mktemp("mae_outputs")
    patch = pytest.MonkeyPatch()
    patch.setenv("AUTOML_TRACKING", "off")
    dump_yaml(apply_config(load_yaml(plugin.spec_template("train")), TINY), root / "tiny.yaml")
    run_cli_steps(["data", "make", "--task", "mae", "--out", str(root / "data"), "--classes", "3", "--per-class", "8",
                   "--size", "32"],
                  ["train", "--model", "mae", "-e", str(root / "tiny.yaml"), "--data", str(root / "data"),
                   "train.stage=finetune", "--results-dir", str(root / "train")])
    yield root
    patch.undo()


def test_data_follows_the_stage(finetuned):
    data = finetuned / "data"
    spec, _ = load_spec(plugin, "train", None, ["train.stage=finetune"], data)
    assert spec["dataset"]["train_data_sources"] == str(data / "labeled_train") and spec["model"]["num_classes"] == 3
    spec, _ = load_spec(plugin, "train", None, [], data)  # pretrain: the unlabelled pool
    assert spec["dataset"]["train_data_sources"] == str(data / "images_train")
    result = json.loads((finetuned / "train" / "train.json").read_text())
    assert result["stage"] == "finetune" and result["train_images"] == 3 * 8


def test_inference_predictions_survive_the_summary(finetuned, capsys, tmp_path):
    ckpt = finetuned / "train" / "checkpoints" / "best.ckpt"
    test_images = finetuned / "data" / "images_test"
    code, out, err = run_cli(["inference", "--model", "mae", f"inference.checkpoint={ckpt}",
                              f"dataset.test_data_sources={test_images}", "--results-dir", str(tmp_path), "--json"],
                             capsys)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert json.loads((tmp_path / "inference.json").read_text()) == summary
    predictions = json.loads((tmp_path / "inference_results.json").read_text())
    assert summary["output_file"] == str(tmp_path / "inference_results.json")
    assert len(predictions["results"]) == summary["images"] == len(list(test_images.iterdir()))
    assert all(row["class"] in predictions["classes"] for row in predictions["results"])


def test_knn_split_under_two_images_is_refused_before_training(finetuned, tmp_path):
    one = tmp_path / "val" / "circle"
    one.mkdir(parents=True)
    source = next((finetuned / "data" / "images_val").glob("*/*.png"))
    (one / source.name).write_bytes(source.read_bytes())
    spec = apply_config(load_yaml(plugin.spec_template("train")),
                        {**plugin.data_keys(finetuned / "data"), **TINY, "dataset.val_data_sources": str(tmp_path / "val")})
    with pytest.raises(AutomlError, match="dataset.val_data_sources: 1 labelled image.*at least 2"):
        MaeDataModule(spec)


def test_search_and_automl_off_data_follow_the_stage_too(finetuned, tmp_path):
    from automl.search.controller import _base_spec, plain_training_spec

    data = finetuned / "data"
    spec, _, _ = plain_training_spec(model="mae", spec_file=None, overrides=["train.stage=finetune"], output=tmp_path,
                                     name="off", data=str(data))
    assert spec["dataset"]["train_data_sources"] == str(data / "labeled_train")
    _, _, with_data = _base_spec("mae", plugin, None, {"train.stage": "finetune"}, {}, str(data), tmp_path)
    base, _ = with_data()
    assert base["dataset"]["train_data_sources"] == str(data / "labeled_train") and base["model"]["num_classes"] == 3
