"""Retrieval metrics equal a brute-force nearest-neighbour computation on hand-built cases."""

import numpy as np
import pytest
import torch

from trainers.ml_recog.metrics import UNMATCHED, retrieval_metrics, topk_matches


def brute_force(query, q_labels, ref, r_labels, per_class):
    """Rank every reference by L2 distance of normalised embeddings; average over queries whose class
    has references (per class first if per_class)."""
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    r = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    rows = {"p1": [], "ap": [], "rp": [], "rr": []}
    used_labels = []
    for i in range(len(q)):
        relevant = r_labels == q_labels[i]
        n_rel = int(relevant.sum())
        if n_rel == 0:
            continue
        order = np.argsort(np.linalg.norm(r - q[i], axis=1), kind="stable")
        hits = relevant[order]
        rows["p1"].append(float(hits[0]))
        ranks = np.flatnonzero(hits) + 1
        rows["ap"].append(float(np.mean(np.arange(1, n_rel + 1) / ranks)))
        rows["rp"].append(float(hits[:n_rel].mean()))
        rows["rr"].append(1.0 / ranks[0])
        used_labels.append(q_labels[i])
    used_labels = np.array(used_labels)

    def avg(values):
        values = np.array(values)
        if not per_class:
            return float(values.mean())
        return float(np.mean([values[used_labels == c].mean() for c in np.unique(used_labels)]))

    return {"val Precision at Rank 1": avg(rows["p1"]), "val Mean Average Precision": avg(rows["ap"]),
            "val r-Precision": avg(rows["rp"]), "val Mean Reciprocal Rank": avg(rows["rr"]),
            UNMATCHED: float(len(q) - len(used_labels))}


def hand_built():
    # 2-D embeddings on the unit circle at chosen angles: distances (and so rankings) are easy to read
    def at(*degrees):
        rad = np.deg2rad(degrees)
        return np.stack([np.cos(rad), np.sin(rad)], axis=1) * np.linspace(1, 3, len(degrees))[:, None]

    ref = at(0, 10, 20, 90, 100, 180, 185, 270)
    r_labels = np.array([0, 0, 1, 1, 1, 2, 2, 0])
    query = at(4, 17, 96, 130, 182, 260, 300)  # no distance ties
    q_labels = np.array([0, 0, 1, 2, 2, 0, 3])  # the last query's class has no reference
    return query, q_labels, ref, r_labels


@pytest.mark.parametrize("per_class", [False, True])
def test_hand_built_case_matches_brute_force(per_class):
    query, q_labels, ref, r_labels = hand_built()
    got = retrieval_metrics(torch.tensor(query), torch.tensor(q_labels), torch.tensor(ref), torch.tensor(r_labels),
                            per_class=per_class)
    expected = brute_force(query, q_labels, ref, r_labels, per_class)
    assert got[UNMATCHED] == 1.0  # reported, not silently dropped
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key  # pml computes MRR in float32


def test_hand_computed_values():
    query, q_labels, ref, r_labels = hand_built()
    got = retrieval_metrics(torch.tensor(query), torch.tensor(q_labels), torch.tensor(ref), torch.tensor(r_labels))
    # nearest references: q0(4deg)->0 deg class 0 hit; q1(17)->20 class 1 miss; q2(96)->100 hit;
    # q3(130)->100 class 1 miss; q4(182)->180/185 hit; q5(260)->270 class 0 hit
    assert got["val Precision at Rank 1"] == pytest.approx(4 / 6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_cases_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(40, 8))
    r_labels = rng.integers(0, 6, 40)
    query = rng.normal(size=(25, 8))
    q_labels = rng.integers(0, 7, 25)  # class 6 never has references
    for per_class in (False, True):
        got = retrieval_metrics(torch.tensor(query), torch.tensor(q_labels), torch.tensor(ref), torch.tensor(r_labels),
                                per_class=per_class)
        expected = brute_force(query, q_labels, ref, r_labels, per_class)
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, abs=1e-6), (key, per_class)


def test_no_matchable_query_gives_zero_and_counts_them():
    got = retrieval_metrics(torch.randn(3, 4), torch.tensor([7, 7, 8]), torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 4]))
    assert got["val Precision at Rank 1"] == 0.0 and got[UNMATCHED] == 3.0


def test_topk_matches_orders_by_distance():
    query, _, ref, _ = hand_built()
    dist, idx = topk_matches(torch.tensor(query[:1]), torch.tensor(ref), 3)
    assert idx[0].tolist() == [0, 1, 2] and dist[0].tolist() == sorted(dist[0].tolist())
