"""The re-identification LightningModule: BNNeck network, ID + triplet (+ center) loss, Market-1501
evaluation after each validation epoch."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch

from automl.errors import AutomlError
from automl.training.schedule import warmup_multistep
from trainers.reid.metrics import retrieval_metrics, summary
from trainers.reid.model import ReidLoss, build_net, flip_embed, load_pretrained


class ReidModule(pl.LightningModule):
    def __init__(self, spec: Mapping[str, Any], num_classes: int, num_query: int, pids: list[int] | None = None):
        super().__init__()
        # The plain spec goes into checkpoint["automl"] (on_save_checkpoint), never into hparams: the
        # checkpoint must stay loadable with torch.load(weights_only=True).
        self.spec = copy.deepcopy(dict(spec))
        self.num_classes, self.num_query, self.pids = int(num_classes), int(num_query), list(pids or [])
        self.net = build_net(spec, num_classes)
        self.missing_pretrained = load_pretrained(self.net, spec)
        self.criterion = ReidLoss(spec, num_classes, self.net.feat_dim)
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.with_flip = bool(spec.get("model", {}).get("with_flip_feature", False))
        self.center_optimizer: torch.optim.Optimizer | None = None

    def _autocast(self):
        # Mixed precision only where a GPU exists (bf16 needs no loss scaling); CPU runs stay fp32.
        if self.device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        return contextlib.nullcontext()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def training_step(self, batch, batch_idx):
        images, labels, _, _ = batch
        with self._autocast():
            logits, feat = self.net.forward_train(images)
        parts = self.criterion(logits, feat, labels)
        acc = (logits.argmax(1) == labels).float().mean()
        self.log_dict({"train_loss": parts["loss"], "train_acc": acc, **{f"train_{k}": v for k, v in parts.items() if k != "loss"}},
                      on_step=False, on_epoch=True, batch_size=len(labels))
        return parts["loss"]

    def on_before_optimizer_step(self, optimizer) -> None:
        # Center loss centres: their own SGD at train.optim.center_lr, gradient freed of the loss weight.
        if self.center_optimizer is not None and self.criterion.center is not None:
            centers = self.criterion.center.centers
            if centers.grad is not None:
                centers.grad.mul_(1.0 / max(self.criterion.center_weight, 1e-12))
                self.center_optimizer.step()
                self.center_optimizer.zero_grad(set_to_none=True)

    def validation_step(self, batch, batch_idx):
        images, _, pids, camids = batch
        with self._autocast():
            feat = flip_embed(self.net, images, self.with_flip)
        self._val_outputs.append((feat.float().cpu(), pids.cpu(), camids.cpu()))

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs:
            return
        feats = torch.cat([o[0] for o in self._val_outputs])
        pids = torch.cat([o[1] for o in self._val_outputs]).numpy()
        cams = torch.cat([o[2] for o in self._val_outputs]).numpy()
        self._val_outputs.clear()
        n = self.num_query
        result, _ = retrieval_metrics(feats[:n], feats[n:], pids[:n], pids[n:], cams[:n], cams[n:], self.spec)
        # Every DDP rank embeds the whole query/gallery set, so the values agree without a reduction.
        self.log_dict({k: float(v) for k, v in summary(result).items()}, prog_bar=True)

    def configure_optimizers(self):
        optim = self.spec.get("train", {}).get("optim", {})
        base_lr = float(optim.get("base_lr", 3.5e-4))
        decay, decay_bias = float(optim.get("weight_decay", 5e-4)), float(optim.get("weight_decay_bias", 5e-4))
        bias_lr = base_lr * float(optim.get("bias_lr_factor", 1.0))
        weights, biases = [], []
        for name, param in self.net.named_parameters():
            if param.requires_grad:
                (biases if name.endswith("bias") else weights).append(param)
        groups = [{"params": weights, "lr": base_lr, "weight_decay": decay},
                  {"params": biases, "lr": bias_lr, "weight_decay": decay_bias}]
        name = str(optim.get("name", "Adam"))
        if name == "Adam":
            optimizer = torch.optim.Adam(groups, lr=base_lr)
        elif name == "AdamW":
            optimizer = torch.optim.AdamW(groups, lr=base_lr)
        elif name == "SGD":
            optimizer = torch.optim.SGD(groups, lr=base_lr, momentum=float(optim.get("momentum", 0.9)))
        else:
            raise AutomlError(f"train.optim.name '{name}' is not supported; allowed: Adam, AdamW, SGD")
        if self.criterion.center is not None:
            self.center_optimizer = torch.optim.SGD(self.criterion.center.parameters(), lr=float(optim.get("center_lr", 0.5)))
        steps_per_epoch = max(1, int(self.trainer.estimated_stepping_batches // max(1, self.trainer.max_epochs)))
        scheduler = warmup_multistep(optimizer, steps_per_epoch, optim.get("lr_steps", [40, 70]),
                                     float(optim.get("gamma", 0.1)), float(optim.get("warmup_factor", 0.01)),
                                     int(optim.get("warmup_iters", 10)), str(optim.get("warmup_method", "linear")))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["automl"] = {"model": "reid", "spec": self.spec, "num_classes": self.num_classes,
                                "pids": self.pids}
