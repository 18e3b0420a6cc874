"""The promoted model in MLflow: an MLflow 3 logged model of the trial's run (so the runs table's
"Models" column and the run page show it, with its signature), registered as one version per
promotion, found again by its run key before one is created.

Who gets the alias ``champion``: the new version only when it beats the current champion on the same
evaluation (metric and split, recorded as ``automl.eval_*`` tags on every version); otherwise it gets
``challenger`` and the user is told. A forced promotion (``--force-champion``), a first champion, or a
champion registered before evaluations were recorded take ``champion`` at once. The decision is kept on
the version (``automl.alias``), so a replay (``automl sync``) does not decide again.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from automl.reporting import clean_float
from automl.tracking.mlflow.names import CHAMPION, SEARCH
from automl.tracking.store import TrackingState, is_remote
from automl.trials.outcome import loss

CHALLENGER = "challenger"
EVAL_TAGS = ("automl.eval_metric", "automl.eval_split", "automl.eval_mode", "automl.eval_value")


def register_champion(client: Any, state: TrackingState, entry: dict[str, Any], run_id: str,
                      experiment_id: str) -> None:
    """Apply one ``register`` operation (see :meth:`automl.tracking.mlflow.MlflowTracker.promoted`)."""
    name = entry["name"]
    _ensure_registered_model(client, name, entry.get("description"))
    unique = f"{state.search_uid}/{entry['key']}/{entry.get('promotion', 0)}"
    version = next((mv for mv in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
                    if mv.tags.get("automl.run_key") == unique), None)
    if version is None:
        tags = {k: str(v) for k, v in entry.get("tags", {}).items()}
        tags["automl.run_key"] = unique
        tags["automl.parent_run_id"] = state.run_id(SEARCH) or ""
        if entry.get("model_dir"):
            model_id = _logged_model(client, experiment_id, run_id, entry, unique).model_id
            source = f"models:/{model_id}"
        else:  # no MLflow flavour: the version points at the promoted files
            model_id, source = None, f"{client.get_run(run_id).info.artifact_uri}/{entry.get('artifact_path')}"
        with _registry_resolves_here(state.tracking_uri):
            version = client.create_model_version(name, source=source, run_id=run_id, tags=tags,
                                                  description=entry.get("description"), model_id=model_id)
    alias = version.tags.get("automl.alias")
    if alias is None:
        alias, why = choose_alias(client, name, version.tags, bool(entry.get("force")))
        client.set_model_version_tag(name, version.version, "automl.alias", alias)
        client.set_registered_model_alias(name, alias, version.version)
        if alias == CHALLENGER:
            print(f"MLflow registry: {name} version {version.version} registered as '{CHALLENGER}', "
                  f"'{CHAMPION}' stays: {why} (--force-champion makes it champion)", file=sys.stderr, flush=True)
        state.registered = {"name": name, "version": str(version.version), "alias": alias, "why": why}
    else:  # a replay: the alias was given once; set it again only where nothing else took it since
        if _alias_version(client, name, alias) is None:
            client.set_registered_model_alias(name, alias, version.version)
        state.registered = {**state.registered, "name": name, "version": str(version.version), "alias": alias}
    state.save()


def evaluation_tags(metric: str | None, split: str | None, mode: str | None, value: Any) -> dict[str, str]:
    """The version's evaluation (what ``champion`` is decided on); none without a finite value."""
    if not metric or clean_float(value) is None:
        return {}
    return dict(zip(EVAL_TAGS, (str(metric), str(split or "validation"), str(mode or "max"), repr(float(value)))))


def choose_alias(client: Any, name: str, tags: dict[str, str], force: bool) -> tuple[str, str]:
    """``(alias, why)`` for a new version with ``tags`` (see the module docstring)."""
    if force:
        return CHAMPION, "forced (--force-champion)"
    current = _alias_version(client, name, CHAMPION)
    if current is None:
        return CHAMPION, "first champion"
    old, new = _evaluation(current.tags), _evaluation(tags)
    if old is None:
        return CHAMPION, f"version {current.version} has no recorded evaluation"
    if new is None or new[:3] != old[:3]:
        return CHALLENGER, (f"not evaluated like champion version {current.version} "
                            f"({old[0]} on {old[1]}): not comparable")
    metric, split, mode = new[:3]
    if loss(mode, new[3]) < loss(mode, old[3]):
        return CHAMPION, f"{metric} on {split} {new[3]:.4g} beats version {current.version}'s {old[3]:.4g}"
    return CHALLENGER, f"{metric} on {split} {new[3]:.4g} does not beat champion version {current.version}'s {old[3]:.4g}"


def _evaluation(tags: dict[str, str]) -> tuple[str, str, str, float] | None:
    if not all(k in tags for k in EVAL_TAGS) or clean_float(tags["automl.eval_value"]) is None:
        return None
    return (tags["automl.eval_metric"], tags["automl.eval_split"], tags["automl.eval_mode"],
            float(tags["automl.eval_value"]))


def _logged_model(client: Any, experiment_id: str, run_id: str, entry: dict[str, Any], unique: str) -> Any:
    """The saved MLflow model as a logged model of the trial's run (what ``mlflow.<flavor>.log_model``
    makes, from a model already saved offline); found again by its run key."""
    from mlflow.entities import LoggedModelOutput

    found = [m for m in client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{run_id}'")
             if m.tags.get("automl.run_key") == unique]
    if found and str(found[0].status).endswith("READY"):
        return found[0]
    model = found[0] if found else client.create_logged_model(
        experiment_id, name=entry.get("artifact_path", "model"), source_run_id=run_id,
        tags={"automl.run_key": unique, "automl.flavor": str(entry.get("tags", {}).get("automl.flavor", ""))})
    client.log_model_artifacts(model.model_id, entry["model_dir"])
    client.finalize_logged_model(model.model_id, "READY")
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
    return model


@contextlib.contextmanager
def _registry_resolves_here(tracking_uri: str):
    """MLflow's embedded registry store resolves ``models:/<id>`` through the global tracking URI, not
    its client's (a TODO in MLflow): point it here for the call (only the delivery thread talks to
    MLflow), then put back the global URI and the ``MLFLOW_TRACKING_URI`` it exports. A server resolves
    on its own side."""
    if is_remote(tracking_uri):
        yield
        return
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    exported = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with _use_tracking_uri(tracking_uri):
            yield
    finally:
        if exported is not None:
            os.environ["MLFLOW_TRACKING_URI"] = exported


def _alias_version(client: Any, name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _ensure_registered_model(client: Any, name: str, description: str | None) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description=description)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
