"""A seeded model of "config -> learning curve" over the toy trainer's space, for simulated clusters.

``benchmarks/scale.py`` runs thousands of trials through the real controller without training anything:
each trial's curve and epoch durations come from :class:`CurveModel`, and a virtual clock advances by
them (:mod:`automl.backends.optuna.simulated`); on the Ray backend, where there is no virtual clock,
:class:`SimulatedTrainer` walks the same curve in (scaled) real time (:mod:`automl.backends.ray.simulated`).
The epoch bookkeeping both share (where a resumed stretch starts, where it stops, the placeholder
checkpoint a paused trial resumes from) is here too. The model is the toy trainer's analytic ``quality``
(known optimum) with what real curves have and the toy lacks: a per-config offset (two configs that
look alike do not train alike), a learning speed that depends on the learning rate (so an early rung
ranks configs imperfectly, as it does in practice), per-epoch noise, and epoch durations that grow with
the width and vary per config (mixed-length trials). Everything is a pure function of (seed, config,
epoch): a trial resumed at a rung continues the same curve, and two runs with one seed see the same
cluster.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from automl.testing.toy import quality
from automl.trials import rundir


def _rng(seed: int, config: Mapping[str, Any], *salt: Any) -> random.Random:
    key = repr((seed, sorted((k, repr(v)) for k, v in config.items()), salt)).encode()
    return random.Random(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little"))


class CurveModel:
    """Curves and durations of simulated trials.

    ``epoch_s``: mean seconds of one epoch at width 4 (a width-8 model takes twice as long);
    ``noise``: std of the per-epoch measurement noise; ``offset``: std of the per-config offset.
    """

    def __init__(self, seed: int = 0, epoch_s: float = 60.0, noise: float = 0.01, offset: float = 0.03):
        self.seed, self.epoch_s, self.noise, self.offset = seed, epoch_s, noise, offset

    def true_value(self, config: Mapping[str, Any]) -> float:
        """The noise-free score a config reaches at the end of its full schedule."""
        toy = {k.removeprefix("toy."): v for k, v in config.items()}
        q = quality(float(toy.get("lr", 0.01)), int(toy.get("width", 3)), str(toy.get("activation", "relu")),
                    float(toy.get("momentum", 0.9)))
        return q + _rng(self.seed, config, "offset").gauss(0.0, self.offset)

    def value(self, config: Mapping[str, Any], epoch: int, num_epochs: int) -> float:
        """The measured score after ``epoch`` (0-based) of ``num_epochs``."""
        lr = float(config.get("toy.lr", 0.01))
        # faster learners (higher lr) rise earlier: low rungs favour them, not only the best configs
        speed = 2.0 + 1.5 * max(-1.0, min(1.0, (math.log10(max(lr, 1e-12)) + 2.0) / 2.0))
        curve = 1.0 - math.exp(-speed * (epoch + 1) / max(num_epochs, 1))
        return self.true_value(config) * curve + _rng(self.seed, config, "epoch", epoch).gauss(0.0, self.noise)

    def epoch_seconds(self, config: Mapping[str, Any]) -> float:
        width = int(config.get("toy.width", 4))
        return self.epoch_s * width / 4.0 * _rng(self.seed, config, "speed").lognormvariate(0.0, 0.3)


def first_epoch(spec: Mapping[str, Any]) -> int:
    """The first epoch a simulated stretch runs: 0, or the one after its resume checkpoint's."""
    resume = (spec.get("train") or {}).get("resume_training_checkpoint_path") or ""
    return json.loads(Path(resume).read_text())["epoch"] + 1 if resume else 0


def stop_epoch(num_epochs: int, max_epochs: int | None) -> int:
    """One past the last epoch a stretch runs (``max_epochs``: a rung's budget in total epochs)."""
    return min(num_epochs, int(max_epochs)) if max_epochs else num_epochs


def write_checkpoint(trial_dir: str | Path, epoch: int) -> Path:
    """A simulated trial's ``checkpoints/last.ckpt``: the epoch it ended, which :func:`first_epoch` reads."""
    ckpt = rundir.checkpoint(trial_dir)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.write_text(json.dumps({"epoch": int(epoch), "simulated": True}))
    return ckpt


class SimulatedTrainer:
    """SIMULATION ONLY: a trainer plugin's ``train`` that walks a :class:`CurveModel` curve in real time.

    Each epoch sleeps ``epoch_seconds(config) * time_scale`` (the stand-in for training), then reports
    the model's value through the trial's reporter, as a trainer does; ``checkpoints``: write
    :func:`write_checkpoint` every epoch and hand it to the reporter (what pausing schedulers resume
    from). Stops when the reporter asks (``should_stop``)."""

    def __init__(self, model: CurveModel, config: Mapping[str, Any], metric: str, time_scale: float,
                 checkpoints: bool = False):
        self.model, self.config, self.metric = model, dict(config), metric
        self.time_scale, self.checkpoints = float(time_scale), checkpoints

    def train(self, spec: Mapping[str, Any], results_dir: Path, reporter: Any = None,
              max_epochs: int | None = None) -> dict[str, Any]:
        num_epochs = int(spec["train"]["num_epochs"])
        first = first_epoch(spec)
        pause = self.model.epoch_seconds(self.config) * self.time_scale
        ran, ckpt = 0, None
        for epoch in range(first, stop_epoch(num_epochs, max_epochs)):
            time.sleep(pause)
            value = self.model.value(self.config, epoch, num_epochs)
            ckpt = write_checkpoint(results_dir, epoch) if self.checkpoints else None
            ran += 1
            if reporter is not None:
                reporter.report(epoch, {self.metric: value}, ckpt)
                if reporter.should_stop():
                    break
        return {"epochs_run": ran, "last_checkpoint": str(ckpt) if ckpt else None, "simulated": True}
