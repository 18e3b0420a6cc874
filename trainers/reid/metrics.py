"""Market-1501 evaluation protocol (CMC and mAP) and k-reciprocal re-ranking.

Protocol, per query:
  * gallery images with the query's person id *and* camera are removed (the same person seen by the
    same camera is too easy a match);
  * junk gallery images (person id -1) are removed; distractors (0000) stay as negatives;
  * a query whose id is junk or distractor, or that has no true match left, is skipped (it cannot be
    scored) and counted in ``num_skipped``; when no query at all can be scored the metrics do not
    exist and :func:`require_scorable` raises (as torchreid does) rather than report 0.0.
CMC rank-k is the fraction of scored queries with a true match in the first k; AP is the mean of the
precision at each true match's rank.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from automl.errors import AutomlError
from trainers.reid.market1501 import DISTRACTOR_PID, JUNK_PID


def pairwise_distances(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances, ``(num_query, num_gallery)``."""
    q = np.asarray(query, dtype=np.float64)
    g = np.asarray(gallery, dtype=np.float64)
    dist = (q * q).sum(1, keepdims=True) + (g * g).sum(1)[None, :] - 2.0 * q @ g.T
    return np.maximum(dist, 0.0)


def scorable_queries(q_pids, g_pids, q_camids, g_camids) -> np.ndarray:
    """Which queries the protocol can score: a real person id with a gallery image of that id taken by
    another camera. Depends on names only, so it is checked before any embedding is computed."""
    cameras: dict[int, set[int]] = {}
    for pid, cam in zip(np.asarray(g_pids).tolist(), np.asarray(g_camids).tolist()):
        cameras.setdefault(int(pid), set()).add(int(cam))
    return np.array([pid not in (JUNK_PID, DISTRACTOR_PID) and bool(cameras.get(pid, set()) - {cam})
                     for pid, cam in zip(np.asarray(q_pids).tolist(), np.asarray(q_camids).tolist())], dtype=bool)


def require_scorable(q_pids, g_pids, q_camids, g_camids, query_key: str = "query", gallery_key: str = "gallery") -> None:
    """One-line error when no query can be scored (every metric would be undefined, not 0.0)."""
    if not scorable_queries(q_pids, g_pids, q_camids, g_camids).any():
        raise AutomlError(f"no query can be scored: none of the {len(q_pids)} images in {query_key} has an image of "
                          f"the same person id from another camera in {gallery_key} (junk -1 and distractor 0000 "
                          "queries never count); Market-1501 metrics need query identities in the gallery")


def evaluate_ranking(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 50,
) -> dict:
    """CMC curve (length ``max_rank``), mAP and per-query results under the Market-1501 protocol."""
    distmat = np.asarray(distmat, dtype=np.float64)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    require_scorable(q_pids, g_pids, q_camids, g_camids)
    num_q, num_g = distmat.shape
    # stable sort: ties keep gallery order, so results do not depend on the platform's sort
    order = np.argsort(distmat, axis=1, kind="stable")
    cmc_sum = np.zeros(max_rank)
    aps, scored, skipped = [], [], 0
    for i in range(num_q):
        if q_pids[i] in (JUNK_PID, DISTRACTOR_PID):
            skipped += 1
            continue
        ranked = order[i]
        keep = ~(((g_pids[ranked] == q_pids[i]) & (g_camids[ranked] == q_camids[i])) | (g_pids[ranked] == JUNK_PID))
        hits = (g_pids[ranked][keep] == q_pids[i]).astype(np.float64)
        if not hits.any():
            skipped += 1
            continue
        first = int(np.argmax(hits))
        cmc = np.zeros(max_rank)
        if first < max_rank:
            cmc[first:] = 1.0
        cmc_sum += cmc
        positions = np.flatnonzero(hits)
        precisions = np.arange(1, len(positions) + 1) / (positions + 1.0)
        aps.append(float(precisions.mean()))
        scored.append(i)
    n = len(aps)
    return {
        "cmc": cmc_sum / n,
        "mAP": float(np.mean(aps)),
        "num_scored": n,
        "num_skipped": skipped,
        "ap_per_query": dict(zip(scored, aps)),
    }


def summary(result: dict) -> dict[str, float]:
    """The metrics a trainer reports: ``cmc_rank_1``/``5``/``10`` and ``mAP``."""
    cmc = result["cmc"]
    pick = lambda k: float(cmc[min(k, len(cmc)) - 1]) if len(cmc) else 0.0  # noqa: E731
    return {"cmc_rank_1": pick(1), "cmc_rank_5": pick(5), "cmc_rank_10": pick(10), "mAP": result["mAP"]}


def re_ranking(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, k1: int = 20, k2: int = 6,
               lambda_value: float = 0.3) -> np.ndarray:
    """k-reciprocal re-ranking (Zhong et al., CVPR 2017), returning a new query x gallery distance.

    Inputs are *squared* Euclidean distances (:func:`pairwise_distances`). The reference code (the
    authors' published ``re_ranking``) squares the distances it is given first; this version takes them
    squared already, so it equals the reference given Euclidean distances (the tests check that).
    Plain Euclidean inputs here would rank differently. The final distance blends the original distance
    with the Jaccard distance between k-reciprocal neighbour sets expanded by their own
    ``k1/2``-reciprocal neighbours and smoothed over the ``k2`` nearest (local query expansion).
    No library ships this (pytorch-metric-learning does not), hence our own compact version.
    """
    num_q = q_g.shape[0]
    original = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float64)
    original = original / np.maximum(original.max(axis=0, keepdims=True), 1e-12)
    original = original.T
    n = original.shape[0]
    rank = np.argsort(original, axis=1, kind="stable")
    V = np.zeros((n, n), dtype=np.float64)
    k1 = max(1, min(k1, n - 1))
    half = max(1, int(np.around(k1 / 2.0)))

    def reciprocal(i: int, k: int) -> np.ndarray:
        forward = rank[i, : k + 1]
        backward = rank[forward, : k + 1]
        return forward[np.any(backward == i, axis=1)]

    for i in range(n):
        expansion = reciprocal(i, k1)
        extended = expansion
        for cand in expansion:
            cand_set = reciprocal(cand, half)
            if len(np.intersect1d(cand_set, expansion)) > 2.0 / 3.0 * len(cand_set):
                extended = np.append(extended, cand_set)
        extended = np.unique(extended)
        weight = np.exp(-original[i, extended])
        V[i, extended] = weight / weight.sum()
    if k2 > 1:
        V = np.stack([V[rank[i, :k2]].mean(axis=0) for i in range(n)])
    inv_index = [np.flatnonzero(V[:, j]) for j in range(n)]
    jaccard = np.zeros((num_q, n), dtype=np.float64)
    for i in range(num_q):
        temp_min = np.zeros(n)
        nonzero = np.flatnonzero(V[i])
        for j in nonzero:
            rows = inv_index[j]
            temp_min[rows] += np.minimum(V[i, j], V[rows, j])
        jaccard[i] = 1.0 - temp_min / (2.0 - temp_min)
    final = jaccard * (1 - lambda_value) + original[:num_q] * lambda_value
    return final[:, num_q:]


def retrieval_metrics(q_feat: torch.Tensor, g_feat: torch.Tensor, q_pids, g_pids, q_cams, g_cams,
                      spec: Mapping[str, Any]) -> tuple[dict, np.ndarray]:
    """Market-1501 metrics on L2-normalised embeddings (squared Euclidean distances), with optional
    k-reciprocal re-ranking of those distances."""
    q = torch.nn.functional.normalize(q_feat.float(), dim=1).cpu().numpy()
    g = torch.nn.functional.normalize(g_feat.float(), dim=1).cpu().numpy()
    rr = spec.get("re_ranking", {}) or {}
    distmat = pairwise_distances(q, g)
    if rr.get("re_ranking", False):
        distmat = re_ranking(distmat, pairwise_distances(q, q), pairwise_distances(g, g), int(rr.get("k1", 20)),
                             int(rr.get("k2", 6)), float(rr.get("lambda_value", 0.3)))
    max_rank = max(10, int(rr.get("max_rank", 10) or 10))
    result = evaluate_ranking(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=min(max_rank, distmat.shape[1]))
    return result, distmat
