"""Shared fixtures' building blocks for the ml_recog tests."""

from __future__ import annotations

from pathlib import Path

from automl.spec import apply_config
from trainers.ml_recog import config, plugin

# Small enough for the 2-core CI machine, big enough that 3 epochs learn something.
DATA_OPTIONS = {"classes": 36, "per_class": 48, "size": 32}
TAO_REFERENCES = Path(__file__).resolve().parents[1].parent / "shared" / "tao-models" / \
    "tao-train-metric-learning-recognition" / "references"


def make_data(root: Path, seed: int = 0) -> Path:
    plugin.make_dataset(root, seed=seed, **DATA_OPTIONS)
    return root


def train_spec(data: Path, **overrides) -> dict:
    spec = config.template("train")
    return apply_config(spec, {**plugin.data_keys(data), **overrides})


def eval_spec(data: Path, checkpoint: str) -> dict:
    keys = plugin.evaluation_keys(data)
    return apply_config(config.template("evaluate"), {"evaluate.checkpoint": checkpoint,
                                                      "dataset.val_dataset.reference": keys["dataset.val_dataset.reference"],
                                                      "dataset.val_dataset.query": keys["dataset.val_dataset.query"]})
