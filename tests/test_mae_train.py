"""The mae trainer end to end on generated data: pretrain and finetune learn, checkpoints load
weights-only, inference refuses pretrain checkpoints, export keeps the trained input size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from automl.errors import AutomlError
from automl.reporting import read_metrics
from automl.spec import apply_config, load_yaml
from trainers.mae import plugin
from trainers.mae.module import FinetuneModule, PretrainModule

TINY = {
    "model.arch": "test_vit", "model.timm_kwargs": {"patch_size": 8}, "model.decoder_embed_dim": 64,
    "model.decoder_depth": 1, "model.drop_path_rate": 0.0, "dataset.batch_size": 16, "dataset.num_workers_per_gpu": 0,
    "train.checkpoint_interval": 0, "train.optim.lr": 2e-3, "train.optim.warmup_epochs": 1, "train.seed": 3,
    "dataset.augmentation.auto_aug": "", "dataset.augmentation.mixup": 0.0, "dataset.augmentation.cutmix": 0.0,
    "train.optim.layer_decay": 1.0, "train.optim.backbone_multiplier": 1.0,
}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mae_shapes")
    plugin.make_dataset(out, seed=0, classes=4, per_class=12, unlabeled_per_class=24, val_per_class=8, size=32)
    return out


def spec_for(data: Path, **extra) -> dict:
    return apply_config(load_yaml(plugin.spec_template("train")), {**plugin.data_keys(data), **TINY, **extra})


@pytest.fixture(scope="module")
def pretrained(shapes, tmp_path_factory) -> dict:
    return plugin.train(spec_for(shapes, **{"train.num_epochs": 3}), tmp_path_factory.mktemp("mae_pretrain"))


def _untrained_checkpoint(module, path: Path) -> str:
    torch.save({"state_dict": module.state_dict(), "automl": module.meta()}, path)
    return str(path)


def _evaluate(checkpoint: str, val: str, out: Path) -> dict:
    spec = apply_config(load_yaml(plugin.spec_template("evaluate")),
                        {"evaluate.checkpoint": checkpoint, "dataset.val_data_sources": val})
    return plugin.evaluate(spec, out)


def test_generated_data_layout(shapes):
    info = json.loads((shapes / "dataset.json").read_text())
    assert len(list((shapes / "images_train").glob("*.png"))) == 96  # unlabelled, flat
    assert sorted(p.name for p in (shapes / "labeled_train").iterdir()) == ["circle", "cross", "square", "triangle"]
    assert info["finetune_keys"]["model.num_classes"] == 4
    assert plugin.data_keys(shapes)["dataset.augmentation.input_size"] == 32


def test_pretrain_reconstructs_better_than_untrained(pretrained, shapes, tmp_path):
    records = read_metrics(Path(pretrained["best_checkpoint"]).parent.parent)
    assert len(records) == 3 and all({"val_recon_loss", "knn_accuracy", "val_accuracy"} <= set(r["metrics"]) for r in records)
    assert pretrained["monitor"] == "val_accuracy" and pretrained["stage"] == "pretrain"
    torch.manual_seed(3)
    untrained = PretrainModule(spec_for(shapes), ["circle", "cross", "square", "triangle"])
    before = _evaluate(_untrained_checkpoint(untrained, tmp_path / "u.ckpt"), str(shapes / "images_val"), tmp_path)
    after = _evaluate(pretrained["last_checkpoint"], str(shapes / "images_val"), tmp_path)
    assert after["stage"] == "pretrain" and 0.0 <= after["knn_accuracy"] <= 1.0
    assert after["val_recon_loss"] < 0.9 * before["val_recon_loss"], (before, after)
    for name in ("best.ckpt", "last.ckpt"):
        ckpt = torch.load(Path(pretrained["best_checkpoint"]).parent / name, weights_only=True)
        assert ckpt["automl"]["stage"] == "pretrain"


def test_inference_refuses_a_pretrain_checkpoint(pretrained, shapes, tmp_path):
    spec = apply_config(load_yaml(plugin.spec_template("inference")), {
        "inference.checkpoint": pretrained["best_checkpoint"], "dataset.test_data_sources": str(shapes / "images_test")})
    with pytest.raises(AutomlError, match="pretrain checkpoint.*Finetune it first"):
        plugin.inference(spec, tmp_path)


def test_export_uses_the_trained_input_size(pretrained, tmp_path):
    tao_export = load_yaml(plugin.spec_template("export"))
    spec = apply_config(tao_export, {"export.checkpoint": pretrained["best_checkpoint"], "export.input_width": 960,
                                     "export.input_height": 544, "export.onnx_file": str(tmp_path / "enc.onnx")})
    out = plugin.export(spec, tmp_path)
    assert out["input_shape"] == [3, 32, 32] and out["output"] == "features"
    assert "544x960 ignored" in out["notes"][0]
    assert out["parity"]["max_abs_diff"] <= 1e-4


def test_finetune_from_pretrain_checkpoint_then_inference_and_export(pretrained, shapes, tmp_path):
    spec = spec_for(shapes, **{**plugin.finetune_keys(shapes), "train.num_epochs": 1,
                               "train.pretrained_model_path": pretrained["best_checkpoint"],
                               "dataset.augmentation.mixup": 0.8, "dataset.augmentation.cutmix": 1.0})
    result = plugin.train(spec, tmp_path / "ft")
    assert result["stage"] == "finetune" and result["pretrained"]["loaded"] > 0
    assert "head.weight" in result["pretrained"]["missing"]
    ckpt = result["best_checkpoint"]
    inf = apply_config(load_yaml(plugin.spec_template("inference")), {
        "inference.checkpoint": ckpt, "dataset.test_data_sources": str(shapes / "images_test")})
    out = plugin.inference(inf, tmp_path / "inf")
    rows = json.loads(Path(out["output_file"]).read_text())["results"]
    assert len(rows) == 8 and all(r["class"] in {"circle", "cross", "square", "triangle"} for r in rows)
    exp = apply_config(load_yaml(plugin.spec_template("export")), {"export.checkpoint": ckpt})
    exported = plugin.export(exp, tmp_path / "exp")
    assert exported["output"] == "logits" and exported["parity"]["output_shape"] == [2, 4]


def test_num_classes_mismatch_is_one_clear_error(shapes, tmp_path):
    spec = spec_for(shapes, **{**plugin.finetune_keys(shapes), "model.num_classes": 1000})
    with pytest.raises(AutomlError, match=r"model.num_classes is 1000 but .* has 4 class folders; set model.num_classes=4"):
        plugin.train(spec, tmp_path)


def test_odd_batch_with_mixup_is_refused(shapes, tmp_path):
    spec = spec_for(shapes, **{**plugin.finetune_keys(shapes), "dataset.batch_size": 15, "dataset.augmentation.mixup": 0.8})
    with pytest.raises(AutomlError, match="must be even"):
        plugin.train(spec, tmp_path)


class _SearchReporter:
    def report(self, epoch, metrics, checkpoint=None):
        pass

    def should_stop(self):
        return False


def test_pretrain_search_without_labelled_val_is_refused(shapes, tmp_path):
    spec = spec_for(shapes, **{"dataset.val_data_sources": str(shapes / "images_test")})  # flat, unlabelled
    with pytest.raises(AutomlError, match="labelled validation set"):
        plugin.train(spec, tmp_path, reporter=_SearchReporter())


@pytest.fixture(scope="module")
def fashion(tmp_path_factory) -> Path:
    from automl.data.fashion_mnist import find_fashion_mnist

    try:
        find_fashion_mnist()
    except AutomlError as exc:
        pytest.skip(f"Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): {exc}")
    out = tmp_path_factory.mktemp("mae_fmnist")
    plugin.make_dataset(out, seed=0, classes=4, per_class=40, unlabeled_per_class=0, val_per_class=20,
                        size=32, source="fashion_mnist")
    return out


def test_finetune_beats_an_untrained_classifier(fashion, tmp_path):
    spec = spec_for(fashion, **{**plugin.finetune_keys(fashion), "train.num_epochs": 8, "model.timm_kwargs": {"patch_size": 4},
                                "train.optim.lr": 1e-3, "dataset.augmentation.min_scale": 0.5})
    result = plugin.train(spec, tmp_path / "ft")
    torch.manual_seed(3)
    untrained = FinetuneModule(spec, 4, sorted(p.name for p in (fashion / "labeled_train").iterdir()))
    before = _evaluate(_untrained_checkpoint(untrained, tmp_path / "u.ckpt"), str(fashion / "images_val"), tmp_path)
    after = _evaluate(result["best_checkpoint"], str(fashion / "images_val"), tmp_path)
    assert after["val_accuracy"] == pytest.approx(result["best_value"])
    assert after["val_accuracy"] >= before["val_accuracy"] + 0.15, (before, after)


# The defaults, measured with `benchmarks/default_learning.py --model mae --seeds 3` (pretrain: the
# template; finetune: experiments/mae_finetune_cpu_demo.yaml's values, from scratch) on
# `automl data make --task mae`'s defaults (benchmarks/RESULTS.md, "Default configs learn"):
# pretrain, last-epoch val_recon_loss 0.576 / 0.574 / 0.574 (seeds 1234-1236; std 0.001) vs 1.298 untrained
# (ratio 0.44); its k-NN val_accuracy 0.140 / 0.143 / 0.150 (mean 0.144, std 0.005) vs 0.157 untrained: not
# above it. Finetune best val top-1 0.460 / 0.467 / 0.487: mean 0.471, std 0.014, min 0.460, vs 0.120 for
# the untrained classifier (chance 0.10). The thresholds sit far outside that spread on both sides.
PRETRAIN_MAX_RECON_RATIO = 0.6
FINETUNE_MIN_ACCURACY = 0.30


@pytest.fixture(scope="module")
def default_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mae_default_data")
    plugin.make_dataset(out, seed=0)
    return out


@pytest.mark.slow
def test_the_default_pretrain_config_learns_to_reconstruct(default_data, tmp_path):
    """The template as shipped (ViT-Tiny, 4 px patches, 6 blocks, 10 epochs), two seeds: the masked
    reconstruction loss falls far below the untrained network's. Its k-NN accuracy is reported but not
    asserted: at this budget it stays at the untrained encoder's level (see the measured figures above)."""
    spec = apply_config(load_yaml(plugin.spec_template("train")), plugin.data_keys(default_data))
    classes = sorted(p.name for p in (default_data / "images_val").iterdir())
    val = str(default_data / "images_val")
    for seed in (1234, 1235):
        result = plugin.train(apply_config(spec, {"train.seed": seed}), tmp_path / f"seed{seed}")
        assert result["monitor"] == "val_accuracy" and 0.0 <= result["best_value"] <= 1.0
        torch.manual_seed(seed)
        before = _evaluate(_untrained_checkpoint(PretrainModule(spec, classes), tmp_path / f"u{seed}.ckpt"), val, tmp_path)
        after = result["history"][-1]["val_recon_loss"]
        assert after <= PRETRAIN_MAX_RECON_RATIO * before["val_recon_loss"], (seed, before, result["history"][-1])


@pytest.mark.slow
def test_the_finetune_demo_config_learns(default_data, tmp_path):
    """experiments/mae_finetune_cpu_demo.yaml (the template's values, train.stage finetune, 20 epochs) on
    the default labelled set, from scratch, two seeds: top-1 far above chance (0.10) and the untrained
    classifier."""
    demo = load_yaml(Path(__file__).resolve().parents[1] / "experiments" / "mae_finetune_cpu_demo.yaml")
    spec = apply_config(demo, {**plugin.data_keys(default_data), **plugin.finetune_keys(default_data),
                               "dataset.test_data_sources": str(default_data / "images_test")})
    classes = sorted(p.name for p in (default_data / "labeled_train").iterdir())
    for seed in (1234, 1235):
        result = plugin.train(apply_config(spec, {"train.seed": seed}), tmp_path / f"seed{seed}")
        assert result["stage"] == "finetune" and result["pretrained"] is None
        torch.manual_seed(seed)
        untrained = FinetuneModule(spec, len(classes), classes)
        before = _evaluate(_untrained_checkpoint(untrained, tmp_path / f"u{seed}.ckpt"), str(default_data / "images_val"), tmp_path)
        assert result["best_value"] >= max(FINETUNE_MIN_ACCURACY, before["val_accuracy"] + 0.15), (seed, before, result)


DDP_SCRIPT = """
import json, os, sys
from pathlib import Path
from automl.spec import apply_config, load_yaml
from trainers.mae import plugin
spec = apply_config(load_yaml(plugin.spec_template("train")), json.loads(sys.argv[1]))
result = plugin.train(spec, Path(sys.argv[2]))
if os.environ.get("LOCAL_RANK", "0") == "0":
    print("RESULT " + json.dumps({k: v for k, v in result.items() if k != "history"}))
"""


@pytest.mark.slow
def test_two_process_ddp_on_cpu(shapes, tmp_path):
    """Lightning DDP over gloo with 2 CPU processes: each rank reads its DistributedSampler shard."""
    import os
    import subprocess
    import sys

    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    config = {**plugin.data_keys(shapes), **TINY, "train.num_epochs": 2}
    env = {**os.environ, "AUTOML_CPU_PROCESSES": "2"}
    proc = subprocess.run([sys.executable, str(script), json.dumps(config), str(tmp_path / "run")], env=env,
                          capture_output=True, text=True, timeout=900, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "MEMBER: 2/2" in proc.stderr + proc.stdout
    result = json.loads(proc.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert result["epochs_run"] == 2 and result["monitor"] == "val_accuracy"
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [0, 1]
