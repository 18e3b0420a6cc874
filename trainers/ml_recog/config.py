"""Reading an ml_recog spec: our template's defaults under the user's values, TAO-only keys named in
one warning, backbone names mapped to timm."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from automl.errors import AutomlError
from automl.spec import get_dotted, load_yaml
from automl.spec_keys import TAO_PLUMBING, SpecKeys
from trainers import SEARCH_SPACES

TEMPLATE_DIR = SEARCH_SPACES / "ml_recog"
MONITOR = "val Precision at Rank 1"

#: TAO backbone names -> timm model names. ``None``: TAO has it, timm does not (error, listing the rest).
BACKBONES: dict[str, str | None] = {
    "resnet_18": "resnet18",
    "resnet_34": "resnet34",
    "resnet_50": "resnet50",
    "resnet_101": "resnet101",
    "efficientnet_b0": "efficientnet_b0",
    "convnext_tiny": "convnext_tiny",
    "vit_small_patch16": "vit_small_patch16_224",
    "nvdinov2_vit_large_legacy": "vit_large_patch14_dinov2",
    "fan_tiny": None,  # NVIDIA's FAN backbones live in TAO's own code, not in timm
    "fan_small": None,
    "fan_base": None,
    "fan_large": None,
    # compact CNNs for 32-64 px inputs (automl.training.backbones): the CPU demos' backbones
    "compact_cnn_s": "compact_cnn_s",
    "compact_cnn_m": "compact_cnn_m",
    "compact_cnn_l": "compact_cnn_l",
    "compact_resnet": "compact_resnet",
    # tiny timm test networks (random init, ~0.1-0.4 M parameters): CPU demos and tests
    "test_resnet": "test_resnet.r160_in1k",
    "test_convnext": "test_convnext.r160_in1k",
    "test_efficientnet": "test_efficientnet.r160_in1k",
    "test_vit": "test_vit.r160_in1k",
}
AVAILABLE_BACKBONES = tuple(k for k, v in BACKBONES.items() if v)

#: TAO keys with no effect here (named in one warning, never an error). ``<action>.results_dir`` is
#: not among them: ``automl <action>`` writes there.
SPEC_KEYS = SpecKeys("ml_recog", ignored=(*TAO_PLUMBING, "dataset.class_map"),
                     pretrained=("model.pretrained_model_path", "model.pretrained_trunk_path",
                                 "model.pretrained_embedder_path"))


def timm_name(backbone: str) -> str:
    import automl.training.backbones  # noqa: F401  (registers the compact_* names in timm)

    if backbone not in BACKBONES or BACKBONES[backbone] is None:
        why = "is a TAO backbone with no timm implementation" if backbone in BACKBONES else "is not a known backbone"
        raise AutomlError(f"model.backbone: '{backbone}' {why}; available: {', '.join(AVAILABLE_BACKBONES)}")
    return BACKBONES[backbone]  # type: ignore[return-value]


def template(action: str = "train") -> dict[str, Any]:
    return load_yaml(TEMPLATE_DIR / f"spec_template_{action}.yaml")


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict) and key != "val_dataset":
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def resolve(spec: Mapping[str, Any], action: str = "train") -> dict[str, Any]:
    """The full spec for ``action``: the train template's defaults, then the action template's, then
    the user's values (TAO-only keys are named by :data:`SPEC_KEYS`, checked once per action)."""
    out = template("train")
    if action != "train" and (TEMPLATE_DIR / f"spec_template_{action}.yaml").is_file():
        _merge(out, template(action))
    _merge(out, spec)
    timm_name(str(get_dotted(out, "model.backbone")))
    return out


def required(spec: Mapping[str, Any], key: str) -> Any:
    value = get_dotted(spec, key)
    if value is None or (isinstance(value, str) and value.strip() in ("", "???", "<required>")):
        raise AutomlError(f"{key} is required")
    return value


def model_config(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The keys that fix the network's architecture (stored in checkpoints)."""
    model = dict(spec.get("model") or {})
    return {"backbone": str(model.get("backbone")), "feat_dim": int(model.get("feat_dim", 256)),
            "input_width": int(model.get("input_width", 224)), "input_height": int(model.get("input_height", 224)),
            "input_channels": int(model.get("input_channels", 3))}
