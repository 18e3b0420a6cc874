"""How the MLflow UI opens on a search: the experiment marked as model training (MLflow 3 opens an
experiment of unknown kind as a GenAI "Traces" overview) and a saved view of its runs table, this
search's parent with its trials expanded, that the printed address names.

The saved view is MLflow's own "share view" mechanism: an experiment tag
``mlflow.sharedViewState.<key>`` holding the table's state as JSON, opened by ``?viewStateShareKey=<key>``.
"""

from __future__ import annotations

import json
from typing import Any

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
#: the tag every run of one search carries (parent and trials), what the saved view filters on
SEARCH_TAG = "automl.search"


def experiment_tags(search_name: str, share_key: str, parent_run_id: str) -> dict[str, str]:
    view: dict[str, Any] = {
        "searchFilter": f"tags.`{SEARCH_TAG}` = '{search_name}'",
        "orderByKey": "attributes.start_time", "orderByAsc": False,
        "runsExpanded": {parent_run_id: True},
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
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
