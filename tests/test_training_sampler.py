"""P x K batch sampler: batch structure, rank partition, determinism, clear errors."""

from collections import Counter

import pytest

from automl.errors import AutomlError
from automl.training.sampler import PKBatchSampler

LABELS = [c for c in range(10) for _ in range(9)] + [10, 10]  # 10 classes x 9 images, one class with 2


def test_batches_hold_p_classes_with_k_images_each():
    sampler = PKBatchSampler(LABELS, batch_size=12, num_instance=4, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 0
    for batch in batches:
        counts = Counter(LABELS[i] for i in batch)
        assert len(batch) == 12
        assert len(counts) == 3 and set(counts.values()) == {4}


def test_small_class_is_sampled_with_replacement_and_images_are_not_repeated_otherwise():
    sampler = PKBatchSampler(LABELS, batch_size=8, num_instance=4, seed=0)
    seen = Counter(i for batch in sampler for i in batch)
    repeated = {i for i, n in seen.items() if n > 1}
    assert all(LABELS[i] == 10 for i in repeated)


def test_epochs_reshuffle_and_seed_reproduces():
    a = PKBatchSampler(LABELS, 8, 4, seed=1)
    b = PKBatchSampler(LABELS, 8, 4, seed=1)
    first = list(a)
    assert first == list(b)
    a.set_epoch(1)
    assert list(a) != first


def test_ranks_get_disjoint_equal_shares_of_the_same_epoch():
    ranks = [PKBatchSampler(LABELS, 8, 4, seed=5, rank=r, world_size=2) for r in range(2)]
    single = list(PKBatchSampler(LABELS, 8, 4, seed=5))
    parts = [list(s) for s in ranks]
    assert len(parts[0]) == len(parts[1]) == len(ranks[0]) == len(single) // 2
    flat = [tuple(b) for p in parts for b in p]
    assert len(set(flat)) == len(flat)
    assert set(flat) <= {tuple(b) for b in single}


def test_errors_name_the_spec_keys():
    with pytest.raises(AutomlError, match=r"train.batch_size=10 must be a positive multiple of dataset.num_instance=4"):
        PKBatchSampler(LABELS, 10, 4)
    with pytest.raises(AutomlError, match=r"at least 2 classes"):
        PKBatchSampler([0, 0, 0], 4, 2)


def test_batch_larger_than_the_classes_allow_is_clamped_with_a_warning(caplog):
    sampler = PKBatchSampler(LABELS, 40, 2)  # needs 20 classes, 11 exist
    assert sampler.batch_size == 22 and all(len(b) == 22 for b in sampler)
    assert "needs 20 classes per batch but the training set has 11" in caplog.text
