"""Retrieval metrics (TAO's names, pytorch-metric-learning's definitions) on L2-normalised embeddings,
ranking every reference exactly (brute force, no top-k cut).

Definitions, per query that has at least one reference of its class ("relevant" references):
  * Precision at Rank 1: the nearest reference has the query's class (1 or 0);
  * Mean Average Precision: the mean, over every relevant reference, of the precision at its rank in
    the *full* ranking (not mAP@k);
  * r-Precision: the fraction of relevant references among the first R, R = number of relevant ones;
  * Mean Reciprocal Rank: 1 / rank of the first relevant reference;
  * top-k accuracy (``topk``): a relevant reference is among the k nearest (k=1: Precision at Rank 1).
Every metric is averaged over the queries that have a relevant reference, per class first with
``per_class`` (TAO's ``report_accuracy_per_class``). Queries whose class has no reference cannot be
matched; they are counted in ``val queries without reference`` and left out of the averages (as
``AccuracyCalculator`` does), never dropped silently.

An image that is both a query and a reference (same file: query and reference sets are one folder or
overlap) is not its own match: that reference is removed from the query's ranking and from its
relevant count (``self_match_pairs``).

Why not ``AccuracyCalculator.get_accuracy`` itself: it ranks all references of all queries at once
(queries x references indices in memory for the full ranking) and only knows the case "the reference
set starts with the query set" as a self match. The tests check this module against it (and against a
numpy brute force) on every case it covers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

# query rows per chunk x references: bounds the memory of one chunk's sort (~30 bytes an entry)
CHUNK_ENTRIES = 1 << 22

NAMES = {
    "precision_at_1": "val Precision at Rank 1",
    "mean_average_precision": "val Mean Average Precision",
    "r_precision": "val r-Precision",
    "mean_reciprocal_rank": "val Mean Reciprocal Rank",
}
UNMATCHED = "val queries without reference"


def self_match_pairs(query_paths: Sequence[str | Path], reference_paths: Sequence[str | Path]) -> torch.Tensor:
    """``(n, 2)`` index pairs ``(query i, reference j)`` naming the same file (by real path)."""
    where: dict[str, list[int]] = {}
    for j, path in enumerate(reference_paths):
        where.setdefault(os.path.realpath(path), []).append(j)
    pairs = [(i, j) for i, path in enumerate(query_paths) for j in where.get(os.path.realpath(path), ())]
    return torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)


def _normalised(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float().cpu(), dim=1)


def _chunk_scores(dist: torch.Tensor, same: torch.Tensor, topk: int) -> dict[str, torch.Tensor]:
    """Per-query scores of one chunk from its distances and same-class mask (excluded entries: dist inf,
    same False)."""
    order = torch.argsort(dist, dim=1, stable=True)  # stable: ties keep reference order
    hits = same.gather(1, order)
    relevant = same.sum(1)
    ranks = torch.arange(1, dist.shape[1] + 1, dtype=torch.float64)
    precision_at_hits = hits.cumsum(1).double() * hits / ranks
    denominator = relevant.clamp(min=1).double()
    first = hits.double().argmax(1).double()
    return {
        "relevant": relevant,
        "precision_at_1": hits[:, 0].double(),
        "mean_average_precision": precision_at_hits.sum(1) / denominator,
        "r_precision": (hits & (ranks[None, :] <= relevant[:, None])).sum(1).double() / denominator,
        "mean_reciprocal_rank": torch.where(relevant > 0, 1.0 / (first + 1.0), 0.0),
        "topk": hits[:, :topk].any(1).double(),
    }


def per_query_scores(query: torch.Tensor, query_labels: torch.Tensor, reference: torch.Tensor,
                     reference_labels: torch.Tensor, self_matches: torch.Tensor | None = None,
                     topk: int = 1) -> dict[str, torch.Tensor]:
    """Every query's scores over the full ranking of the references, computed in chunks of queries."""
    q, r = _normalised(query), _normalised(reference)
    q_labels, r_labels = query_labels.long().cpu(), reference_labels.long().cpu()
    if len(r) == 0:
        return {"relevant": torch.zeros(len(q), dtype=torch.long)}
    pairs = self_matches if self_matches is not None else torch.zeros((0, 2), dtype=torch.long)
    rows = max(1, CHUNK_ENTRIES // max(1, len(r)))
    chunks = []
    for start in range(0, len(q), rows):
        stop = min(start + rows, len(q))
        dist = torch.cdist(q[start:stop], r)
        same = q_labels[start:stop, None] == r_labels[None, :]
        inside = (pairs[:, 0] >= start) & (pairs[:, 0] < stop)
        qi, rj = pairs[inside, 0] - start, pairs[inside, 1]
        dist[qi, rj] = float("inf")
        same[qi, rj] = False
        chunks.append(_chunk_scores(dist, same, max(1, int(topk))))
    return {key: torch.cat([c[key] for c in chunks]) for key in chunks[0]} if chunks else {}


def _average(values: torch.Tensor, labels: torch.Tensor, per_class: bool) -> float:
    if not per_class:
        return float(values.mean())
    return float(torch.stack([values[labels == c].mean() for c in torch.unique(labels)]).mean())


def retrieval_metrics(query: torch.Tensor, query_labels: torch.Tensor, reference: torch.Tensor,
                      reference_labels: torch.Tensor, *, per_class: bool = False, prefix_names: bool = True,
                      self_matches: torch.Tensor | None = None, topk: int | None = None) -> dict[str, float]:
    """The metrics of the module docstring. ``self_matches``: ``self_match_pairs`` of the two sets.
    ``topk`` adds ``top{topk}_accuracy``."""
    scores = per_query_scores(query, query_labels, reference, reference_labels, self_matches, topk or 1)
    out = {name: 0.0 for name in NAMES.values()}
    if topk:
        out[f"val top{topk}_accuracy"] = 0.0
    known = scores["relevant"] > 0 if scores else torch.zeros(0, dtype=torch.bool)  # no query: no scores
    out[UNMATCHED] = float((~known).sum())
    if known.any():
        labels = query_labels.long().cpu()[known]
        for key, name in NAMES.items():
            out[name] = _average(scores[key][known], labels, per_class)
        if topk:
            out[f"val top{topk}_accuracy"] = _average(scores["topk"][known], labels, per_class)
    if not prefix_names:
        out = {k.removeprefix("val "): v for k, v in out.items()}
    return out


def topk_matches(query: torch.Tensor, reference: torch.Tensor, k: int,
                 self_matches: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(distances, indices)`` of the ``k`` nearest references per query (L2 on normalised embeddings);
    a query's own file (``self_matches``) is never one of them."""
    dist = torch.cdist(_normalised(query), _normalised(reference))
    if self_matches is not None and len(self_matches):
        dist[self_matches[:, 0], self_matches[:, 1]] = float("inf")
    k = min(int(k), len(reference))
    values, indices = torch.topk(dist, k, dim=1, largest=False)
    return values, indices
