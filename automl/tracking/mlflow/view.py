"""How the MLflow UI opens on a search: the experiment marked as model training (MLflow 3 opens an
experiment of unknown kind as a GenAI "Traces" overview) and a saved view of its runs table that the
printed address names: this search's runs (parent and trials), in one open group, oldest first.

The saved view is MLflow's own "share view" mechanism: an experiment tag
``mlflow.sharedViewState.<key>`` holding the table's state as JSON, opened by ``?viewStateShareKey=<key>``.
A shared view cannot expand a parent's nested children (MLflow drops ``runsExpanded`` from it), so the
view groups the runs by the search's tag instead: a group opens expanded, listing every run of it.
"""

from __future__ import annotations

import json
from typing import Any

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
#: the tag every run of one search carries (parent and trials), what the saved view filters on
SEARCH_TAG = "automl.search"


def experiment_tags(search_name: str, share_key: str) -> dict[str, str]:
    view: dict[str, Any] = {
        "searchFilter": f"tags.`{SEARCH_TAG}` = '{search_name}'",
        "orderByKey": "attributes.start_time", "orderByAsc": True,
        "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": SEARCH_TAG}]},
    }
    return {EXPERIMENT_KIND_TAG: MODEL_TRAINING, SHARED_VIEW_PREFIX + share_key: json.dumps(view)}


def runs_table_url(base: str, experiment_id: str | None, share_key: str | None = None) -> str:
    """The runs table (model-training mode) of the experiment; with ``share_key``, the search's view."""
    base = base.rstrip("/")
    if not experiment_id:
        return base
    query = "workflowType=machine_learning"
    if share_key:
        query = f"viewStateShareKey={share_key}&{query}"
    return f"{base}/#/experiments/{experiment_id}/runs?{query}"


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    """A run's page in model-training mode (without the parameter MLflow 3 shows it in GenAI mode)."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"
