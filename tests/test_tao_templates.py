"""TAO's own spec templates (../shared/tao-models/*/references/spec_template_*.yaml), unchanged but for
dataset and checkpoint paths and, in the default run, compute-shrinking overrides (a tiny backbone,
small images, one epoch), run every action of the three trainers. Each action names, in one warning,
exactly the keys that have no effect in this project (TAO's deployment and tracking plumbing, and the
TransReID knobs reid's CNN has no use for); values that would change the model in TAO but cannot
here are refused with the reason; training from random weights is said once."""

from __future__ import annotations

import json

import logging
from pathlib import Path

import pytest

from automl.errors import AutomlError
from automl.plugins import get_trainer
from automl.space import load_schema, validate_spec
from automl.spec import apply_config, load_yaml

TAO_MODELS = Path(__file__).resolve().parents[1].parent / "shared" / "tao-models"
FOLDERS = {"ml_recog": "tao-train-metric-learning-recognition", "reid": "tao-train-reid",
           "mae": "tao-train-mask-auto-encoder"}
pytestmark = pytest.mark.skipif(not TAO_MODELS.is_dir(), reason=f"TAO reference specs not found at {TAO_MODELS} "
                                                                  "(../shared is absent)")

#: keys with no effect here, by model, in every TAO template of that model
NO_EFFECT = {
    "ml_recog": {"encryption_key", "model_name", "wandb"},
    "reid": {"encryption_key", "model_name", "wandb", "model.pretrain_hw_ratio", "model.drop_out",
             "model.att_drop_rate", "model.stride_size", "model.shift_num", "model.shuffle_group",
             "model.devide_length", "model.re_arrange", "model.sie_coe", "model.semantic_weight",
             "train.optim.warmup_epochs", "train.optim.cosine_margin", "train.optim.cosine_scale",
             "train.optim.lr_monitor"},
    "mae": {"encryption_key", "model_name", "wandb", "train.optim.monitor_name"},
}
#: and those of one action's section
NO_EFFECT_IN_ACTION = {
    ("ml_recog", "evaluate"): {"evaluate.trt_engine", "evaluate.num_nodes"},
    ("ml_recog", "inference"): {"inference.trt_engine", "inference.num_nodes"},
    ("ml_recog", "export"): {"export.gpu_id", "export.on_cpu", "export.verbose"},
    ("reid", "evaluate"): {"evaluate.trt_engine", "evaluate.num_nodes"},
    ("reid", "inference"): {"inference.trt_engine", "inference.num_nodes"},
    ("reid", "export"): {"export.gpu_id"},
    ("mae", "evaluate"): {"evaluate.trt_engine", "evaluate.num_nodes"},
    ("mae", "inference"): {"inference.trt_engine", "inference.num_nodes"},
    ("mae", "export"): {"export.gpu_id", "export.on_cpu", "export.verbose"},
}
ACTIONS = ("train", "evaluate", "inference", "export")


def tao(model: str, action: str) -> dict:
    return load_yaml(TAO_MODELS / FOLDERS[model] / "references" / f"spec_template_{action}.yaml")


def run(model: str, action: str, spec: dict, out: Path, caplog) -> tuple[dict, set[str], list[str]]:
    """The action's result, the keys its one "no effect" warning names, and every warning."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=f"automl.trainers.{model}"):
        result = get_trainer(model).run_action(action, spec, out)
    messages = [r.getMessage() for r in caplog.records]
    named = [m for m in messages if "have no effect here" in m]
    assert len(named) <= 1, named
    return result, set(named[0].rsplit(": ", 1)[1].split(", ")) if named else set(), messages


def expect_no_effect(model: str, action: str, named: set[str]) -> None:
    assert named == NO_EFFECT[model] | NO_EFFECT_IN_ACTION.get((model, action), set())


def random_start_notes(messages: list[str]) -> list[str]:
    return [m for m in messages if "training starts from random weights" in m]


@pytest.mark.parametrize("model,action", [(m, a) for m in FOLDERS for a in ACTIONS])
def test_tao_templates_validate_against_our_schema(model, action):
    schema = load_schema(get_trainer(model).schema_path())
    assert validate_spec(tao(model, action), schema, source=action) == []


# -- ml_recog ---------------------------------------------------------------------------------------
ML_RECOG_CPU = {"model.backbone": "test_convnext", "model.input_width": 32, "model.input_height": 32,
                "train.num_epochs": 1, "train.val_batch_size": 64, "dataset.workers": 0}


def test_ml_recog_templates_run(tmp_path, caplog):
    plugin = get_trainer("ml_recog")
    keys = plugin.make_dataset(tmp_path / "data", seed=0, classes=6, per_class=4, size=32)
    train, named, messages = run("ml_recog", "train", apply_config(tao("ml_recog", "train"), {**keys, **ML_RECOG_CPU}),
                                 tmp_path / "train", caplog)
    expect_no_effect("ml_recog", "train", named)
    assert len(random_start_notes(messages)) == 1 and "model.pretrained_model_path" in random_start_notes(messages)[0]
    # TAO's batch_size 4 with num_instance 4: one class per batch, said (a search refuses it)
    assert any("one class per batch" in m for m in messages)
    ckpt = train["best_checkpoint"]
    data = tmp_path / "data"
    evaluation = plugin.evaluation_keys(data)
    val = {k: v for k, v in evaluation.items() if k.startswith("dataset.")}
    evaluated, named, _ = run("ml_recog", "evaluate", apply_config(tao("ml_recog", "evaluate"),
                              {**val, "evaluate.checkpoint": ckpt, "evaluate.batch_size": 64, "dataset.workers": 0}), tmp_path / "evaluate", caplog)
    expect_no_effect("ml_recog", "evaluate", named)
    assert 0.0 <= evaluated["metrics"]["Precision at Rank 1"] <= 1.0
    inferred, named, _ = run("ml_recog", "inference", apply_config(tao("ml_recog", "inference"), {
        **val, "inference.checkpoint": ckpt, "inference.input_path": evaluation["inference.input_path"],
        "inference.batch_size": 64, "dataset.workers": 0}), tmp_path / "inference", caplog)
    expect_no_effect("ml_recog", "inference", named)
    assert inferred["num_images"] > 0 and Path(inferred["results_file"]).is_file()
    # TAO's export template has no checkpoint: the train run is found from results_dir (TAO's layout)
    exported, named, _ = run("ml_recog", "export", apply_config(tao("ml_recog", "export"), {"results_dir": str(tmp_path)}),
                             tmp_path / "export", caplog)
    expect_no_effect("ml_recog", "export", named)
    assert Path(exported["checkpoint"]).resolve() == Path(ckpt).resolve()
    assert exported["input_shape"] == [3, 32, 32] and exported["parity"]["max_abs_diff"] <= 1e-4


# -- reid -------------------------------------------------------------------------------------------
REID_CPU = {"model.backbone": "test_resnet.r160_in1k", "model.input_height": 64, "model.input_width": 32,
            "dataset.batch_size": 16, "dataset.num_workers": 0, "train.num_epochs": 1}


def _reid_actions(keys: dict, tmp_path: Path, extra: dict, caplog) -> dict:
    paths = {k: v for k, v in keys.items() if k.endswith("_dataset_dir")}  # not num_classes: TAO's 751 stays
    out = {}
    out["train"], named, messages = run("reid", "train", apply_config(tao("reid", "train"), {**paths, **extra}),
                                        tmp_path / "train", caplog)
    expect_no_effect("reid", "train", named)
    out["messages"] = messages
    ckpt = out["train"]["best_checkpoint"]
    q, g = keys["dataset.query_dataset_dir"], keys["dataset.test_dataset_dir"]
    for action, over in (("evaluate", {"evaluate.checkpoint": ckpt, "evaluate.query_dataset": q, "evaluate.test_dataset": g}),
                         ("inference", {"inference.checkpoint": ckpt, "inference.query_dataset": q,
                                        "inference.test_dataset": g}),
                         ("export", {"results_dir": str(tmp_path)})):  # TAO's empty export.checkpoint: found
        out[action], named, _ = run("reid", action, apply_config(tao("reid", action), over), tmp_path / action, caplog)
        expect_no_effect("reid", action, named)
    return out


def test_reid_templates_run(tmp_path, caplog):
    keys = get_trainer("reid").make_dataset(tmp_path / "data", seed=0, classes=8, per_class=6, size=64, cameras=3)
    out = _reid_actions(keys, tmp_path, REID_CPU, caplog)
    assert out["train"]["epochs_run"] == 1
    # TAO's num_classes 751 (Market-1501) is corrected to the data's 8 identities, and said
    assert out["train"]["num_classes"] == 8
    assert any("dataset.num_classes is 751" in m and "using 8" in m for m in out["messages"])
    notes = random_start_notes(out["messages"])
    assert len(notes) == 1 and "model.pretrained_model_path" in notes[0]
    assert Path(out["evaluate"]["cmc_curve_plot"]).is_file()
    # the predictions survive beside the CLI's summary (inference.json), one entry per query
    predictions = Path(out["inference"]["output_file"])
    assert predictions.name != "inference.json" and len(json.loads(predictions.read_text())["results"]) == out["inference"]["num_query"]
    assert out["export"]["parity"]["max_abs_diff"] <= 1e-4


@pytest.mark.parametrize("key", ["model.jpm", "model.sie_camera", "model.cos_layer", "train.optim.large_fc_lr"])
def test_reid_transreid_switches_are_refused_with_the_reason(key, tmp_path):
    spec = apply_config(tao("reid", "train"), {key: True})
    with pytest.raises(AutomlError, match=rf"^{key}=True is not supported by the reid trainer \(a TAO TransReID "
                                          r"option.*\); allowed: False$"):
        get_trainer("reid").run_action("train", spec, tmp_path)


@pytest.mark.slow
@pytest.mark.heavy
def test_reid_templates_run_with_tao_values(tmp_path, caplog):
    """resnet_50 at 256x128, batch 64 (16 x 4), TAO's 10 epochs: minutes on a CPU."""
    keys = get_trainer("reid").make_dataset(tmp_path / "data", seed=0, classes=16, per_class=8, size=128, cameras=4)
    out = _reid_actions(keys, tmp_path, {}, caplog)
    assert out["train"]["epochs_run"] == 10
    assert out["export"]["input_shape"] == [3, 256, 128]


# -- mae --------------------------------------------------------------------------------------------
MAE_CPU = {"model.arch": "test_vit", "model.timm_kwargs": {"patch_size": 8}, "model.decoder_embed_dim": 64,
           "dataset.augmentation.input_size": 32, "dataset.num_workers_per_gpu": 0, "train.num_epochs": 1}


@pytest.fixture(scope="module")
def mae_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mae_tao")
    get_trainer("mae").make_dataset(out, seed=0, classes=2, per_class=4, unlabeled_per_class=4, val_per_class=3,
                                    test_per_class=1, size=32)
    return out


def _mae_paths(data: Path) -> dict:
    return {"dataset.train_data_sources": str(data / "images_train"), "dataset.val_data_sources": str(data / "images_val")}


def _mae_actions(data: Path, tmp_path: Path, extra: dict, caplog) -> dict:
    """Pretrain, finetune from it (the keys TAO's skill page carries forward), evaluate, inference, export."""
    out = {}
    out["pretrain"], named, messages = run("mae", "train", apply_config(tao("mae", "train"), {**_mae_paths(data), **extra}),
                                           tmp_path / "pretrain", caplog)
    expect_no_effect("mae", "train", named)
    out["pretrain_notes"] = random_start_notes(messages)
    finetune = {**_mae_paths(data), "dataset.train_data_sources": str(data / "labeled_train"), "train.stage": "finetune",
                "model.num_classes": 2, "train.pretrained_model_path": out["pretrain"]["best_checkpoint"],
                "dataset.batch_size": 2}
    out["finetune"], named, messages = run("mae", "train", apply_config(tao("mae", "train"), {**finetune, **extra}),
                                           tmp_path / "finetune", caplog)
    expect_no_effect("mae", "train", named)
    assert random_start_notes(messages) == []
    carried = {k: v for k, v in extra.items() if k.startswith("model.") or k == "dataset.augmentation.input_size"}
    ckpt = out["finetune"]["best_checkpoint"]
    for action, over in (("evaluate", {**_mae_paths(data), "evaluate.checkpoint": ckpt, **carried}),
                         ("inference", {"dataset.test_data_sources": str(data / "images_test"),
                                        "inference.checkpoint": ckpt}),
                         ("export", {"export.checkpoint": ckpt})):
        out[action], named, _ = run("mae", action, apply_config(tao("mae", action), over), tmp_path / action, caplog)
        expect_no_effect("mae", action, named)
    return out


def test_mae_templates_run(mae_data, tmp_path, caplog):
    out = _mae_actions(mae_data, tmp_path, MAE_CPU, caplog)
    assert len(out["pretrain_notes"]) == 1 and "train.pretrained_model_path" in out["pretrain_notes"][0]
    assert out["finetune"]["pretrained"]["loaded"] > 0
    assert out["evaluate"]["stage"] == "finetune" and out["inference"]["images"] == 2
    predictions = Path(out["inference"]["output_file"])
    assert predictions.name != "inference.json" and len(json.loads(predictions.read_text())["results"]) == 2
    # TAO's export template says 960x544; the model was trained at 32x32 and is exported at that size
    assert out["export"]["input_shape"] == [3, 32, 32] and out["export"]["notes"]


def test_mae_pretraining_honours_pretrained_model_path(mae_data, tmp_path):
    plugin = get_trainer("mae")
    first = plugin.train(apply_config(tao("mae", "train"), {**_mae_paths(mae_data), **MAE_CPU}), tmp_path / "first")
    assert "pretrained" not in first
    again = plugin.train(apply_config(tao("mae", "train"), {
        **_mae_paths(mae_data), **MAE_CPU, "train.pretrained_model_path": first["best_checkpoint"]}), tmp_path / "again")
    assert again["stage"] == "pretrain" and again["pretrained"]["loaded"] > 0
    with pytest.raises(AutomlError, match="train.pretrained_model_path"):
        plugin.train(apply_config(tao("mae", "train"), {**_mae_paths(mae_data), **MAE_CPU,
                                                        "train.pretrained_model_path": str(tmp_path / "missing.pth")}),
                     tmp_path / "missing")


def test_mae_convnext_input_with_too_few_patches_is_refused(mae_data, tmp_path):
    """ConvNeXt masks 32 px cells: at 32 px there is one, nothing is masked and both losses are exactly 0."""
    spec = apply_config(tao("mae", "train"), {**_mae_paths(mae_data), "model.arch": "convnextv2_atto",
                                              "dataset.augmentation.input_size": 32, "dataset.num_workers_per_gpu": 0})
    with pytest.raises(AutomlError, match=r"^dataset.augmentation.input_size 32 leaves 1 patch of 32 px for model.arch "
                                          r"'convnextv2_atto'; MAE masks patches and needs at least 4: use input_size >= 64$"):
        get_trainer("mae").train(spec, tmp_path)


@pytest.mark.parametrize("key,value", [("export.format", "tensorrt"), ("train.accum_grad_batches", 4),
                                       ("train.distributed_strategy", "fsdp")])
def test_mae_values_it_cannot_honour_are_refused(key, value, tmp_path):
    action = key.split(".")[0] if key.startswith("export") else "train"
    with pytest.raises(AutomlError, match=rf"^{key}='?{value}'? is not supported by the mae trainer .*; allowed: "):
        get_trainer("mae").run_action(action, apply_config(tao("mae", action), {key: value}), tmp_path)


@pytest.mark.slow
@pytest.mark.heavy
def test_mae_templates_run_with_tao_values(mae_data, tmp_path, caplog):
    """convnextv2_base at 224 px, batch 1, TAO's 10 epochs: minutes on a CPU."""
    out = _mae_actions(mae_data, tmp_path, {}, caplog)
    assert out["pretrain"]["epochs_run"] == 10
    assert out["export"]["input_shape"] == [3, 224, 224]
