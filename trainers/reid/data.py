"""Datasets, transforms and the Lightning DataModule for re-identification."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from automl.errors import AutomlError
from automl.training.sampler import PKBatchSampler
from trainers.reid.market1501 import ReidImage, load_train_set, scan_folder
from trainers.reid.metrics import require_scorable

# Decoded images are kept in memory below this many images: on small generated sets JPEG decoding
# otherwise dominates a tiny model's step.
CACHE_LIMIT = 20000


def input_hw(spec: Mapping[str, Any]) -> tuple[int, int]:
    model = spec.get("model", {})
    return int(model.get("input_height", 256)), int(model.get("input_width", 128))


def eval_transform(spec: Mapping[str, Any]) -> T.Compose:
    ds = spec.get("dataset", {})
    return T.Compose([
        T.Resize(input_hw(spec), interpolation=T.InterpolationMode.BICUBIC),
        T.ToTensor(),
        T.Normalize(ds.get("pixel_mean", [0.485, 0.456, 0.406]), ds.get("pixel_std", [0.226, 0.226, 0.226])),
    ])


def train_transform(spec: Mapping[str, Any]) -> T.Compose:
    """Bag-of-Tricks augmentation: flip (dataset.prob), pad + random crop (dataset.padding), random
    erasing (dataset.re_prob; erased pixels become 0 after normalisation, i.e. the mean colour)."""
    ds = spec.get("dataset", {})
    hw = input_hw(spec)
    return T.Compose([
        T.Resize(hw, interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(p=float(ds.get("prob", 0.5))),
        T.Pad(int(ds.get("padding", 10))),
        T.RandomCrop(hw),
        T.ToTensor(),
        T.Normalize(ds.get("pixel_mean", [0.485, 0.456, 0.406]), ds.get("pixel_std", [0.226, 0.226, 0.226])),
        T.RandomErasing(p=float(ds.get("re_prob", 0.5)), value=0),
    ])


class ReidDataset(Dataset):
    """``(image, label, pid, camid)``; ``label`` is the contiguous class index (-1 outside training)."""

    def __init__(self, images: Sequence[ReidImage], transform, labels: Sequence[int] | None = None):
        self.images = list(images)
        self.labels = list(labels) if labels is not None else [-1] * len(self.images)
        self.transform = transform
        self._cache: list[Image.Image] | None = None
        if len(self.images) <= CACHE_LIMIT:
            self._cache = [self._load(i) for i in range(len(self.images))]

    def _load(self, index: int) -> Image.Image:
        with Image.open(self.images[index].path) as img:
            return img.convert("RGB")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        img = self._cache[index] if self._cache is not None else self._load(index)
        item = self.images[index]
        return self.transform(img), self.labels[index], item.pid, item.camid


def loader(dataset: Dataset, batch_size: int, workers: int, **kwargs) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0,
                      pin_memory=torch.cuda.is_available(), **kwargs)


class ReidDataModule(pl.LightningDataModule):
    """Train identities (P x K batches) and the query + gallery sets evaluated after each epoch.

    The validation loader yields the query images first, then the gallery (``num_query`` splits them).
    """

    def __init__(self, spec: Mapping[str, Any]):
        super().__init__()
        ds = spec.get("dataset", {})
        self.spec = spec
        self.train_set = load_train_set(ds.get("train_dataset_dir", ""), ds.get("num_classes"))
        self.query = scan_folder(ds.get("query_dataset_dir", ""), "dataset.query_dataset_dir")
        self.gallery = scan_folder(ds.get("test_dataset_dir", ""), "dataset.test_dataset_dir")
        # before training: validation would otherwise fail (or score nothing) after the first epoch
        require_scorable([i.pid for i in self.query], [i.pid for i in self.gallery], [i.camid for i in self.query],
                         [i.camid for i in self.gallery], "dataset.query_dataset_dir", "dataset.test_dataset_dir")
        self.batch_size = int(ds.get("batch_size", 64))
        self.val_batch_size = int(ds.get("val_batch_size", 128))
        self.num_instances = int(ds.get("num_instances", 4))
        self.workers = int(ds.get("num_workers", 0))
        self.sampler = ds.get("sampler", "softmax_triplet")
        if self.sampler not in ("softmax_triplet", "softmax"):
            raise AutomlError(f"dataset.sampler '{self.sampler}' is not supported; allowed: softmax_triplet, softmax")
        self.seed = int(spec.get("train", {}).get("seed", 0) or 0)
        self._train = ReidDataset(self.train_set.images, train_transform(spec), self.train_set.labels)
        self._val = ReidDataset(self.query + self.gallery, eval_transform(spec))

    @property
    def num_classes(self) -> int:
        return self.train_set.num_classes

    @property
    def num_query(self) -> int:
        return len(self.query)

    def train_dataloader(self) -> DataLoader:
        rank, world = 0, 1
        if self.trainer is not None:
            rank, world = self.trainer.global_rank, self.trainer.world_size
        if self.sampler == "softmax_triplet":
            batches = PKBatchSampler(self.train_set.labels, self.batch_size, self.num_instances, seed=self.seed,
                                     rank=rank, world_size=world, batch_key="dataset.batch_size",
                                     instance_key="dataset.num_instances")
            return DataLoader(self._train, batch_sampler=batches, num_workers=self.workers,
                              persistent_workers=self.workers > 0, pin_memory=torch.cuda.is_available())
        generator = torch.Generator().manual_seed(self.seed)
        return loader(self._train, self.batch_size, self.workers, shuffle=True, drop_last=True, generator=generator)

    def val_dataloader(self) -> DataLoader:
        return loader(self._val, self.val_batch_size, self.workers, shuffle=False)
