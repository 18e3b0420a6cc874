"""ml_recog data: TAO's augmentations and the DataModule (P x K training batches, reference + query
validation sets sharing one class numbering)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2 as T

from automl.data.archives import resolve_dataset
from automl.data.folders import ClassFolderDataset, list_class_folder
from automl.errors import AutomlError
from automl.training.devices import cpu_count
from automl.training.sampler import PKBatchSampler
from trainers.ml_recog.metrics import self_match_pairs

CACHE_LIMIT = 20000  # decode once and keep in memory below this many images


def _size(spec: Mapping[str, Any]) -> tuple[int, int]:
    model = spec["model"]
    return int(model["input_height"]), int(model["input_width"])


def eval_transform(spec: Mapping[str, Any]) -> T.Compose:
    ds = spec["dataset"]
    return T.Compose([T.ToImage(), T.Resize(_size(spec), antialias=True), T.ToDtype(torch.float32, scale=True),
                      T.Normalize(list(ds["pixel_mean"]), list(ds["pixel_std"]))])


def train_transform(spec: Mapping[str, Any]) -> T.Compose:
    """TAO's ml_recog training pipeline: resize, horizontal flip (``prob``), optional rotation, colour
    jitter, Gaussian blur, normalise, random erasing (``re_prob``)."""
    ds = spec["dataset"]
    steps: list[Any] = [T.ToImage(), T.Resize(_size(spec), antialias=True)]
    if float(ds.get("prob", 0) or 0) > 0:
        steps.append(T.RandomHorizontalFlip(p=float(ds["prob"])))
    if ds.get("random_rotation"):
        steps.append(T.RandomRotation(15))
    color = ds.get("color_augmentation") or {}
    if color.get("enabled"):
        steps.append(T.ColorJitter(brightness=float(color.get("brightness", 0)), contrast=float(color.get("contrast", 0)),
                                   saturation=float(color.get("saturation", 0)), hue=float(color.get("hue", 0))))
    blur = ds.get("gaussian_blur") or {}
    if blur.get("enabled"):
        h, w = _size(spec)
        # an odd kernel no larger than the image (TAO's 15x15 default is for 224 px inputs)
        kernel = [min(int(k), s - (1 - s % 2)) | 1 for k, s in zip(blur.get("kernel", [15, 15]), (h, w))]
        steps.append(T.GaussianBlur(kernel_size=kernel, sigma=tuple(float(s) for s in blur.get("sigma", [0.3, 0.7]))))
    steps += [T.ToDtype(torch.float32, scale=True), T.Normalize(list(ds["pixel_mean"]), list(ds["pixel_std"]))]
    if float(ds.get("re_prob", 0) or 0) > 0:
        steps.append(T.RandomErasing(p=float(ds["re_prob"]), value=0))
    return T.Compose(steps)


def num_workers(spec: Mapping[str, Any]) -> int:
    """``dataset.workers`` capped by the cores this process may use (one core stays with the model)."""
    return max(0, min(int(spec["dataset"].get("workers", 0) or 0), cpu_count() - 1))


def val_sets(spec: Mapping[str, Any], *, need_query: bool = True) -> tuple[Path, Path | None]:
    val = spec["dataset"].get("val_dataset") or {}
    if not isinstance(val, Mapping) or not val.get("reference"):
        raise AutomlError("dataset.val_dataset.reference is required (a class-folder dataset or .tar.gz)")
    ref = resolve_dataset(val["reference"], "dataset.val_dataset.reference")
    query = None
    if need_query:
        if not val.get("query"):
            raise AutomlError("dataset.val_dataset.query is required (a class-folder dataset or .tar.gz)")
        query = resolve_dataset(val["query"], "dataset.val_dataset.query")
    return ref, query


def shared_classes(*roots: Path) -> dict[str, int]:
    """One numbering for the classes of several class-folder datasets (by sorted name)."""
    names: set[str] = set()
    for root in roots:
        names.update(list_class_folder(root)[2])
    return {n: i for i, n in enumerate(sorted(names))}


def make_loader(dataset, batch_size: int, workers: int, **kwargs) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0,
                      pin_memory=torch.cuda.is_available(), **kwargs)


class MLRecogDataModule(pl.LightningDataModule):
    def __init__(self, spec: Mapping[str, Any]):
        super().__init__()
        self.spec = spec
        self.workers = num_workers(spec)
        self.train_sampler: PKBatchSampler | None = None
        self.train_set = self.reference_set = self.query_set = None
        self.self_matches: torch.Tensor | None = None  # (query, reference) pairs that are one file

    def check(self) -> tuple[Path, Path, Path]:
        """Resolve (and extract) the dataset folders; raises a one-line error before any training starts."""
        train_root = resolve_dataset(self.spec["dataset"].get("train_dataset", ""), "dataset.train_dataset")
        ref_root, query_root = val_sets(self.spec)
        for root, key in ((train_root, "dataset.train_dataset"), (ref_root, "dataset.val_dataset.reference"),
                          (query_root, "dataset.val_dataset.query")):
            list_class_folder(root, key)
        return train_root, ref_root, query_root

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        spec = self.spec
        train_root, ref_root, query_root = self.check()
        total = sum(len(list_class_folder(r)[0]) for r in (train_root, ref_root, query_root))
        cache = total <= CACHE_LIMIT
        self.train_set = ClassFolderDataset(train_root, train_transform(spec), key="dataset.train_dataset", cache=cache)
        mapping = shared_classes(ref_root, query_root)
        self.reference_set = ClassFolderDataset(ref_root, eval_transform(spec), key="dataset.val_dataset.reference",
                                                class_to_label=mapping, cache=cache)
        self.query_set = ClassFolderDataset(query_root, eval_transform(spec), key="dataset.val_dataset.query",
                                            class_to_label=mapping, cache=cache)
        self.self_matches = self_match_pairs(self.query_set.paths, self.reference_set.paths)
        bs, k = int(spec["train"]["batch_size"]), int(spec["dataset"]["num_instance"])
        if k > 0 and bs // k < 2:
            logging.getLogger("automl.trainers.ml_recog").warning(
                "train.batch_size=%d / dataset.num_instance=%d gives one class per batch: triplets have no negatives "
                "and the loss is zero (raise train.batch_size to a multiple of num_instance >= 2x)", bs, k)
        trainer = self.trainer
        seed = int(spec["train"].get("seed", 0) or 0)
        self.train_sampler = PKBatchSampler(
            self.train_set.labels, int(spec["train"]["batch_size"]), int(spec["dataset"]["num_instance"]), seed=seed,
            rank=trainer.global_rank if trainer else 0, world_size=trainer.world_size if trainer else 1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_sampler=self.train_sampler, num_workers=self.workers,
                          persistent_workers=self.workers > 0, pin_memory=torch.cuda.is_available())

    def val_dataloader(self) -> list[DataLoader]:
        bs = int(self.spec["train"].get("val_batch_size") or 64)
        return [make_loader(self.reference_set, bs, self.workers), make_loader(self.query_set, bs, self.workers)]
