"""MAE models on timm encoders: ViT (He et al., 2022) and ConvNeXt-V2 (FCMAE, Woo et al., 2023).

Both expose the same interface:

* ``forward(images, mask_ratio, generator=None) -> (loss, pred, mask)`` — mask ``mask_ratio`` of the
  patches, reconstruct their pixels, loss = MSE over the masked patches only (per-patch normalised
  targets with ``norm_pix_loss``);
* ``encoder`` — the plain timm model (``num_classes=0``) whose weights a finetune run starts from;
* ``features(images)`` — the encoder's pooled features without masking (k-NN evaluation).

timm ships the encoders but no MAE wrapper (its ``vision_transformer`` has no masking path), hence
these two small modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.models.convnext import ConvNeXtBlock
from timm.models.vision_transformer import Block
from torch import nn

from automl.errors import AutomlError
from automl.training.checkpoints import load_matching_weights, load_state_dict, strip_prefix

# TAO's arch names -> timm's. Other timm names of the two families work as well.
ARCHS = {
    **{f"convnextv2_{s}": f"convnextv2_{s}" for s in ("atto", "femto", "pico", "nano", "tiny", "base", "large", "huge")},
    "vit_tiny_patch16": "vit_tiny_patch16_224", "vit_small_patch16": "vit_small_patch16_224",
    "vit_base_patch16": "vit_base_patch16_224", "vit_large_patch16": "vit_large_patch16_224",
    "vit_huge_patch14": "vit_huge_patch14_224",
    "test_vit": "test_vit.r160_in1k", "test_convnext": "test_convnext.r160_in1k",
}


def timm_name(arch: str) -> str:
    if arch.startswith("hiera"):
        raise AutomlError(f"model.arch '{arch}': Hiera is not supported by this trainer; use a vit_* or convnextv2_* arch")
    name = ARCHS.get(arch, arch)
    if not timm.is_model(name):
        raise AutomlError(f"model.arch '{arch}' is not a known encoder; allowed: {', '.join(ARCHS)} (or a timm ViT/ConvNeXt name)")
    return name


def create_encoder(spec: Mapping[str, Any], num_classes: int = 0) -> nn.Module:
    """The timm encoder (``num_classes=0``: pooled features) or classifier, at the trained input size."""
    model = spec.get("model", {})
    name = timm_name(str(model.get("arch", "convnextv2_base")))
    kwargs: dict[str, Any] = dict(model.get("timm_kwargs") or {})
    kwargs.update(pretrained=False, num_classes=int(num_classes), drop_path_rate=float(model.get("drop_path_rate", 0.0) or 0.0))
    size = int(spec.get("dataset", {}).get("augmentation", {}).get("input_size", 224))
    family = "vit" if "vit" in name else "convnext" if "convnext" in name else None
    if family is None:
        raise AutomlError(f"model.arch '{model.get('arch')}': only ViT and ConvNeXt encoders are supported")
    if family == "vit":
        kwargs["img_size"] = size
        kwargs["global_pool"] = "avg" if model.get("global_pool", True) else "token"
    try:
        return timm.create_model(name, **kwargs)
    except TypeError as exc:
        raise AutomlError(f"model.timm_kwargs: timm.create_model('{name}') rejected them: {exc}") from None


def patchify(images: torch.Tensor, p: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, L, p*p*3), patches in row-major order."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // p, p, w // p, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: torch.Tensor, p: int, h: int, w: int) -> torch.Tensor:
    b = patches.shape[0]
    x = patches.reshape(b, h // p, w // p, p, p, 3)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(b, 3, h, w)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix: bool) -> torch.Tensor:
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    loss = ((pred - target) ** 2).mean(dim=-1)  # per patch
    return (loss * mask).sum() / mask.sum().clamp(min=1.0)


def random_mask(batch: int, length: int, ratio: float, device, generator: torch.Generator | None = None):
    """Per-sample random permutation: ``keep`` indices, ``mask`` (1 = masked) and the inverse order."""
    noise = torch.rand(batch, length, generator=generator, device="cpu" if generator is not None else device).to(device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    n_keep = max(1, int(round(length * (1 - ratio))))
    mask = torch.ones(batch, length, device=device)
    mask[:, :n_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return ids_shuffle[:, :n_keep], mask, ids_restore


class ViTMAE(nn.Module):
    def __init__(self, encoder: nn.Module, decoder_dim: int = 512, decoder_depth: int = 1, norm_pix_loss: bool = True):
        super().__init__()
        self.encoder = encoder
        pe = encoder.patch_embed
        self.patch = int(pe.patch_size[0])
        self.grid = tuple(pe.grid_size)
        num_patches = self.grid[0] * self.grid[1]
        dim = encoder.embed_dim
        self.prefix = 0 if encoder.no_embed_class else encoder.num_prefix_tokens
        if encoder.pos_embed is None or encoder.pos_embed.shape[1] != num_patches + self.prefix:
            raise AutomlError("model.arch: this ViT has no absolute position embedding of the input grid; MAE needs one")
        heads = max(1, decoder_dim // 32) if decoder_dim % 32 == 0 else 1
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, decoder_dim))
        self.decoder_blocks = nn.Sequential(*[Block(decoder_dim, heads, mlp_ratio=4.0) for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch * self.patch * 3)
        self.norm_pix_loss = norm_pix_loss
        nn.init.normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.decoder_pos_embed, std=0.02)

    def _tokens(self, images: torch.Tensor) -> torch.Tensor:
        x = self.encoder.patch_embed(images)
        return x.flatten(1, 2) if x.ndim == 4 else x  # dynamic-size ViTs return NHWC

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        enc = self.encoder
        x = enc.blocks(enc.norm_pre(x))
        # with global average pooling timm moves the final LayerNorm after the pooling (fc_norm); per
        # token here, so the same weights serve the finetuned classifier
        return enc.fc_norm(x) if isinstance(enc.norm, nn.Identity) else enc.norm(x)

    def encode(self, images: torch.Tensor, ratio: float, generator=None):
        enc = self.encoder
        x = self._tokens(images)
        pos = enc.pos_embed
        x = x + pos[:, self.prefix:]
        keep, mask, ids_restore = random_mask(x.shape[0], x.shape[1], ratio, x.device, generator)
        x = torch.gather(x, 1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        prefix = []
        if enc.cls_token is not None:
            cls = enc.cls_token + (pos[:, :1] if self.prefix else 0)
            prefix.append(cls.expand(x.shape[0], -1, -1))
        if getattr(enc, "reg_token", None) is not None:
            prefix.append(enc.reg_token.expand(x.shape[0], -1, -1))
        n_prefix = sum(t.shape[1] for t in prefix)
        x = torch.cat(prefix + [x], dim=1)
        return self._finish(x), mask, ids_restore, n_prefix

    def decode(self, x: torch.Tensor, ids_restore: torch.Tensor, n_prefix: int) -> torch.Tensor:
        x = self.decoder_embed(x)
        tokens = x[:, n_prefix:]
        masked = self.mask_token.expand(x.shape[0], ids_restore.shape[1] - tokens.shape[1], -1)
        full = torch.cat([tokens, masked], dim=1)
        full = torch.gather(full, 1, ids_restore.unsqueeze(-1).expand(-1, -1, full.shape[-1]))
        first = x[:, :1] if n_prefix else torch.zeros_like(full[:, :1])
        full = torch.cat([first, full], dim=1) + self.decoder_pos_embed
        full = self.decoder_norm(self.decoder_blocks(full))
        return self.decoder_pred(full[:, 1:])

    def forward(self, images: torch.Tensor, mask_ratio: float, generator=None):
        latent, mask, ids_restore, n_prefix = self.encode(images, mask_ratio, generator)
        pred = self.decode(latent, ids_restore, n_prefix)
        loss = masked_mse(pred, patchify(images, self.patch), mask, self.norm_pix_loss)
        return loss, pred, mask

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)


class ConvNeXtMAE(nn.Module):
    """FCMAE with dense convolutions: the mask (one cell per 32x32 patch, the encoder's total stride) is
    applied after the stem and after every block, so masked regions never leak into visible ones,
    which is what the paper's sparse convolutions achieve; the decoder is ConvNeXt blocks at 1/32."""

    def __init__(self, encoder: nn.Module, decoder_dim: int = 512, decoder_depth: int = 1, norm_pix_loss: bool = True):
        super().__init__()
        self.encoder = encoder
        self.patch = 32
        self.decoder_embed = nn.Conv2d(encoder.num_features, decoder_dim, 1)
        self.mask_token = nn.Parameter(torch.zeros(1, decoder_dim, 1, 1))
        self.decoder = nn.Sequential(*[ConvNeXtBlock(decoder_dim, ls_init_value=None) for _ in range(decoder_depth)])
        self.decoder_pred = nn.Conv2d(decoder_dim, self.patch * self.patch * 3, 1)
        self.norm_pix_loss = norm_pix_loss
        nn.init.normal_(self.mask_token, std=0.02)

    def _masked_features(self, images: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        enc = self.encoder

        def apply(x):
            if keep is None:
                return x
            return x * F.interpolate(keep, size=x.shape[-2:], mode="nearest")

        x = apply(enc.stem(images))
        for stage in enc.stages:
            x = apply(stage.downsample(x))
            for block in stage.blocks:
                x = apply(block(x))
        return enc.norm_pre(x)

    def forward(self, images: torch.Tensor, mask_ratio: float, generator=None):
        b, _, h, w = images.shape
        if h % self.patch or w % self.patch:
            raise AutomlError(f"dataset.augmentation.input_size must be a multiple of 32 for ConvNeXt MAE, got {h}x{w}")
        gh, gw = h // self.patch, w // self.patch
        _, mask, _ = random_mask(b, gh * gw, mask_ratio, images.device, generator)
        keep = (1 - mask).reshape(b, 1, gh, gw)
        x = self._masked_features(images, keep)
        x = self.decoder_embed(x)
        m = mask.reshape(b, 1, gh, gw)
        x = x * (1 - m) + self.mask_token * m
        pred = self.decoder_pred(self.decoder(x))  # (B, p*p*3, gh, gw)
        pred = pred.flatten(2).transpose(1, 2)
        loss = masked_mse(pred, patchify(images, self.patch), mask, self.norm_pix_loss)
        return loss, pred, mask

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)


def build_mae(spec: Mapping[str, Any]) -> nn.Module:
    model, train = spec.get("model", {}), spec.get("train", {})
    encoder = create_encoder(spec, num_classes=0)
    kwargs = {"decoder_dim": int(model.get("decoder_embed_dim", 512)), "decoder_depth": int(model.get("decoder_depth", 1)),
              "norm_pix_loss": bool(train.get("norm_pix_loss", True))}
    if kwargs["decoder_depth"] < 1:
        raise AutomlError(f"model.decoder_depth must be >= 1, got {kwargs['decoder_depth']}")
    if hasattr(encoder, "patch_embed") and hasattr(encoder, "blocks"):
        mae: nn.Module = ViTMAE(encoder, **kwargs)
    elif hasattr(encoder, "stem") and hasattr(encoder, "stages"):
        mae = ConvNeXtMAE(encoder, **kwargs)
    else:
        raise AutomlError(f"model.arch '{model.get('arch')}': no MAE for this encoder family")
    _check_patches(spec, mae.patch)
    return mae


#: fewer patches than this and masking 75 % of them hides nothing (1 patch) or nearly all: both
#: losses are then exactly 0 or meaningless, so such an input size is refused
MIN_PATCHES = 4


def _check_patches(spec: Mapping[str, Any], patch: int) -> None:
    size = int(spec.get("dataset", {}).get("augmentation", {}).get("input_size", 224))
    patches = (size // patch) ** 2
    if patches < MIN_PATCHES:
        raise AutomlError(
            f"dataset.augmentation.input_size {size} leaves {patches} patch{'es' if patches != 1 else ''} of {patch} px "
            f"for model.arch '{spec.get('model', {}).get('arch')}'; MAE masks patches and needs at least {MIN_PATCHES}: "
            f"use input_size >= {2 * patch}")


def encoder_state(mae_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder's weights out of a pretrain checkpoint's state dict (keys ``mae.encoder.*``)."""
    return strip_prefix(mae_state, "mae.encoder.")


def load_encoder_weights(model: torch.nn.Module, path: str) -> dict[str, Any]:
    """Initialise a timm classifier from ``train.pretrained_model_path``: our pretrain checkpoint
    (``mae.encoder.*``), our finetune checkpoint (``model.*``) or a bare timm state dict. The head
    is skipped when its shape differs (a new class count)."""
    state = load_state_dict(path, key="train.pretrained_model_path")
    if any(k.startswith("mae.encoder.") for k in state):
        state = encoder_state(state)
    elif any(k.startswith("model.") for k in state):
        state = strip_prefix(state, "model.")
    missing = load_matching_weights(model, state, "train.pretrained_model_path", path,
                                    "model.arch (different architecture or size?)")
    body_missing = [k for k in missing if not k.startswith(("head", "fc_norm", "fc."))]
    if body_missing:
        raise AutomlError(f"train.pretrained_model_path: {path} lacks {len(body_missing)} encoder weights of model.arch "
                          f"(e.g. {body_missing[0]}); was it trained with the same model.arch, timm_kwargs and input_size?")
    return {"loaded": len(model.state_dict()) - len(missing), "missing": missing}
