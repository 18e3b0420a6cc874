"""P x K batches: ``P`` classes with ``K`` (``dataset.num_instance``) images each per batch.

Why not pytorch-metric-learning's ``MPerClassSampler``: it draws from the global NumPy RNG (so DDP
ranks seeded alike draw identical batches and a resumed run cannot reproduce its epochs), it is a flat
index sampler (Lightning's ``DistributedSamplerWrapper`` would deal its indices round-robin to the
ranks and break the per-class grouping), and its epoch length is an arbitrary ``length_before_new_iter``
instead of one pass over the data. This sampler is the reid-strong-baseline ``RandomIdentitySampler``
that TAO uses, made a seeded, distributed-aware *batch* sampler: each epoch every class's images are
shuffled and cut into groups of K (a class with fewer than K images is sampled with replacement),
batches take groups from P distinct random classes, and whole batches are dealt to the ranks.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from automl.errors import AutomlError


class PKBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices; pass as ``DataLoader(batch_sampler=...)``.

    Call :meth:`set_epoch` each epoch (Lightning does for a dataloader's batch sampler) to reshuffle.
    """

    def __init__(self, labels: Sequence[int], batch_size: int, num_instance: int, *, seed: int = 0,
                 rank: int = 0, world_size: int = 1,
                 batch_key: str = "train.batch_size", instance_key: str = "dataset.num_instance"):
        batch_size, num_instance = int(batch_size), int(num_instance)
        if num_instance < 1 or batch_size < num_instance or batch_size % num_instance:
            raise AutomlError(f"{batch_key}={batch_size} must be a positive multiple of {instance_key}={num_instance}")
        self.index_by_class: dict[int, list[int]] = defaultdict(list)
        for index, label in enumerate(labels):
            self.index_by_class[int(label)].append(index)
        self.classes = sorted(self.index_by_class)
        self.batch_size, self.k = batch_size, num_instance
        self.p = batch_size // num_instance
        if len(self.classes) < 2:
            raise AutomlError(f"P x K sampling needs at least 2 classes in the training set, found {len(self.classes)}")
        if len(self.classes) < self.p:
            # A searched batch size can exceed what a small dataset holds: take every class per batch
            # (a smaller effective batch) instead of failing the trial, and say so.
            logging.getLogger("automl.training").warning(
                "%s=%d with %s=%d needs %d classes per batch but the training set has %d; using batches of %d",
                batch_key, batch_size, instance_key, num_instance, self.p, len(self.classes),
                len(self.classes) * num_instance)
            self.p = len(self.classes)
            self.batch_size = self.p * num_instance
        self.seed, self.rank, self.world_size = int(seed), int(rank), max(1, int(world_size))
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _all_batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        groups: dict[int, list[list[int]]] = {}
        for label in self.classes:
            idxs = np.asarray(self.index_by_class[label])
            if len(idxs) < self.k:
                idxs = rng.choice(idxs, size=self.k, replace=True)
            idxs = rng.permutation(idxs)
            n = len(idxs) // self.k
            groups[label] = [idxs[i * self.k:(i + 1) * self.k].tolist() for i in range(n)]
        available = [label for label in self.classes if groups[label]]
        batches = []
        while len(available) >= self.p:
            chosen = rng.choice(len(available), size=self.p, replace=False)
            batch: list[int] = []
            for i in chosen:
                batch.extend(groups[available[i]].pop())
            batches.append(batch)
            available = [label for label in available if groups[label]]
        return batches

    def _batches(self) -> list[list[int]]:
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self._all_batches())
        return self._cache[1]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        per_rank = len(batches) // self.world_size  # equal counts keep DDP ranks in lock-step
        yield from batches[self.rank::self.world_size][:per_rank]

    def __len__(self) -> int:
        return len(self._batches()) // self.world_size
