"""The champion in MLflow's model registry: one version per promotion, found again by its run key before
one is created, and the alias moved onto it."""

from __future__ import annotations

from typing import Any

from automl.tracking.mlflow.names import CHAMPION, SEARCH
from automl.tracking.store import TrackingState


def register_champion(client: Any, state: TrackingState, entry: dict[str, Any], run_id: str) -> None:
    """Apply one ``register`` operation (see :meth:`automl.tracking.mlflow.MlflowTracker.promoted`)."""
    run = client.get_run(run_id)
    artifact_path = entry.get("artifact_path", "model")
    if entry.get("model_dir"):
        client.log_artifacts(run_id, entry["model_dir"], artifact_path)
    name = entry["name"]
    _ensure_registered_model(client, name, entry.get("description"))
    unique = f"{state.search_uid}/{entry['key']}/{entry.get('promotion', 0)}"
    version = None
    for mv in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'"):
        if mv.tags.get("automl.run_key") == unique:
            version = mv.version
    if version is None:
        tags = {k: str(v) for k, v in entry.get("tags", {}).items()}
        tags["automl.run_key"] = unique
        tags["automl.parent_run_id"] = state.run_id(SEARCH) or ""
        mv = client.create_model_version(name, source=f"{run.info.artifact_uri}/{artifact_path}",
                                         run_id=run_id, tags=tags, description=entry.get("description"))
        version = mv.version
    alias = entry.get("alias", CHAMPION)
    client.set_registered_model_alias(name, alias, version)
    state.registered = {"name": name, "version": str(version), "alias": alias}
    state.save()


def _ensure_registered_model(client: Any, name: str, description: str | None) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description=description)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
