"""Retrieval metrics with pytorch-metric-learning's ``AccuracyCalculator`` (TAO's tool), on
L2-normalised embeddings with exact (brute-force) nearest neighbours.

Metric names are TAO's. Queries whose class has no reference image cannot be matched; they are
counted in ``val queries without reference`` and left out of the averages (as
``AccuracyCalculator`` does), never dropped silently.
"""

from __future__ import annotations

import torch

MAX_K = 1000  # mAP/MRR are computed over the top min(MAX_K, #references) neighbours

NAMES = {
    "precision_at_1": "val Precision at Rank 1",
    "mean_average_precision": "val Mean Average Precision",
    "r_precision": "val r-Precision",
    "mean_reciprocal_rank": "val Mean Reciprocal Rank",
}
UNMATCHED = "val queries without reference"


def retrieval_metrics(query: torch.Tensor, query_labels: torch.Tensor, reference: torch.Tensor,
                      reference_labels: torch.Tensor, *, per_class: bool = False, prefix_names: bool = True) -> dict[str, float]:
    """``per_class=True`` averages per class first (TAO's ``report_accuracy_per_class``)."""
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    query, reference = query.float().cpu(), reference.float().cpu()
    query_labels, reference_labels = query_labels.long().cpu(), reference_labels.long().cpu()
    known = torch.isin(query_labels, torch.unique(reference_labels))
    out = {name: 0.0 for name in NAMES.values()}
    out[UNMATCHED] = float((~known).sum())
    if known.any():
        calc = AccuracyCalculator(include=tuple(NAMES), avg_of_avgs=per_class, k=min(MAX_K, len(reference)),
                                  knn_func=CustomKNN(LpDistance(normalize_embeddings=True)))
        acc = calc.get_accuracy(query[known], query_labels[known], reference, reference_labels, ref_includes_query=False)
        for key, name in NAMES.items():
            out[name] = float(acc[key])
    if not prefix_names:
        out = {k.removeprefix("val "): v for k, v in out.items()}
    return out


def topk_matches(query: torch.Tensor, reference: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(distances, indices)`` of the ``k`` nearest references per query (L2 on normalised embeddings)."""
    q = torch.nn.functional.normalize(query.float(), dim=1)
    r = torch.nn.functional.normalize(reference.float(), dim=1)
    dist = torch.cdist(q, r)
    k = min(int(k), len(reference))
    values, indices = torch.topk(dist, k, dim=1, largest=False)
    return values, indices
