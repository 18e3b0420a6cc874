"""``train.seed`` fixes a run: two CPU runs with one seed give identical metrics and weights, for every
trainer, whatever the global random state was before (the initial weights are seeded too)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from automl.plugins import get_trainer
from automl.spec import apply_config, load_yaml

# Tiny data and one short epoch per trainer: the point is reproducibility, not learning.
CASES = {
    "ml_recog": ({"classes": 8, "per_class": 8, "size": 32},
                 {"train.batch_size": 16, "dataset.workers": 0, "model.feat_dim": 32}),
    "reid": ({"classes": 8, "per_class": 4, "size": 32, "cameras": 2},
             {"model.backbone": "test_resnet.r160_in1k", "model.input_height": 32, "model.input_width": 16,
              "dataset.batch_size": 16, "dataset.num_instances": 4, "dataset.num_workers": 0, "dataset.padding": 2}),
    "mae": ({"classes": 2, "per_class": 4, "unlabeled_per_class": 8, "val_per_class": 4, "size": 32},
            {"model.arch": "test_vit", "model.timm_kwargs": {"patch_size": 8}, "model.decoder_embed_dim": 32,
             "dataset.batch_size": 8, "dataset.num_workers_per_gpu": 0}),
}


def _run(model: str, data_keys: dict, overrides: dict, out: Path, global_seed: int) -> tuple[list, dict]:
    plugin = get_trainer(model)
    spec = apply_config(load_yaml(plugin.spec_template("train")), {
        **data_keys, **overrides, "train.num_epochs": 1, "train.checkpoint_interval": 0, "train.seed": 11})
    torch.manual_seed(global_seed)  # a different global state before each run: train.seed must win over it
    result = plugin.train(spec, out)
    state = torch.load(result["last_checkpoint"], weights_only=True)["state_dict"]
    return result["history"], state


@pytest.mark.parametrize("model", list(CASES))
def test_one_seed_gives_identical_runs(model, tmp_path):
    data_options, overrides = CASES[model]
    data_keys = get_trainer(model).make_dataset(tmp_path / "data", seed=0, **data_options)
    history_a, state_a = _run(model, data_keys, overrides, tmp_path / "a", global_seed=1)
    history_b, state_b = _run(model, data_keys, overrides, tmp_path / "b", global_seed=2)
    assert history_a and history_a == history_b
    assert state_a.keys() == state_b.keys()
    different = [k for k in state_a if not torch.equal(state_a[k], state_b[k])]
    assert not different, f"{model}: {len(different)} tensors differ, e.g. {different[0]}"
