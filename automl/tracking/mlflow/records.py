"""What the runs record, as plain metrics and tags: a search's description when it starts, a trial's
outcome, the search's summary and noise-aware evaluation when it ends, the champion's scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from automl.reporting import clean_float
from automl.tracking.mlflow.names import flatten
from automl.tracking.mlflow.view import SEARCH_TAG


def search_tags(info: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    tags: dict[str, Any] = {f"automl.{k}": info[k] for k in ("model", "algorithm", "budget", "backend", "seed",
                                                             "monitor", "mode") if info.get(k) is not None}
    tags.update({"automl.kind": "search", "automl.run_dir": str(run_dir),
                 "automl.command": info.get("command", ""), "mlflow.note.content": _search_note(info),
                 **run_source_tags(info.get("name") or run_dir.name)})
    return tags


def run_source_tags(search_name: str) -> dict[str, str]:
    """Tags of every run of a search (parent and trials): the UI's "Source" column, and the search's
    name the saved runs-table view filters on."""
    return {"mlflow.source.name": "automl run", "mlflow.source.type": "LOCAL", SEARCH_TAG: search_name}


def _search_note(info: dict[str, Any]) -> str:
    return (f"AutoML search **{info.get('name', '')}** of `{info.get('model', '')}` with "
            f"{info.get('algorithm', '')} ({info.get('backend', '')} backend), budget {info.get('budget', '')}, "
            f"optimising `{info.get('monitor', '')}` ({info.get('mode', '')}). Children are trials.")


def numbers(values: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The entries of ``values`` named in ``keys`` that are finite numbers (metrics MLflow can hold)."""
    return {k: values[k] for k in keys if k in values and clean_float(values[k]) is not None}


def outcome_tags(state: str, result: dict[str, Any], base_dir: Path, reason: str | None = None) -> dict[str, Any]:
    """A trial's or a training run's end: its state, why it stopped, and its checkpoint (a relative path
    is taken from ``base_dir``)."""
    tags: dict[str, Any] = {"automl.state": state}
    if reason or result.get("reason"):
        tags["automl.reason"] = reason or result.get("reason")
    checkpoint = result.get("best_checkpoint") or result.get("last_checkpoint")
    if checkpoint:
        tags["automl.checkpoint"] = str(base_dir / checkpoint)
    return tags


def summary_record(summary: dict[str, Any]) -> tuple[dict[str, float], dict[str, str], str]:
    """The parent run's final metrics, tags and status word from the summary ``--json`` prints."""
    scores = {f"search/{k}": v for k, v in summary.items() if clean_float(v) is not None and not isinstance(v, bool)}
    evaluation_scores, verdict_tags = _evaluation_record(summary.get("evaluation") or {})
    status = str(summary.get("status") or ("stopped" if summary.get("stopped_reason") else "finished")).lower()
    tags = {"automl.status": status, **verdict_tags}
    if summary.get("stopped_reason"):
        tags["automl.stopped_reason"] = summary["stopped_reason"]
    return {**scores, **evaluation_scores}, tags, status


def _evaluation_record(evaluation: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """The parent run's metrics and tags for the summary's noise-aware evaluation: baseline and winner
    means on its split, the seed noise, the gain, and the verdict (metrics and tags, not params: a
    resumed search judges again and params cannot change)."""
    values = {"evaluation/baseline_mean": (evaluation.get("baseline") or {}).get("mean"),
              "evaluation/best_mean": (evaluation.get("best") or {}).get("mean"),
              "evaluation/noise_std": evaluation.get("noise_std"), "evaluation/gain": evaluation.get("gain")}
    scores = {k: clean_float(v) for k, v in values.items() if clean_float(v) is not None}
    tags = {"automl.verdict": evaluation.get("verdict"), "automl.evaluation_split": evaluation.get("split"),
            "automl.evaluation_metric": evaluation.get("metric")}
    return scores, {k: str(v) for k, v in tags.items() if v is not None}


def champion_scores(evaluate_json: Path) -> dict[str, Any]:
    """The promoted model's ``evaluate.json`` as ``automl.champion.<name>`` values (none when it is missing)."""
    try:
        evaluation = json.loads(Path(evaluate_json).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    if not isinstance(evaluation, dict):
        return {}
    return {f"automl.champion.{k}": v for k, v in flatten(evaluation).items()
            if clean_float(v) is not None and not isinstance(v, bool)}
