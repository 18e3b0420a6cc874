"""The ml_recog network (timm trunk + linear embedder): building it, pretrained weights, trained checkpoints."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from automl.training.checkpoints import load_automl_checkpoint, load_matching_weights, load_state_dict, strip_prefix
from trainers.ml_recog.config import model_config, timm_name


class EmbeddingNet(nn.Module):
    """``trunk`` (a timm backbone, pooled features) followed by ``embedder`` (a linear map to
    ``feat_dim``). The output is the raw embedding; distances L2-normalise it (pytorch-metric-learning's
    ``LpDistance`` default), so exported models keep TAO's output."""

    def __init__(self, backbone: str, feat_dim: int, input_size: tuple[int, int], in_chans: int = 3):
        super().__init__()
        import timm

        kwargs: dict[str, Any] = {"pretrained": False, "num_classes": 0, "in_chans": in_chans}
        name = timm_name(backbone)
        if "vit" in name:  # ViTs fix their grid at creation: build them at the trained input size
            kwargs.update(img_size=input_size, dynamic_img_size=False)
        self.trunk = timm.create_model(name, **kwargs)
        # Linear + BatchNorm (the "BNNeck" of the reid strong baseline TAO's reid/ml_recog derive from):
        # without the BN, triplet training from random initialisation collapses every embedding onto one
        # point within a few steps (loss stuck at the margin), which we observed with every timm test_*
        # backbone; the BN keeps each embedding dimension spread across the batch.
        self.embedder = nn.Sequential(nn.Linear(self.trunk.num_features, feat_dim), nn.BatchNorm1d(feat_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedder(self.trunk(x))


def build_network(spec: Mapping[str, Any]) -> EmbeddingNet:
    cfg = model_config(spec)
    return EmbeddingNet(cfg["backbone"], cfg["feat_dim"], (cfg["input_height"], cfg["input_width"]), cfg["input_channels"])


def load_pretrained(net: EmbeddingNet, spec: Mapping[str, Any]) -> list[str]:
    """Apply ``model.pretrained_model_path`` (whole network, or a bare trunk state dict) and
    ``model.pretrained_trunk_path`` / ``model.pretrained_embedder_path``; local files only."""
    model = spec.get("model") or {}
    notes = []
    for key, target in (("pretrained_model_path", None), ("pretrained_trunk_path", net.trunk),
                        ("pretrained_embedder_path", net.embedder)):
        path = str(model.get(key) or "").strip()
        if not path:
            continue
        state = load_state_dict(path, key=f"model.{key}")
        state = {k.removeprefix("model.").removeprefix("net."): v for k, v in state.items()}
        module: nn.Module = net if target is None else target
        if target is None and not any(k.startswith(("trunk.", "embedder.")) for k in state):
            module = net.trunk  # a plain timm checkpoint of the backbone
        if target is not None:
            prefix = "trunk." if target is net.trunk else "embedder."
            state = {k.removeprefix(prefix): v for k, v in state.items()}
        untouched = load_matching_weights(module, state, f"model.{key}", path, f"backbone '{model.get('backbone')}'")
        total = len(module.state_dict())
        notes.append(f"model.{key}: loaded {total - len(untouched)}/{total} tensors from {path}")
    return notes


def load_network(checkpoint: str | Path, key: str) -> tuple[EmbeddingNet, dict[str, Any]]:
    """The trained network and its stored ``automl`` metadata (model config, preprocessing)."""
    meta, state = load_automl_checkpoint(checkpoint, key, "ml_recog")
    net = build_network({"model": meta["model"]})
    net.load_state_dict(strip_prefix(state, "net."))
    return net.eval(), meta
