"""LightningModules of the two MAE stages."""

from __future__ import annotations

import contextlib
import copy
import math
from bisect import bisect_right
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.optim import param_groups_layer_decay, param_groups_weight_decay

from automl.errors import AutomlError
from trainers.mae.data import require_knn_split
from trainers.mae.model import build_mae, create_encoder, load_encoder_weights

KNN_K = 20
KNN_TEMPERATURE = 0.07


def lr_factor(epoch: float, spec: Mapping[str, Any]) -> float:
    """Linear warmup, then cosine to 0 at ``train.num_epochs`` or MultiStep at ``milestones``.

    A function of the (fractional) epoch and the spec only, never of the ``max_epochs`` a search rung
    stops at. torch has no warmup+cosine scheduler and timm's schedulers are stepped outside
    Lightning's optimizer loop, so a LambdaLR over this function is the simplest exact form.
    """
    train = spec.get("train", {})
    optim = train.get("optim", {})
    total = max(1, int(train.get("num_epochs", 10)))
    warmup = float(optim.get("warmup_epochs", 0) or 0)
    if warmup and epoch < warmup:
        return (epoch + 1e-3) / warmup
    if optim.get("lr_scheduler", "cosine") == "MultiStep":
        return float(optim.get("gamma", 0.1)) ** bisect_right(sorted(optim.get("milestones", [])), int(epoch))
    progress = min(1.0, (epoch - warmup) / max(1e-8, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def knn_accuracy(features: torch.Tensor, labels: torch.Tensor, k: int = KNN_K) -> float:
    """Leave-one-out weighted k-NN (cosine similarity, exp(sim / 0.07) votes; Wu et al. 2018, as in
    DINO's evaluation) top-1 accuracy. The data check refuses splits this cannot score
    (:func:`trainers.mae.data.require_knn_split`)."""
    n = features.shape[0]
    require_knn_split(n, "k-NN validation set")
    feats = F.normalize(features.float(), dim=1)
    sim = feats @ feats.T
    sim.fill_diagonal_(-float("inf"))
    k = min(k, n - 1)
    top_sim, top_idx = sim.topk(k, dim=1)
    num_classes = int(labels.max()) + 1
    votes = torch.zeros(n, num_classes)
    votes.scatter_add_(1, labels[top_idx], (top_sim / KNN_TEMPERATURE).exp())
    return float((votes.argmax(1) == labels).float().mean())


class _MaeBase(pl.LightningModule):
    stage: str

    def __init__(self, spec: Mapping[str, Any]):
        super().__init__()
        # the spec goes into checkpoint["automl"], not hparams: checkpoints must load weights-only
        self.spec = copy.deepcopy(dict(spec))
        self.train_cfg = self.spec.get("train", {})
        self.optim_cfg = self.train_cfg.get("optim", {})

    def _autocast(self):
        """train.precision fp16/bf16 as autocast on a GPU (the CPU stays fp32)."""
        precision = str(self.train_cfg.get("precision", "fp32"))
        if self.device.type != "cuda" or precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if precision == "fp16" else torch.bfloat16
        return torch.autocast("cuda", dtype=dtype)

    def param_groups(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def configure_optimizers(self):
        opt_type = self.optim_cfg.get("type", "AdamW")
        if opt_type != "AdamW":
            raise AutomlError(f"train.optim.type '{opt_type}' is not supported; allowed: AdamW")
        lr = float(self.optim_cfg.get("lr", 2e-4))
        groups = self.param_groups()
        for group in groups:
            group["lr"] = lr * group.pop("lr_scale", 1.0)
        optimizer = torch.optim.AdamW(groups, lr=lr, betas=(float(self.optim_cfg.get("momentum", 0.9)), 0.999))
        per_epoch = max(1, int(self.trainer.estimated_stepping_batches // max(1, self.trainer.max_epochs)))
        spec = self.spec
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step / per_epoch, spec))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def meta(self) -> dict[str, Any]:
        return {"model": "mae", "stage": self.stage, "spec": self.spec}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["automl"] = self.meta()


class PretrainModule(_MaeBase):
    """Masked reconstruction; validation reports ``val_recon_loss`` and, with a labelled validation
    set, ``knn_accuracy`` (also reported as ``val_accuracy``, the search monitor)."""

    stage = "pretrain"

    def __init__(self, spec: Mapping[str, Any], class_names: list[str] | None = None):
        super().__init__(spec)
        self.mae = build_mae(self.spec)
        # continued pretraining starts from these encoder weights (our pretrain or finetune checkpoint,
        # or a timm state dict); a missing file is an error, never a silent fresh start
        path = str(self.train_cfg.get("pretrained_model_path") or "").strip()
        self.pretrained = load_encoder_weights(self.mae.encoder, path) if path else None
        self.mask_ratio = float(self.train_cfg.get("mask_ratio", 0.75))
        if not 0.0 < self.mask_ratio < 1.0:
            raise AutomlError(f"train.mask_ratio must be in (0, 1), got {self.mask_ratio}")
        self.class_names = list(class_names or [])
        self._val: list[tuple[float, int, torch.Tensor | None, torch.Tensor]] = []

    def param_groups(self):
        return param_groups_weight_decay(self.mae, float(self.optim_cfg.get("weight_decay", 0.05)),
                                         no_weight_decay_list=set(self.mae.encoder.no_weight_decay())
                                         if hasattr(self.mae.encoder, "no_weight_decay") else ())

    def training_step(self, batch, batch_idx):
        images, _ = batch
        with self._autocast():
            loss, _, _ = self.mae(images, self.mask_ratio)
        self.log("train_loss", loss.float(), on_step=False, on_epoch=True, batch_size=len(images))
        return loss

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        # the same masks every epoch, so val_recon_loss moves only with the model
        generator = torch.Generator().manual_seed(10_000 + batch_idx)
        with self._autocast():
            loss, _, _ = self.mae(images, self.mask_ratio, generator=generator)
            feats = self.mae.features(images) if self.class_names else None
        self._val.append((float(loss) * len(images), len(images), None if feats is None else feats.float().cpu(),
                          labels.cpu()))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        total = sum(o[0] for o in self._val)
        count = sum(o[1] for o in self._val)
        metrics = {"val_recon_loss": total / max(1, count)}
        if self.class_names:
            feats = torch.cat([o[2] for o in self._val])
            labels = torch.cat([o[3] for o in self._val])
            metrics["knn_accuracy"] = knn_accuracy(feats, labels)
            metrics["val_accuracy"] = metrics["knn_accuracy"]
        self._val.clear()
        self.log_dict(metrics, prog_bar=True)

    def meta(self):
        return {**super().meta(), "class_names": self.class_names}


class FinetuneModule(_MaeBase):
    """Classification from a pretrained encoder: label smoothing, mixup/cutmix (timm), layer-wise lr decay."""

    stage = "finetune"

    def __init__(self, spec: Mapping[str, Any], num_classes: int, class_names: list[str]):
        super().__init__(spec)
        self.num_classes, self.class_names = int(num_classes), list(class_names)
        self.model = create_encoder(self.spec, num_classes=self.num_classes)
        path = str(self.train_cfg.get("pretrained_model_path") or "").strip()
        self.pretrained = load_encoder_weights(self.model, path) if path else None
        for prefix in self.train_cfg.get("freeze") or []:
            for name, param in self.model.named_parameters():
                if name.startswith(str(prefix)):
                    param.requires_grad_(False)
        aug = self.spec.get("dataset", {}).get("augmentation", {})
        smoothing = float(aug.get("smoothing", 0.1) or 0.0)
        mixup, cutmix = float(aug.get("mixup", 0.0) or 0.0), float(aug.get("cutmix", 0.0) or 0.0)
        prob = float(aug.get("mixup_prob", 1.0) or 0.0)
        self.mixup = None
        if (mixup > 0 or cutmix > 0) and prob > 0:
            if int(self.spec.get("dataset", {}).get("batch_size", 2)) % 2:
                raise AutomlError("dataset.batch_size must be even when mixup/cutmix is on (timm Mixup pairs images)")
            self.mixup = Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, cutmix_minmax=aug.get("cutmix_minmax"), prob=prob,
                               switch_prob=float(aug.get("mixup_switch_prob", 0.5)), mode=aug.get("mixup_mode", "batch"),
                               label_smoothing=smoothing, num_classes=self.num_classes)
            self.criterion = SoftTargetCrossEntropy()
        else:
            self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []

    def param_groups(self):
        decay = float(self.optim_cfg.get("weight_decay", 0.05))
        layer_decay = float(self.optim_cfg.get("layer_decay", 0.75) or 1.0)
        multiplier = float(self.optim_cfg.get("backbone_multiplier", 1.0) or 1.0)
        no_decay = set(self.model.no_weight_decay()) if hasattr(self.model, "no_weight_decay") else set()
        groups = param_groups_layer_decay(self.model, decay, no_weight_decay_list=no_decay, layer_decay=layer_decay)
        head = {id(p) for n, p in self.model.named_parameters() if n.startswith("head")}
        for group in groups:
            if not any(id(p) in head for p in group["params"]):
                group["lr_scale"] = group.get("lr_scale", 1.0) * multiplier
        return [g for g in groups if any(p.requires_grad for p in g["params"])]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        targets = labels
        if self.mixup is not None:
            images, targets = self.mixup(images, labels)
        with self._autocast():
            logits = self.model(images)
        loss = self.criterion(logits.float(), targets)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(images))
        return loss

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        with self._autocast():
            logits = self.model(images)
        self._val.append((logits.float().cpu(), labels.cpu()))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        logits = torch.cat([o[0] for o in self._val])
        labels = torch.cat([o[1] for o in self._val])
        self._val.clear()
        top1 = float((logits.argmax(1) == labels).float().mean())
        self.log_dict({"val_accuracy": top1, "val_top1": top1, "val_loss": float(F.cross_entropy(logits, labels))},
                      prog_bar=True)

    def meta(self):
        return {**super().meta(), "num_classes": self.num_classes, "class_names": self.class_names}
