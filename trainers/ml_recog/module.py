"""The ml_recog LightningModule: triplet loss over P x K batches, TAO's optimiser groups, retrieval
metrics after each validation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch

from automl.errors import AutomlError
from automl.training.schedule import warmup_multistep
from trainers.ml_recog.config import MONITOR, model_config
from trainers.ml_recog.metrics import retrieval_metrics
from trainers.ml_recog.model import EmbeddingNet, build_network, load_pretrained

OPTIMIZERS = {"Adam": torch.optim.Adam, "SGD": torch.optim.SGD, "Adamax": torch.optim.Adamax}


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
        # resuming restores the trained weights; pretrained ones would only be overwritten
        resuming = str(train.get("resume_training_checkpoint_path") or "").strip()
        self.pretrained_notes = [] if resuming else load_pretrained(self.net, spec)

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
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        metrics = retrieval_metrics(torch.cat(query[0]), torch.cat(query[1]), torch.cat(ref[0]), torch.cat(ref[1]),
                                    per_class=self.per_class, self_matches=getattr(datamodule, "self_matches", None))
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
