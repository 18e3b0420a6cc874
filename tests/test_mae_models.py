"""MAE building blocks: patches, masking, the masked loss, FCMAE masking, weight transfer, k-NN, schedule."""

from __future__ import annotations

import math

import pytest
import torch

from automl.errors import AutomlError
from automl.spec import load_yaml
from trainers.mae import plugin
from trainers.mae.model import (build_mae, create_encoder, encoder_state, load_encoder_weights, masked_mse, patchify,
                                random_mask, unpatchify)
from trainers.mae.module import knn_accuracy, lr_factor

VIT = {"model": {"arch": "test_vit", "decoder_embed_dim": 64, "decoder_depth": 1, "timm_kwargs": {"patch_size": 8}},
       "dataset": {"augmentation": {"input_size": 32}}, "train": {"norm_pix_loss": True}}
CONVNEXT = {"model": {"arch": "convnextv2_atto", "decoder_embed_dim": 32, "decoder_depth": 1,
                      "timm_kwargs": {"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64]}},
            "dataset": {"augmentation": {"input_size": 64}}, "train": {"norm_pix_loss": False}}
TEMPLATE = load_yaml(plugin.spec_template("train"))  # the shipped default: ViT-Tiny, 4 px patches, 6 blocks


def test_patchify_round_trip():
    images = torch.randn(2, 3, 32, 32)
    patches = patchify(images, 8)
    assert patches.shape == (2, 16, 192)
    # the first patch is the top-left 8x8 block, channels last
    assert torch.equal(patches[0, 0], images[0, :, :8, :8].permute(1, 2, 0).reshape(-1))
    assert torch.equal(unpatchify(patches, 8, 32, 32), images)


def test_random_mask_masks_the_requested_share_per_sample():
    keep, mask, restore = random_mask(3, 16, 0.75, "cpu", torch.Generator().manual_seed(0))
    assert keep.shape == (3, 4) and mask.sum(1).tolist() == [12.0, 12.0, 12.0]
    for b in range(3):  # kept indices are exactly the unmasked patches
        assert sorted(keep[b].tolist()) == torch.nonzero(mask[b] == 0).flatten().tolist()
    again = random_mask(3, 16, 0.75, "cpu", torch.Generator().manual_seed(0))[1]
    assert torch.equal(mask, again)  # seeded masks are reproducible (validation uses this)


def test_loss_counts_only_masked_patches():
    target = torch.zeros(1, 4, 3)
    pred = torch.zeros(1, 4, 3)
    pred[0, 0] = 10.0  # a huge error on a visible patch
    pred[0, 1] = 1.0
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    assert masked_mse(pred, target, mask, norm_pix=False).item() == pytest.approx(0.5)


def test_norm_pix_loss_targets_are_normalised_per_patch():
    target = torch.tensor([[[1.0, 3.0, 5.0, 7.0]]])
    pred = (target - target.mean()) / (target.var() + 1e-6) ** 0.5
    assert masked_mse(pred, target, torch.ones(1, 1), norm_pix=True).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("spec", [VIT, CONVNEXT, TEMPLATE], ids=["vit", "convnextv2", "template"])
def test_mae_forward_backward_and_features(spec):
    torch.manual_seed(0)
    mae = build_mae(spec)
    size = spec["dataset"]["augmentation"]["input_size"]
    images = torch.randn(2, 3, size, size)
    loss, pred, mask = mae(images, 0.75)
    assert torch.isfinite(loss) and pred.shape[:2] == mask.shape
    loss.backward()
    assert mae.encoder.state_dict().keys()  # the encoder is a plain timm model
    assert mae.features(images).shape == (2, mae.encoder.num_features)


def test_the_template_encoder_is_a_reduced_vit_tiny_at_32px():
    mae = build_mae(TEMPLATE)
    assert mae.encoder.embed_dim == 192 and len(mae.encoder.blocks) == 6 and mae.grid == (8, 8) and mae.patch == 4


def test_convnext_mask_hides_masked_regions_from_the_encoder():
    torch.manual_seed(0)
    mae = build_mae(CONVNEXT).eval()
    images = torch.randn(1, 3, 64, 64)
    keep = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])  # top-right 32x32 patch masked
    changed = images.clone()
    changed[..., :32, 32:] = 100.0  # only the masked patch differs
    with torch.no_grad():
        a = mae._masked_features(images, keep)
        b = mae._masked_features(changed, keep)
    assert torch.allclose(a, b, atol=1e-5)


def test_encoder_weights_move_into_the_classifier(tmp_path):
    torch.manual_seed(0)
    mae = build_mae(VIT)
    path = tmp_path / "pre.ckpt"
    torch.save({"state_dict": {f"mae.{k}": v for k, v in mae.state_dict().items()}}, path)
    classifier = create_encoder(VIT, num_classes=5)
    info = load_encoder_weights(classifier, str(path))
    assert "head.weight" in info["missing"] and info["loaded"] == len(encoder_state({f"mae.{k}": v for k, v in mae.state_dict().items()}))
    assert torch.equal(classifier.patch_embed.proj.weight, mae.encoder.patch_embed.proj.weight)
    other = dict(VIT, model={**VIT["model"], "timm_kwargs": {"patch_size": 4}})
    with pytest.raises(AutomlError, match="train.pretrained_model_path"):
        load_encoder_weights(create_encoder(other, num_classes=5), str(path))


def test_unknown_and_unsupported_arch_are_clear_errors():
    with pytest.raises(AutomlError, match="Hiera is not supported"):
        create_encoder({"model": {"arch": "hiera_tiny_224"}})
    with pytest.raises(AutomlError, match="model.arch 'vit_gigantic_x'"):
        create_encoder({"model": {"arch": "vit_gigantic_x"}})


def test_knn_accuracy_leave_one_out():
    feats = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.95, 0.05], [0.0, 1.0], [0.1, 0.9], [0.05, 0.95]])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    assert knn_accuracy(feats, labels, k=2) == 1.0
    # every label unique: only a classifier that sees the sample itself could be right
    assert knn_accuracy(feats, torch.arange(6), k=1) == 0.0


def test_schedule_depends_on_num_epochs_not_on_where_a_run_stops():
    spec = {"train": {"num_epochs": 10, "optim": {"warmup_epochs": 2, "lr_scheduler": "cosine"}}}
    assert lr_factor(1.0, spec) == pytest.approx(0.5, abs=1e-3)
    assert lr_factor(2.0, spec) == pytest.approx(1.0)
    assert lr_factor(6.0, spec) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(10.0, spec) == pytest.approx(0.0, abs=1e-9)
    step = {"train": {"num_epochs": 10, "optim": {"warmup_epochs": 0, "lr_scheduler": "MultiStep",
                                                  "milestones": [4, 8], "gamma": 0.1}}}
    assert [round(lr_factor(e, step), 6) for e in (0, 4, 8)] == [1.0, 0.1, 0.01]
