"""Compact convolutional backbones for 32-64 px inputs, registered in timm's model registry.

Why our own: timm's small models either are unit-test nets (``test_*``: measured on the glyph task they
stay at chance) or are built for 224 px ImageNet inputs (a ResNet stem downsamples 32 px to 8 px before
the first block and ``resnet10t``/``mobilenetv3_small_050`` at 32 px do no better than the test nets).
A plain conv-BN-ReLU stack that downsamples once per stage keeps the spatial detail a 32 px glyph or
a 64x32 pedestrian needs, and trains from random weights in seconds on a CPU.

Registered with :func:`timm.models.register_model`, so ``timm.create_model("compact_cnn_m",
num_classes=0)`` builds one like any timm network (``num_features``, ``forward_features``,
``forward_head``, ``reset_classifier``), and every trainer reaches it through its usual backbone key.
Import this module before ``timm.create_model`` (the trainers' name mappers do).

========================  =====================  ======  =============  ==================
name                      widths                 convs   residual       params (no head)
========================  =====================  ======  =============  ==================
``compact_cnn_s``         32, 64, 128            1       no             ~0.09 M
``compact_cnn_m``         32, 64, 128, 256       1       no             ~0.39 M
``compact_cnn_l``         32, 64, 128, 256       2       no             ~1.2 M
``compact_resnet``        32, 64, 128, 256       2       yes            ~1.2 M
========================  =====================  ======  =============  ==================
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import SelectAdaptivePool2d
from timm.models import register_model
from torch import nn

__all__: list[str] = []


def _conv_bn(cin: int, cout: int, stride: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _Stage(nn.Module):
    """``convs`` 3x3 conv-BN(-ReLU) layers, the first one halving the resolution (except stage 0);
    with ``residual`` the stage is one basic block with a strided 1x1 shortcut."""

    def __init__(self, cin: int, cout: int, convs: int, downsample: bool, residual: bool):
        super().__init__()
        stride = 2 if downsample else 1
        self.residual = residual
        if residual:
            self.body = nn.Sequential(_conv_bn(cin, cout, stride),
                                      *[_conv_bn(cout, cout, act=i < convs - 2) for i in range(convs - 1)])
            self.shortcut = (nn.Identity() if cin == cout and stride == 1 else
                             nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)))
            self.act = nn.ReLU(inplace=True)
        else:  # VGG: convolutions at full resolution, then a 2x2 max-pool
            self.body = nn.Sequential(*[_conv_bn(cin if i == 0 else cout, cout) for i in range(convs)],
                                      nn.MaxPool2d(2) if downsample else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.residual:
            return self.act(self.body(x) + self.shortcut(x))
        return self.body(x)


class CompactCNN(nn.Module):
    """Stages of 3x3 convolutions, global pooling, optional linear classifier (timm's interface)."""

    def __init__(self, widths: Sequence[int] = (32, 64, 128, 256), convs: int = 1, residual: bool = False,
                 num_classes: int = 1000, in_chans: int = 3, global_pool: str = "avg", drop_rate: float = 0.0,
                 **_: object):
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.num_features = self.head_hidden_size = int(widths[-1])
        stages, cin = [], in_chans
        for i, width in enumerate(widths):
            # residual stages downsample on entry (stage 0 keeps the input size), VGG stages on exit
            stages.append(_Stage(cin, int(width), max(1, convs), downsample=i > 0 or not residual, residual=residual))
            cin = int(width)
        self.stages = nn.Sequential(*stages)
        self.feature_info = [{"num_chs": int(w), "reduction": 2 ** (i + int(not residual)), "module": f"stages.{i}"}
                             for i, w in enumerate(widths)]
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _create(variant: str, pretrained: bool, **kwargs) -> CompactCNN:
    if pretrained:
        # No published weights exist; a local file comes in through the trainer's pretrained_model_path.
        raise ValueError(f"{variant} has no pretrained weights; pass a local checkpoint through the spec instead")
    kwargs.pop("pretrained_cfg", None)
    kwargs.pop("pretrained_cfg_overlay", None)
    return CompactCNN(**kwargs)


@register_model
def compact_cnn_s(pretrained: bool = False, **kwargs) -> CompactCNN:
    """VGG-style, three stages (16, 32, 64) of two convs and a max-pool."""
    return _create("compact_cnn_s", pretrained, widths=(16, 32, 64), convs=2, **kwargs)


@register_model
def compact_cnn_m(pretrained: bool = False, **kwargs) -> CompactCNN:
    """VGG-style, three stages (32, 64, 128) of two convs and a max-pool."""
    return _create("compact_cnn_m", pretrained, widths=(32, 64, 128), convs=2, **kwargs)


@register_model
def compact_cnn_l(pretrained: bool = False, **kwargs) -> CompactCNN:
    """VGG-style, three stages (64, 128, 256) of two convs and a max-pool."""
    return _create("compact_cnn_l", pretrained, widths=(64, 128, 256), convs=2, **kwargs)


@register_model
def compact_resnet(pretrained: bool = False, **kwargs) -> CompactCNN:
    """Four residual stages (32, 64, 128, 256), one basic block each."""
    return _create("compact_resnet", pretrained, widths=(32, 64, 128, 256), convs=2, residual=True, **kwargs)


COMPACT_BACKBONES = ("compact_cnn_s", "compact_cnn_m", "compact_cnn_l", "compact_resnet")
