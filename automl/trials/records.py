"""The records every layer shares: the resolved search (:class:`SearchSetup`), one trial's outcome
(:class:`TrialRecord`) and its state (:class:`TrialState`), and the live-progress sink
(:class:`Progress`).

They sit below both the controller (:mod:`automl.search`) and the backends (:mod:`automl.backends`),
which import them from here and never each other.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from automl.plugins import Monitor


class TrialState(StrEnum):
    """A trial's state, as written to ``result.json`` and ``summary.csv`` (a str: compares and
    serialises as its value)."""

    COMPLETE = "complete"
    PRUNED = "pruned"
    #: stopped at a rung with a checkpoint, waiting for promotion (multi-fidelity searches)
    PAUSED = "paused"
    FAILED = "failed"
    #: no result.json yet: under way, or interrupted by a crash
    RUNNING = "running"


@dataclass
class SearchSetup:
    """Everything about a search, resolved and validated; a backend reads it and never the CLI.

    Paths are absolute. ``base_spec`` already has the user's ``-e`` spec, dataset keys and
    ``key=value`` overrides applied; a trial's spec is ``apply_config(base_spec, trial_config)``.
    """

    #: the search's name (folder name under ``--output``)
    name: str
    #: ``<output>/<name>``; the run folder layout is in ARCHITECTURE.md
    run_dir: Path
    #: registered trainer plugin name (``automl.plugins.get_trainer``); trial processes load it by name
    model: str
    #: the spec every trial starts from (nested dict, TAO layout); also saved as ``base_spec.yaml``
    base_spec: dict[str, Any]
    #: the compiled :class:`automl.space.SearchSpace`; ``space.defaults()`` is trial 0 (the baseline)
    space: Any
    #: ``run_dir / "space.json"`` (``SearchSpace.from_json`` rebuilds the space in another process)
    space_path: Path
    #: canonical algorithm name, one of :data:`automl.trials.algorithms.ALGORITHMS`
    algorithm: str = "tpe"
    #: algorithm settings: ``min_epochs`` (first rung), ``reduction_factor`` (eta), ``population``,
    #: ``perturbation_interval`` (pbt), ``pruner`` ("median"/"none") ...; backends ignore unknown keys
    algorithm_settings: dict[str, Any] = field(default_factory=dict)
    #: number of trials (distinct configurations; trial 0, the baseline, included). Promotions and
    #: re-evaluations do not count.
    budget_trials: int = 10
    #: stop starting trials after this many seconds of search wall time (None: no limit)
    time_budget_s: float | None = None
    #: number of trials that run at the same time (== len(slots))
    workers: int = 1
    #: one entry per concurrent trial: ``{"index": i, "gpus": [..]}`` (empty list: CPU slot); the trial
    #: runs with ``CUDA_VISIBLE_DEVICES=",".join(gpus)`` (``""`` for CPU slots), see ``automl.trials.slots``
    slots: list[dict[str, Any]] = field(default_factory=list)
    gpus: list[int] = field(default_factory=list)
    gpus_per_trial: int = 1
    trials_per_gpu: int = 1
    seed: int | None = None
    #: what to optimise; one entry for single-objective searches, several for nsga2. The first is the
    #: metric used for pruning, promotion and ``best``.
    objectives: list[Monitor] = field(default_factory=list)
    #: the epochs of a full trial (``train.num_epochs`` of the base spec): the learning-rate schedule
    #: horizon and the last rung
    max_epochs: int = 1
    #: study storage URL; None means the backend's default inside ``run_dir``
    storage: str | None = None
    #: kill a trial after this many seconds (None: no limit); it is recorded failed with reason "timeout"
    trial_timeout_s: float | None = None
    #: stop the search after this many failed trials in a row (0: never)
    max_consecutive_failures: int = 5
    #: configurations (dotted names) enqueued after the baseline, e.g. from ``--warm-start``
    warm_start_configs: list[dict[str, Any]] = field(default_factory=list)
    #: continue an earlier search in ``run_dir`` (completed trials kept, interrupted ones rerun)
    resume: bool = False
    #: keep every trial's checkpoints (default: losing trials' checkpoints are deleted at the end)
    keep_checkpoints: bool = False
    #: the command line that started the search, for ``search.json``
    command: str = ""
    #: the dataset folder (``--data`` or the generated demo data); None when the spec names the data.
    #: Promotion evaluates on the plugin's ``evaluation_keys(data_dir)`` (e.g. unknown classes) if any.
    data_dir: Path | None = None

    @property
    def monitor(self) -> Monitor:
        return self.objectives[0]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def to_json(self) -> dict[str, Any]:
        """The JSON-able header written to ``search.json`` (no spec, no space: those have own files)."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("space", "base_spec")}
        out["run_dir"] = str(self.run_dir)
        out["space_path"] = str(self.space_path)
        out["data_dir"] = str(self.data_dir) if self.data_dir else None
        out["objectives"] = [{"metric": m.metric, "mode": m.mode} for m in self.objectives]
        return out


@dataclass
class TrialRecord:
    """One trial's outcome, as the backend saw it (also the content of ``result.json`` plus params).

    ``value`` is the trial's best value of the first objective over its epochs (by ``best_epoch``), not
    its last; ``values`` holds every objective at that epoch for multi-objective searches.
    ``best_checkpoint`` is the checkpoint written at ``best_epoch`` (the one promotion copies).
    ``epochs_run`` counts the epochs this trial actually trained across all its runs (a promoted trial
    resumed from a checkpoint only adds the extra epochs). ``gpu_seconds`` is duration times the number
    of GPUs of the slot(s) it ran on.
    """

    number: int
    state: TrialState
    params: dict[str, Any] = field(default_factory=dict)
    value: float | None = None
    values: list[float] | None = None
    best_epoch: int | None = None
    best_checkpoint: str | None = None
    last_checkpoint: str | None = None
    epochs_run: int = 0
    #: epochs the trial reached (its last rung for multi-fidelity searches)
    epochs_done: int = 0
    reason: str | None = None
    duration_s: float = 0.0
    gpu_seconds: float = 0.0
    trial_dir: str | None = None
    #: free-form extras (pbt lineage, re-evaluation values, slot, ...)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("value",):
            if isinstance(out[key], float) and not math.isfinite(out[key]):
                out[key] = None
        return out

    def __post_init__(self) -> None:
        self.state = TrialState(self.state)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrialRecord:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


class Progress:
    """Live progress sink (the CLI's rich display implements it; the base class ignores everything).

    Called from the driver process only, possibly from several threads (one per slot).
    """

    def start(self, setup: SearchSetup, done: list[TrialRecord]) -> None:
        """The search starts; ``done`` are trials finished before a resume."""

    def trial_started(self, number: int, params: dict[str, Any], slot: int) -> None:
        """Trial ``number`` starts (or restarts/resumes) on slot index ``slot``."""

    def trial_epoch(self, number: int, epoch: int, value: float | None) -> None:
        """Trial ``number`` reported its epoch ``epoch`` (0-based) with this monitor value."""

    def trial_finished(self, record: TrialRecord) -> None:
        """Trial ``record.number`` ended (complete, pruned, paused or failed)."""

    def message(self, text: str) -> None:
        """A one-line note for the user (a stop reason, a promotion)."""

    def stop(self) -> None:
        """The search ended; release the display."""


