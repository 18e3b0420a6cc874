"""The ml_recog network (timm trunk + linear embedder) and its LightningModule."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from automl.errors import AutomlError
from automl.training.checkpoints import load_state_dict
from automl.training.schedule import warmup_multistep
from trainers.ml_recog.config import MONITOR, model_config, timm_name
from trainers.ml_recog.metrics import retrieval_metrics

OPTIMIZERS = {"Adam": torch.optim.Adam, "SGD": torch.optim.SGD, "Adamax": torch.optim.Adamax}


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
        own = module.state_dict()
        usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if not usable:
            raise AutomlError(f"model.{key}: {path} has no weights matching backbone '{model.get('backbone')}'")
        module.load_state_dict(usable, strict=False)
        notes.append(f"model.{key}: loaded {len(usable)}/{len(own)} tensors from {path}")
    return notes


def param_groups(net: EmbeddingNet, optim: Mapping[str, Any], train_trunk: bool, train_embedder: bool) -> list[dict]:
    """TAO's groups: per part (trunk, embedder), biases get ``base_lr * bias_lr_factor`` and
    ``weight_decay_bias``; SGD momentum per part."""
    groups = []
    for part, module, enabled in (("trunk", net.trunk, train_trunk), ("embedder", net.embedder, train_embedder)):
        cfg = optim.get(part) or {}
        weights, biases = [], []
        for name, p in module.named_parameters():
            if not enabled:
                p.requires_grad_(False)
                continue
            (biases if name.endswith("bias") else weights).append(p)
        lr, wd = float(cfg.get("base_lr", 3.5e-4)), float(cfg.get("weight_decay", 5e-4))
        bias_lr, bias_wd = lr * float(cfg.get("bias_lr_factor", 1.0)), float(cfg.get("weight_decay_bias", wd))
        extra = {"momentum": float(cfg.get("momentum", 0.9))} if optim.get("name", "Adam") == "SGD" else {}
        if weights:
            groups.append({"params": weights, "lr": lr, "weight_decay": wd, "name": f"{part}", **extra})
        if biases:
            groups.append({"params": biases, "lr": bias_lr, "weight_decay": bias_wd, "name": f"{part}_bias", **extra})
    if not groups:
        raise AutomlError("train.train_trunk and train.train_embedder are both false: nothing to train")
    return groups


class MLRecogModule(pl.LightningModule):
    """Triplet-margin loss with TAO's miner over P x K batches; validation embeds the reference and
    query sets (dataloaders 0 and 1) and reports retrieval metrics."""

    def __init__(self, spec: Mapping[str, Any]):
        super().__init__()
        from pytorch_metric_learning import losses, miners

        self.spec = dict(spec)
        self.net = build_network(spec)
        train = spec["train"]
        optim = train["optim"]
        self.loss_fn = losses.TripletMarginLoss(margin=float(optim["triplet_loss_margin"]),
                                                smooth_loss=bool(train.get("smooth_loss", True)))
        # TAO ml_recog mines with MultiSimilarityMiner(epsilon=miner_function_margin): its schema text
        # ("negative pairs are chosen if they have similarity greater than the hardest positive pair,
        # minus this margin...") is exactly that miner's epsilon. Keeping it keeps TAO specs meaning
        # what they meant.
        self.miner = miners.MultiSimilarityMiner(epsilon=float(optim["miner_function_margin"]))
        self.per_class = bool(train.get("report_accuracy_per_class", True))
        self._val: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        self.last_metrics: dict[str, float] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        embeddings = self.net(images)
        loss = self.loss_fn(embeddings, labels, self.miner(embeddings, labels))
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(labels))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val = {0: ([], []), 1: ([], [])}

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        images, labels = batch
        embeddings, label_list = self._val[dataloader_idx]
        embeddings.append(self.net(images).float().cpu())
        label_list.append(labels.cpu())

    def on_validation_epoch_end(self) -> None:
        ref, query = self._val[0], self._val[1]
        if not ref[0] or not query[0]:
            return
        metrics = retrieval_metrics(torch.cat(query[0]), torch.cat(query[1]), torch.cat(ref[0]), torch.cat(ref[1]),
                                    per_class=self.per_class)
        self.last_metrics = metrics
        for key, value in metrics.items():
            # Every rank embeds the full sets (see automl.training.runner): values agree, no sync needed.
            self.log(key, float(value), prog_bar=key == MONITOR)
        self._val = {}

    def configure_optimizers(self):
        train = self.spec["train"]
        optim = train["optim"]
        name = optim.get("name", "Adam")
        groups = param_groups(self.net, optim, bool(train.get("train_trunk", True)), bool(train.get("train_embedder", True)))
        optimizer = OPTIMIZERS[name](groups)
        steps_per_epoch = max(1, len(self.trainer.datamodule.train_sampler)) if self.trainer.datamodule else 1
        scheduler = warmup_multistep(optimizer, steps_per_epoch, optim.get("steps") or [], float(optim.get("gamma", 0.1)),
                                     float(optim.get("warmup_factor", 0.01)), int(optim.get("warmup_iters", 0)),
                                     str(optim.get("warmup_method", "linear")))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Plain dicts only: the checkpoint must stay loadable with torch.load(weights_only=True).
        from automl.spec import _plain

        checkpoint["automl"] = {"trainer": "ml_recog", "model": model_config(self.spec), "spec": _plain(self.spec),
                                "dataset": {"pixel_mean": list(self.spec["dataset"]["pixel_mean"]),
                                            "pixel_std": list(self.spec["dataset"]["pixel_std"])}}


def load_network(checkpoint: str | Path, key: str) -> tuple[EmbeddingNet, dict[str, Any]]:
    """The trained network and its stored ``automl`` metadata (model config, preprocessing)."""
    from automl.training.checkpoints import load_checkpoint

    data = load_checkpoint(checkpoint, key=key)
    meta = data.get("automl")
    if not isinstance(meta, Mapping) or "model" not in meta:
        raise AutomlError(f"{key}: {checkpoint} is not an ml_recog checkpoint written by automl")
    cfg = meta["model"]
    net = EmbeddingNet(cfg["backbone"], int(cfg["feat_dim"]), (int(cfg["input_height"]), int(cfg["input_width"])),
                       int(cfg.get("input_channels", 3)))
    state = {k.removeprefix("net."): v for k, v in data["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(state)
    return net.eval(), dict(meta)
