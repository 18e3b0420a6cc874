"""TAO's learning-rate schedule: linear (or constant) warmup, then multi-step decay.

TAO (reid/ml_recog ``WarmupMultiStepLR``) steps its scheduler once per epoch, so ``warmup_iters`` and
``steps`` are epochs. We evaluate the same function at the fractional epoch of every optimizer step
(``global_step / steps_per_epoch``): identical at epoch boundaries, smooth in between, and the horizon
is fixed by the spec (``train.num_epochs`` and ``train.optim.steps``), never by the ``max_epochs`` a
search rung stops at — a paused and resumed trial follows the very same curve.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import torch


def warmup_multistep_factor(epoch: float, steps: Sequence[int], gamma: float, warmup_factor: float,
                            warmup_iters: int, warmup_method: str = "linear") -> float:
    """The multiplier of the base learning rate at (fractional) ``epoch``."""
    warm = 1.0
    if warmup_iters and epoch < warmup_iters:
        if warmup_method == "constant":
            warm = warmup_factor
        else:
            alpha = epoch / warmup_iters
            warm = warmup_factor * (1 - alpha) + alpha
    return warm * gamma ** bisect_right(sorted(int(s) for s in steps), int(epoch))


def warmup_multistep(optimizer: torch.optim.Optimizer, steps_per_epoch: int, steps: Sequence[int], gamma: float,
                     warmup_factor: float, warmup_iters: int, warmup_method: str = "linear") -> torch.optim.lr_scheduler.LambdaLR:
    """A per-optimizer-step :class:`~torch.optim.lr_scheduler.LambdaLR` (use ``interval: "step"``).

    The lambda is a closure, so the scheduler's ``state_dict`` stores ``None`` for it and stays
    weights-only loadable.
    """
    steps = [int(s) for s in steps]
    per_epoch = max(1, int(steps_per_epoch))

    def factor(step: int) -> float:
        return warmup_multistep_factor(step / per_epoch, steps, gamma, warmup_factor, warmup_iters, warmup_method)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
