"""Warmup + multi-step schedule: TAO's values at epoch boundaries, horizon independent of max_epochs."""

import pytest
import torch

from automl.training.schedule import warmup_multistep, warmup_multistep_factor


def test_factor_matches_tao_warmup_multistep_at_epoch_boundaries():
    # TAO/reid-strong-baseline: alpha = e / warmup_iters; factor = wf * (1 - alpha) + alpha before warmup ends
    f = lambda e: warmup_multistep_factor(e, [40, 70], 0.1, 0.01, 10, "linear")  # noqa: E731
    assert f(0) == pytest.approx(0.01)
    assert f(5) == pytest.approx(0.01 * 0.5 + 0.5)
    assert f(10) == pytest.approx(1.0)
    assert f(39) == pytest.approx(1.0)
    assert f(40) == pytest.approx(0.1)
    assert f(70) == pytest.approx(0.01)
    assert warmup_multistep_factor(3, [40], 0.1, 0.2, 10, "constant") == pytest.approx(0.2)
    assert warmup_multistep_factor(3, [], 0.1, 0.2, 0, "linear") == pytest.approx(1.0)


def test_per_step_scheduler_follows_fractional_epochs():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = warmup_multistep(opt, steps_per_epoch=4, steps=[2], gamma=0.5, warmup_factor=0.0, warmup_iters=1)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.0, 0.25, 0.5, 0.75])
    assert lrs[4:8] == pytest.approx([1.0] * 4)
    assert lrs[8:12] == pytest.approx([0.5] * 4)
    # a scheduler built from a lambda closure stores no callable: weights-only checkpoint safe
    assert sched.state_dict()["lr_lambdas"] == [None]
