"""Retrieval metrics equal a brute-force nearest-neighbour computation on hand-built cases."""

import numpy as np
import pytest
import torch

from trainers.ml_recog import metrics as metrics_module
from trainers.ml_recog.metrics import NAMES, UNMATCHED, retrieval_metrics, self_match_pairs, topk_matches


def brute_force(query, q_labels, ref, r_labels, per_class, excluded=None, topk=1):
    """Rank every reference by L2 distance of normalised embeddings, leaving out the (query, reference)
    pairs in ``excluded``; average over queries whose class has references (per class first if per_class)."""
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    r = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    excluded = np.zeros((len(q), len(r)), dtype=bool) if excluded is None else excluded
    rows = {"p1": [], "ap": [], "rp": [], "rr": [], "topk": []}
    used_labels = []
    for i in range(len(q)):
        keep = np.flatnonzero(~excluded[i])
        relevant = r_labels[keep] == q_labels[i]
        n_rel = int(relevant.sum())
        if n_rel == 0:
            continue
        order = np.argsort(np.linalg.norm(r[keep] - q[i], axis=1), kind="stable")
        hits = relevant[order]
        rows["p1"].append(float(hits[0]))
        ranks = np.flatnonzero(hits) + 1
        rows["ap"].append(float(np.mean(np.arange(1, n_rel + 1) / ranks)))
        rows["rp"].append(float(hits[:n_rel].mean()))
        rows["rr"].append(1.0 / ranks[0])
        rows["topk"].append(float(hits[:topk].any()))
        used_labels.append(q_labels[i])
    used_labels = np.array(used_labels)

    def avg(values):
        values = np.array(values)
        if not per_class:
            return float(values.mean())
        return float(np.mean([values[used_labels == c].mean() for c in np.unique(used_labels)]))

    return {"val Precision at Rank 1": avg(rows["p1"]), "val Mean Average Precision": avg(rows["ap"]),
            "val r-Precision": avg(rows["rp"]), "val Mean Reciprocal Rank": avg(rows["rr"]),
            f"val top{topk}_accuracy": avg(rows["topk"]), UNMATCHED: float(len(q) - len(used_labels))}


def pml_metrics(query, q_labels, ref, r_labels, per_class, same_set=False):
    """pytorch-metric-learning's AccuracyCalculator over the full ranking (k=None), self match removed
    by pml itself when the query set is the reference set."""
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    calc = AccuracyCalculator(include=tuple(NAMES), avg_of_avgs=per_class, k=None,
                              knn_func=CustomKNN(LpDistance(normalize_embeddings=True)))
    q, ql = torch.tensor(query, dtype=torch.float64), torch.tensor(q_labels)
    if same_set:
        acc = calc.get_accuracy(q, ql)
    else:
        acc = calc.get_accuracy(q, ql, torch.tensor(ref, dtype=torch.float64), torch.tensor(r_labels))
    return {NAMES[k]: float(v) for k, v in acc.items()}


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
    expected.pop("val top1_accuracy")
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
                                per_class=per_class, topk=3)
        expected = brute_force(query, q_labels, ref, r_labels, per_class, topk=3)
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, abs=1e-6), (key, per_class)


def test_no_matchable_query_gives_zero_and_counts_them():
    got = retrieval_metrics(torch.randn(3, 4), torch.tensor([7, 7, 8]), torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 4]))
    assert got["val Precision at Rank 1"] == 0.0 and got[UNMATCHED] == 3.0


def test_topk_matches_orders_by_distance():
    query, _, ref, _ = hand_built()
    dist, idx = topk_matches(torch.tensor(query[:1]), torch.tensor(ref), 3)
    assert idx[0].tolist() == [0, 1, 2] and dist[0].tolist() == sorted(dist[0].tolist())


# -- self matches (query and reference sets share files) ---------------------------------------------

def test_issue_reproducer_same_set_does_not_count_the_self_match():
    points = torch.tensor([[1, 0], [.9, .1], [0, 1], [.1, .9]])
    labels = torch.tensor([0, 1, 0, 1])
    paths = ["a/0.png", "b/1.png", "a/2.png", "b/3.png"]
    got = retrieval_metrics(points, labels, points, labels, self_matches=self_match_pairs(paths, paths))
    # each point's nearest other point has the other class
    assert got["val Precision at Rank 1"] == 0.0
    assert got == pytest.approx(pml_metrics(points.numpy(), labels.numpy(), None, None, False, same_set=True)
                                | {UNMATCHED: 0.0})


def test_self_match_pairs_find_shared_files_by_real_path(tmp_path):
    (tmp_path / "x.png").write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(tmp_path / "x.png")
    pairs = self_match_pairs([tmp_path / "x.png", tmp_path / "other.png", tmp_path / "link.png"],
                             [tmp_path / "y.png", tmp_path / "x.png"])
    assert pairs.tolist() == [[0, 1], [2, 1]]


@pytest.mark.parametrize("per_class", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_identical_sets_match_pml_with_ref_includes_query(seed, per_class):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, 6))
    labels = rng.integers(0, 5, 60)
    points = centres[labels] + rng.normal(scale=1.2, size=(60, 6))
    paths = [f"img{i}.png" for i in range(60)]
    t, tl = torch.tensor(points), torch.tensor(labels)
    got = retrieval_metrics(t, tl, t, tl, per_class=per_class, self_matches=self_match_pairs(paths, paths))
    expected = pml_metrics(points, labels, None, None, per_class, same_set=True)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
    assert got["val Precision at Rank 1"] < 1.0  # the self match made it exactly 1.0


def test_overlapping_sets_match_brute_force_without_the_shared_files():
    rng = np.random.default_rng(3)
    points = rng.normal(size=(50, 4))
    labels = rng.integers(0, 4, 50)
    paths = [f"img{i}.png" for i in range(50)]
    q_idx, r_idx = np.arange(0, 30), np.arange(20, 50)  # files 20..29 are in both sets
    pairs = self_match_pairs([paths[i] for i in q_idx], [paths[j] for j in r_idx])
    assert len(pairs) == 10
    excluded = q_idx[:, None] == r_idx[None, :]
    for per_class in (False, True):
        got = retrieval_metrics(torch.tensor(points[q_idx]), torch.tensor(labels[q_idx]), torch.tensor(points[r_idx]),
                                torch.tensor(labels[r_idx]), per_class=per_class, self_matches=pairs, topk=2)
        expected = brute_force(points[q_idx], labels[q_idx], points[r_idx], labels[r_idx], per_class, excluded, topk=2)
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, abs=1e-9), (key, per_class)


def test_a_query_whose_only_same_class_reference_is_itself_is_unmatched():
    points = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])
    labels = torch.tensor([0, 1, 1])
    got = retrieval_metrics(points, labels, points, labels, self_matches=self_match_pairs("abc", "abc"))
    assert got[UNMATCHED] == 1.0 and got["val Precision at Rank 1"] == 1.0


# -- full ranking (no top-1000 cut) -------------------------------------------------------------------

def test_map_is_over_the_full_ranking_and_chunking_does_not_change_it(monkeypatch):
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(1500, 3))
    r_labels = rng.integers(0, 2, 1500)
    query = rng.normal(size=(20, 3))
    q_labels = rng.integers(0, 2, 20)
    expected = pml_metrics(query, q_labels, ref, r_labels, per_class=False)
    got = retrieval_metrics(torch.tensor(query), torch.tensor(q_labels), torch.tensor(ref), torch.tensor(r_labels))
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
    # with unstructured data AP is about the class share (~0.5); cut at 1000 of 1500 it was ~0.35
    assert got["val Mean Average Precision"] > 0.45
    monkeypatch.setattr(metrics_module, "CHUNK_ENTRIES", 1500 * 3)  # 3 queries a chunk
    chunked = retrieval_metrics(torch.tensor(query), torch.tensor(q_labels), torch.tensor(ref), torch.tensor(r_labels))
    assert chunked == pytest.approx(got, abs=1e-12)


def test_top1_accuracy_is_precision_at_1_under_both_averages():
    query, q_labels, ref, r_labels = hand_built()
    for per_class in (False, True):
        got = retrieval_metrics(torch.tensor(query), torch.tensor(q_labels), torch.tensor(ref), torch.tensor(r_labels),
                                per_class=per_class, topk=1)
        assert got["val top1_accuracy"] == got["val Precision at Rank 1"]


def test_topk_matches_never_return_the_query_itself():
    points = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    _, idx = topk_matches(points, points, 1, self_match_pairs("abc", "abc"))
    assert idx[:, 0].tolist() == [1, 0, 1]
