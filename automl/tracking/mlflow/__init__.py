"""MLflow tracking: one parent run per search, one nested child run per trial, the champion registered.

The hooks (:class:`MlflowTracker`) turn events into small operations on *logical* runs ("search",
"trial/0003", "train"), append them to the spool and return; a background thread
(:class:`automl.tracking.spool.Delivery`) applies them through :class:`MlflowWriter`, which talks to
MLflow with explicit run ids only (``MlflowClient``; no fluent active-run state, since the controller is
multi-threaded).

Every operation can be applied twice without changing the result, which is what makes replay after an
outage or a crash safe:

* runs are found again by their ``automl.run_key`` tag before one is created;
* metrics carry the time of the epoch from ``metrics.jsonl``, and the store drops a metric whose key,
  step, timestamp and value it already has;
* params, tags, artifacts and aliases are overwritten with the same values;
* a model version is looked up by its run key before one is created.

One job a module: ``names`` (logical runs, statuses, MLflow's name rules), ``failures`` (what the
spool retries), ``writer`` (operations -> MLflow calls), ``registry`` (the promoted model's logged
model, version and alias: champion or challenger), ``model`` (the promoted model as an MLflow model),
``records`` (events -> metrics and tags), ``best`` (the best trial so far), ``view`` (what the UI opens
on), ``tracker`` (the search's hooks), ``training_run`` (``automl train``).
"""

from __future__ import annotations

from automl.tracking.mlflow.names import CHAMPION, SEARCH, TRAIN, run_key
from automl.tracking.mlflow.tracker import MlflowTracker
from automl.tracking.mlflow.training_run import TrainingRun, start_training_run, track_training_run
from automl.tracking.mlflow.writer import MlflowWriter

__all__ = ["CHAMPION", "SEARCH", "TRAIN", "MlflowTracker", "MlflowWriter", "TrainingRun", "run_key",
           "start_training_run", "track_training_run"]
