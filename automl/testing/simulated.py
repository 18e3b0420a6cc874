"""A seeded model of "config -> learning curve" over the toy trainer's space, for simulated clusters.

``benchmarks/scale.py`` runs thousands of trials through the real controller without training anything:
each trial's curve and epoch durations come from :class:`CurveModel`, and a virtual clock advances by
them (:mod:`automl.backends.optuna.simulated`). The model is the toy trainer's analytic ``quality``
(known optimum) with what real curves have and the toy lacks: a per-config offset (two configs that
look alike do not train alike), a learning speed that depends on the learning rate (so an early rung
ranks configs imperfectly, as it does in practice), per-epoch noise, and epoch durations that grow with
the width and vary per config (mixed-length trials). Everything is a pure function of (seed, config,
epoch): a trial resumed at a rung continues the same curve, and two runs with one seed see the same
cluster.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from typing import Any

from automl.testing.toy import quality


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
