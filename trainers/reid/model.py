"""The re-identification network (timm backbone + BNNeck), its weights and its losses.

BNNeck (Luo et al., "Bag of Tricks and a Strong Baseline for Deep Person Re-ID"): the triplet loss
sees the pooled feature, the ID classifier sees it after a BatchNorm whose bias is frozen, and
retrieval uses the feature after (``model.neck_feat: after``) or before that BatchNorm.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import timm
import torch
from pytorch_metric_learning import distances, losses, miners
from torch import nn

from automl.errors import AutomlError
from automl.spec_keys import TAO_PLUMBING, Refusal, SpecKeys
from automl.training.backbones import COMPACT_BACKBONES  # importing it registers them with timm
from automl.training.checkpoints import load_automl_checkpoint, load_matching_weights, load_state_dict, strip_prefix

# TAO's backbone names -> timm's. Anything else is passed to timm as is (e.g. compact_cnn_m, the CPU
# default, or test_resnet.r160_in1k).
TAO_BACKBONES = {
    "resnet_18": "resnet18", "resnet_34": "resnet34", "resnet_50": "resnet50", "resnet_101": "resnet101",
    "resnet_152": "resnet152",
}


# TAO's TransReID switches: accepted at their default (false) so TAO specs run, refused when turned on;
# TransReID's other knobs have no effect on a CNN backbone and are named in one warning.
_TRANSREID = "a TAO TransReID option; this trainer builds a CNN with BNNeck"
SPEC_KEYS = SpecKeys(
    "reid",
    ignored=(*TAO_PLUMBING, "model.pretrain_hw_ratio", "model.drop_out", "model.att_drop_rate", "model.stride_size",
             "model.shift_num", "model.shuffle_group", "model.devide_length", "model.re_arrange", "model.sie_coe",
             "model.semantic_weight", "train.optim.warmup_epochs", "train.optim.cosine_margin",
             "train.optim.cosine_scale", "train.optim.lr_monitor"),
    refused=(*(Refusal(key, (False,), _TRANSREID) for key in (
                 "model.cos_layer", "model.gem_pooling", "model.stem_conv", "model.jpm", "model.sie_camera",
                 "model.sie_view", "train.optim.large_fc_lr")),
             Refusal("model.input_channels", (3,), "it reads RGB images")),
    pretrained=("model.pretrained_model_path",),
)


def check_supported(spec: Mapping[str, Any]) -> None:
    SPEC_KEYS.refuse(spec)


def timm_name(backbone: str) -> str:
    name = TAO_BACKBONES.get(backbone, backbone)
    if not timm.is_model(name):
        raise AutomlError(
            f"model.backbone '{backbone}' is not a timm model; use one of {', '.join(TAO_BACKBONES)}, "
            f"{', '.join(COMPACT_BACKBONES)} (small, for 64x32 inputs on a CPU) or any name from timm.list_models()"
        )
    return name


def _set_last_stride(model: nn.Module, stride: int) -> None:
    """ResNet's last stage downsamples by 2; re-ID keeps stride 1 for a finer feature map."""
    layer4 = getattr(model, "layer4", None)
    if layer4 is None or stride == 2:
        return  # not a ResNet (e.g. the compact CNNs): the option has no meaning (TAO ignores it there too)
    block = layer4[0]
    for conv in (getattr(block, "conv2", None), getattr(block, "conv1", None)):
        if conv is not None and conv.stride != (1, 1):
            conv.stride = (stride, stride)
    if block.downsample is not None:
        for mod in block.downsample.modules():
            if isinstance(mod, nn.Conv2d) and mod.stride != (1, 1):
                mod.stride = (stride, stride)
            if isinstance(mod, nn.AvgPool2d) and mod.stride != 1:
                mod.stride, mod.kernel_size = stride, stride


class ReidNet(nn.Module):
    """Backbone -> pooled feature (optionally reduced to ``feat_dim``) -> BNNeck -> ID classifier."""

    def __init__(self, backbone: str, num_classes: int, *, last_stride: int = 1, feat_dim: int = 256,
                 reduce_feat_dim: bool = False, neck: str = "bnneck", neck_feat: str = "after",
                 dropout: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        kwargs: dict[str, Any] = {"pretrained": False, "num_classes": 0, "global_pool": "avg"}
        if drop_path > 0:
            kwargs["drop_path_rate"] = drop_path
        try:
            self.backbone = timm.create_model(timm_name(backbone), **kwargs)
        except TypeError:  # a few timm families take no drop_path_rate
            kwargs.pop("drop_path_rate", None)
            self.backbone = timm.create_model(timm_name(backbone), **kwargs)
        _set_last_stride(self.backbone, int(last_stride))
        in_dim = self.backbone.num_features
        self.reduce = nn.Linear(in_dim, feat_dim) if reduce_feat_dim else nn.Identity()
        self.feat_dim = feat_dim if reduce_feat_dim else in_dim
        if neck not in ("bnneck", "no"):
            raise AutomlError(f"model.neck '{neck}' is not supported; allowed: bnneck, no")
        if neck_feat not in ("after", "before"):
            raise AutomlError(f"model.neck_feat '{neck_feat}' is not supported; allowed: after, before")
        self.neck, self.neck_feat = neck, neck_feat
        self.bottleneck = nn.BatchNorm1d(self.feat_dim)
        self.bottleneck.bias.requires_grad_(False)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.feat_dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ID logits, feature for the metric loss)."""
        feat = self.reduce(self.backbone(x))
        neck = self.bottleneck(feat) if self.neck == "bnneck" else feat
        return self.classifier(self.dropout(neck)), feat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The retrieval embedding (what ONNX export and evaluation use)."""
        feat = self.reduce(self.backbone(x))
        if self.neck == "bnneck" and self.neck_feat == "after":
            return self.bottleneck(feat)
        return feat


class CenterLoss(nn.Module):
    """Center loss (Wen et al. 2016): pulls each feature to its identity's centre.

    pytorch-metric-learning has no center loss (its CentroidTripletLoss is a different objective), so
    this is ours. The centres are parameters trained by their own SGD at ``train.optim.center_lr``,
    with the loss weight divided out of their gradient, as in the Bag-of-Tricks baseline.
    """

    def __init__(self, num_classes: int, feat_dim: int):
        super().__init__()
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))

    def forward(self, feat: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return ((feat - self.centers[labels]) ** 2).sum(dim=1).clamp(1e-12, 1e12).mean()


class ReidLoss(nn.Module):
    """ID loss (cross-entropy, optional label smoothing) + batch-hard triplet (+ optional center)."""

    def __init__(self, spec: Mapping[str, Any], num_classes: int, feat_dim: int):
        super().__init__()
        model, optim = spec.get("model", {}), spec.get("train", {}).get("optim", {})
        id_type = model.get("id_loss_type", "softmax")
        if id_type != "softmax":
            raise AutomlError(f"model.id_loss_type '{id_type}' is not supported; allowed: softmax")
        metric_type = model.get("metric_loss_type", "triplet")
        if metric_type != "triplet":
            raise AutomlError(f"model.metric_loss_type '{metric_type}' is not supported; allowed: triplet")
        self.id_loss = nn.CrossEntropyLoss(label_smoothing=0.1 if model.get("label_smooth", True) else 0.0)
        # trp_l2: compare L2-normalised features; no_margin: soft-margin triplet (log(1 + e^x))
        distance = distances.LpDistance(normalize_embeddings=bool(optim.get("trp_l2", False)))
        self.triplet = losses.TripletMarginLoss(
            margin=float(optim.get("triplet_loss_margin", 0.3)), distance=distance,
            smooth_loss=bool(model.get("no_margin", False)),
        )
        self.miner = miners.BatchHardMiner(distance=distance)
        self.id_weight = float(model.get("id_loss_weight", 1.0))
        self.triplet_weight = float(model.get("triplet_loss_weight", 1.0))
        self.center_weight = float(optim.get("center_loss_weight", 0.0005))
        self.center = CenterLoss(num_classes, feat_dim) if model.get("with_center_loss", False) else None

    def forward(self, logits: torch.Tensor, feat: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        feat32 = feat.float()
        parts = {"id_loss": self.id_loss(logits.float(), labels)}
        parts["triplet_loss"] = self.triplet(feat32, labels, self.miner(feat32, labels))
        total = self.id_weight * parts["id_loss"] + self.triplet_weight * parts["triplet_loss"]
        if self.center is not None:
            parts["center_loss"] = self.center(feat32, labels)
            total = total + self.center_weight * parts["center_loss"]
        parts["loss"] = total
        return parts


def build_net(spec: Mapping[str, Any], num_classes: int) -> ReidNet:
    check_supported(spec)
    model = spec.get("model", {})
    return ReidNet(
        model.get("backbone", "resnet_50"), num_classes,
        last_stride=int(model.get("last_stride", 1)), feat_dim=int(model.get("feat_dim", 256)),
        reduce_feat_dim=bool(model.get("reduce_feat_dim", False)), neck=model.get("neck", "bnneck"),
        neck_feat=model.get("neck_feat", "after"), dropout=float(model.get("dropout_rate", 0.0) or 0.0),
        drop_path=float(model.get("drop_path", 0.0) or 0.0),
    )


def load_pretrained(net: ReidNet, spec: Mapping[str, Any]) -> list[str]:
    """``model.pretrained_model_path``: a local backbone state dict (``imagenet``) or a whole re-ID
    checkpoint (``self``; the classifier is skipped when the identity count differs). Never downloads."""
    model = spec.get("model", {})
    path = str(model.get("pretrained_model_path") or "").strip()
    if not path:
        return []
    state = {k.removeprefix("net."): v for k, v in load_state_dict(path, key="model.pretrained_model_path").items()}
    target: nn.Module = net
    if model.get("pretrain_choice", "imagenet") != "self":
        target = net.backbone
        state = {k.removeprefix("backbone."): v for k, v in state.items()}
    return load_matching_weights(target, state, "model.pretrained_model_path", path,
                                 f"backbone '{model.get('backbone')}'")


def flip_embed(net: torch.nn.Module, images: torch.Tensor, with_flip: bool) -> torch.Tensor:
    feat = net(images)
    if with_flip:  # model.with_flip_feature: average with the mirrored image's embedding
        feat = (feat + net(torch.flip(images, dims=[3]))) / 2
    return feat


def load_trained(path: str, key: str) -> tuple[ReidNet, dict[str, Any]]:
    """The retrieval network of a checkpoint written by the reid train action, and its train spec."""
    meta, state = load_automl_checkpoint(path, key, "reid")
    net = build_net(meta["spec"], int(meta["num_classes"]))
    net.load_state_dict(strip_prefix(state, "net."))
    return net.eval(), dict(meta["spec"])
