"""SIMULATION ONLY: the Ray backend's trials without training, for ``benchmarks/scale_ray.py``.

``RayBackend(simulation={...})`` (recorded in ``search.json`` as a backend option, never set by
``automl run``) runs the real Ray Tune search: the ``Tuner``, its searcher and scheduler (OptunaSearch
with the embedded backend's samplers, ASHA, ...), the driver callback, trial numbers and run folder.
What it changes:

* Ray is started privately with ``num_gpus=<slots>`` as a *logical* resource (no GPU is needed), and
  each trial requests ``{"GPU": 1}`` of it and no CPU, so as many trials run at once as there are slots
  whatever the host's cores (``cpus``: the CPUs Ray is told it has, default the host's, which bounds
  how many worker processes it starts at once);
* the trainable is the real one (:func:`automl.backends.ray.trial._trainable`: trial number, folder,
  ``TuneReporter`` -> ``metrics.jsonl`` + ``tune.report``, ``result.json`` through ``run_trial``), but
  it trains a :class:`automl.testing.simulated.SimulatedTrainer`: the seeded config -> curve model of
  the embedded simulation, one epoch every ``epoch_s x width/4 x time_scale`` seconds of real sleep (Ray
  has no virtual clock; ``time_scale`` 0.02 makes a 60-s epoch 1.2 s). Checkpoints are written every
  epoch only for the algorithms whose scheduler pauses or clones trials (hyperband, bohb, pbt).

After the search, ``simulation.json`` in the run folder holds what the driver callback saw: each trial
stretch's (start, end) in wall seconds, the most trials running at once, and the utilisation (busy
trial-seconds over slots x wall), over the whole search and from the first trial's start to the last new
trial's start (the embedded simulation's ``utilisation_while_budget_left``, without Ray's start-up).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automl.backends.ray.trial import _params_of, _trainable
from automl.testing.simulated import CurveModel, SimulatedTrainer
from automl.trials import rundir

SUMMARY = "simulation.json"

#: algorithms whose Tune scheduler restores trials from their checkpoints (pause/resume, exploit)
CHECKPOINTING = ("hyperband", "bohb", "pbt")


def simulated_trainable(config: dict[str, Any], job: dict[str, Any]) -> None:
    """The Tune trainable of a simulated search: ``_trainable`` with a :class:`SimulatedTrainer`."""
    settings = job["simulation"]
    model = CurveModel(seed=int(settings.get("seed", 0)), epoch_s=float(settings.get("epoch_s", 60.0)))
    trainer = SimulatedTrainer(model, _params_of(job["space"], config), job["objectives"][0][0],
                               time_scale=float(settings.get("time_scale", 0.02)),
                               checkpoints=bool(settings.get("checkpoints")))
    _trainable(config, job, trainer=trainer)


def job_settings(settings: dict[str, Any], algorithm: str) -> dict[str, Any]:
    """The simulation settings the trainable gets (checkpoints where the algorithm needs them)."""
    return {**settings, "checkpoints": algorithm in CHECKPOINTING}


def ray_init_options(settings: dict[str, Any], slots: int, host_cpus: int) -> dict[str, Any]:
    """``ray.init`` resources of the private simulated cluster: ``slots`` logical GPUs."""
    return {"num_gpus": int(slots), "num_cpus": int(settings.get("cpus") or host_cpus)}


def concurrency(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at once."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def summary(live: dict[str, Any], slots: int, fit_started: float, fit_ended: float) -> dict[str, Any]:
    """``simulation.json``: utilisation and concurrency from the driver callback's stretches."""
    intervals = sorted(live.get("intervals", []))
    busy = sum(e - s for s, e in intervals)
    wall = max(1e-9, fit_ended - fit_started)
    first = intervals[0][0] if intervals else fit_started
    last_new = live.get("last_new_start") or fit_ended
    window = max(1e-9, last_new - first)
    busy_before = sum(max(0.0, min(e, last_new) - max(s, first)) for s, e in intervals)
    return {"simulation": True, "backend": "ray", "slots": slots, "wall_s": round(wall, 2),
            "first_trial_started_after_s": round(first - fit_started, 2),
            "last_new_trial_started_after_s": round(last_new - fit_started, 2),
            "busy_trial_s": round(busy, 2), "stretches": len(intervals),
            "utilisation": round(busy / (slots * wall), 4),
            "utilisation_while_budget_left": round(busy_before / (slots * window), 4),
            "max_running_at_once": concurrency(intervals),
            "max_running_seen_by_driver": live.get("max_running", 0)}


def write_summary(live: dict[str, Any], run_dir: Path, slots: int, fit_started: float, fit_ended: float) -> None:
    rundir.write_json(Path(run_dir) / SUMMARY, summary(live, slots, fit_started, fit_ended))
