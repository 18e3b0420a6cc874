"""Image folders, transforms and the DataModule of both MAE stages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from PIL import Image
from timm.data import create_transform
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision import transforms as T

from automl.data.archives import resolve_dataset
from automl.data.folders import IMAGE_SUFFIXES, ClassFolderDataset, list_images, load_rgb
from automl.errors import AutomlError

CACHE_LIMIT = 20000  # decoded images kept in memory below this count (small generated sets)


def source_folder(value: Any, key: str) -> Path | None:
    """TAO's ``*_data_sources`` is a path (folder or .tar.gz) or a one-element list of them; empty: None."""
    if isinstance(value, (list, tuple)):
        if len(value) > 1:
            raise AutomlError(f"{key}: one folder or archive is supported, got {len(value)}")
        value = value[0] if value else ""
    if isinstance(value, Mapping):  # TAO's {image_dir: ...} form
        value = value.get("image_dir") or value.get("images_dir") or ""
    value = str(value or "").strip()
    return resolve_dataset(value, key) if value else None


MIN_KNN_IMAGES = 2  # leave-one-out k-NN needs a neighbour for every image


def require_knn_split(count: int, key: str) -> None:
    """A labelled validation split too small for the k-NN accuracy is refused before any training (its
    accuracy would be NaN, and become a search's objective)."""
    if count < MIN_KNN_IMAGES:
        raise AutomlError(f"{key}: {count} labelled image(s); the k-NN accuracy needs at least {MIN_KNN_IMAGES} "
                          "(each image is classified by its nearest other images)")


def has_class_folders(root: Path) -> bool:
    subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return bool(subdirs) and any(f.suffix.lower() in IMAGE_SUFFIXES for d in subdirs for f in d.iterdir())


def input_size(spec: Mapping[str, Any]) -> int:
    return int(spec.get("dataset", {}).get("augmentation", {}).get("input_size", 224))


def _aug(spec: Mapping[str, Any]) -> dict[str, Any]:
    return dict(spec.get("dataset", {}).get("augmentation", {}) or {})


def _interpolation(aug: Mapping[str, Any]) -> T.InterpolationMode:
    name = aug.get("interpolation", "bilinear")
    return T.InterpolationMode.BICUBIC if name == "bicubic" else T.InterpolationMode.BILINEAR


def eval_transform(spec: Mapping[str, Any]) -> T.Compose:
    aug = _aug(spec)
    size = input_size(spec)
    return T.Compose([T.Resize((size, size), interpolation=_interpolation(aug)), T.ToTensor(),
                      T.Normalize(aug.get("mean", [0.485, 0.456, 0.406]), aug.get("std", [0.229, 0.224, 0.225]))])


def _scale(aug: Mapping[str, Any]) -> tuple[float, float]:
    # TAO's max_scale default is 2.0; a crop cannot cover more than the image, so it is capped at 1
    return float(aug.get("min_scale", 0.1)), min(1.0, float(aug.get("max_scale", 1.0)))


def pretrain_transform(spec: Mapping[str, Any]) -> T.Compose:
    """MAE's pretraining augmentation: random resized crop and flip, nothing else."""
    aug = _aug(spec)
    return T.Compose([
        T.RandomResizedCrop(input_size(spec), scale=_scale(aug),
                            ratio=(float(aug.get("min_ratio", 0.75)), float(aug.get("max_ratio", 1.33))),
                            interpolation=_interpolation(aug)),
        T.RandomHorizontalFlip(float(aug.get("hflip", 0.5))), T.ToTensor(),
        T.Normalize(aug.get("mean", [0.485, 0.456, 0.406]), aug.get("std", [0.229, 0.224, 0.225])),
    ])


def finetune_transform(spec: Mapping[str, Any]):
    """timm's training transform: resized crop, flip, RandAugment, colour jitter, random erasing."""
    aug = _aug(spec)
    auto_aug = str(aug.get("auto_aug") or "").strip() or None
    return create_transform(
        input_size(spec), is_training=True, scale=_scale(aug),
        ratio=(float(aug.get("min_ratio", 0.75)), float(aug.get("max_ratio", 1.33))),
        hflip=float(aug.get("hflip", 0.5)), color_jitter=float(aug.get("color_jitter", 0.0) or 0.0) or None,
        auto_augment=auto_aug, interpolation=aug.get("interpolation", "bilinear"),
        re_prob=float(aug.get("re_prob", 0.0) or 0.0), mean=tuple(aug.get("mean", [0.485, 0.456, 0.406])),
        std=tuple(aug.get("std", [0.229, 0.224, 0.225])))


class ImagesDataset(Dataset):
    """``(image, label)`` over a list of files; ``label`` is -1 for unlabelled images."""

    def __init__(self, paths: Sequence[Path], transform, labels: Sequence[int] | None = None):
        self.paths = list(paths)
        self.labels = list(labels) if labels is not None else [-1] * len(self.paths)
        self.transform = transform
        self._cache: list[Image.Image] | None = [load_rgb(p) for p in self.paths] if len(self.paths) <= CACHE_LIMIT else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        img = self._cache[index] if self._cache is not None else load_rgb(self.paths[index])
        return self.transform(img), self.labels[index]


def labelled(root: Path, transform, key: str, class_to_label: dict[str, int] | None = None) -> ImagesDataset:
    folder = ClassFolderDataset(root, None, key=key, class_to_label=class_to_label)
    data = ImagesDataset(folder.paths, transform, folder.labels)
    data.classes, data.class_to_label = folder.classes, folder.class_to_label  # type: ignore[attr-defined]
    return data


class MaeDataModule(pl.LightningDataModule):
    """pretrain: every image under ``dataset.train_data_sources`` (labels ignored); validation on
    ``dataset.val_data_sources`` (class folders enable the k-NN accuracy). finetune: class folders for
    both; ``model.num_classes`` must equal the training classes."""

    def __init__(self, spec: Mapping[str, Any]):
        super().__init__()
        ds = spec.get("dataset", {})
        self.stage = spec.get("train", {}).get("stage", "pretrain")
        if self.stage not in ("pretrain", "finetune"):
            raise AutomlError(f"train.stage '{self.stage}' is not known; allowed: pretrain, finetune")
        self.batch_size = int(ds.get("batch_size", 64))
        self.workers = int(ds.get("num_workers_per_gpu", 2))
        self.seed = int(spec.get("train", {}).get("seed", 0) or 0)
        train_root = source_folder(ds.get("train_data_sources"), "dataset.train_data_sources")
        if train_root is None:
            raise AutomlError("dataset.train_data_sources is not set; point it at an image folder")
        val_root = source_folder(ds.get("val_data_sources"), "dataset.val_data_sources")
        self.classes: list[str] = []
        if self.stage == "pretrain":
            self.train = ImagesDataset(list_images(train_root, "dataset.train_data_sources"), pretrain_transform(spec))
            if val_root is not None and has_class_folders(val_root):
                self.val = labelled(val_root, eval_transform(spec), "dataset.val_data_sources")
                require_knn_split(len(self.val), "dataset.val_data_sources")
                self.classes = list(self.val.classes)
            elif val_root is not None:
                self.val = ImagesDataset(list_images(val_root, "dataset.val_data_sources"), eval_transform(spec))
            else:  # no val set: reconstruction loss on a fixed sample of the training images
                self.val = ImagesDataset(self.train.paths[:256], eval_transform(spec))
        else:
            if not has_class_folders(train_root):
                raise AutomlError(f"dataset.train_data_sources: finetune needs one sub-folder per class in {train_root}")
            self.train = labelled(train_root, finetune_transform(spec), "dataset.train_data_sources")
            self.classes = list(self.train.classes)
            expected = int(spec.get("model", {}).get("num_classes", 1))
            if expected != len(self.classes):
                raise AutomlError(f"model.num_classes is {expected} but dataset.train_data_sources ('{train_root}') has "
                                  f"{len(self.classes)} class folders; set model.num_classes={len(self.classes)}")
            if val_root is None:
                raise AutomlError("dataset.val_data_sources is not set; finetune reports val_accuracy on it (one sub-folder per class)")
            self.val = labelled(val_root, eval_transform(spec), "dataset.val_data_sources", self.train.class_to_label)
            extra = sorted(set(self.val.classes) - set(self.classes))
            if extra:
                raise AutomlError(f"dataset.val_data_sources has classes not in training: {', '.join(extra[:5])}")
        if len(self.train) < self.batch_size:
            raise AutomlError(f"dataset.batch_size={self.batch_size} is larger than the {len(self.train)} training images")

    @property
    def labelled_val(self) -> bool:
        return bool(self.classes) and all(label >= 0 for label in self.val.labels)

    def train_dataloader(self) -> DataLoader:
        # The shared runner disables Lightning's sampler replacement (reid/ml_recog shard themselves),
        # so DDP sharding is done here.
        world = self.trainer.world_size if self.trainer is not None else 1
        sampler = None
        if world > 1:
            sampler = DistributedSampler(self.train, num_replicas=world, rank=self.trainer.global_rank,
                                         shuffle=True, seed=self.seed, drop_last=True)
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=sampler is None, sampler=sampler,
                          drop_last=True, num_workers=self.workers, persistent_workers=self.workers > 0,
                          generator=generator if sampler is None else None, pin_memory=torch.cuda.is_available())

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=self.batch_size, shuffle=False, num_workers=self.workers,
                          persistent_workers=self.workers > 0)
