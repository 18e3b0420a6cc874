"""Distributions: weighted choices follow their weights, log-scale parameters are log-uniform, and
every backend is reproducible by seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from _space_helpers import write_schema
from automl.space import compile_space, load_schema
from automl.space.optuna_adapter import sample_optuna
from automl.space.ray_adapter import sample_ray

N = 3000
ENUM = ["linear", "sqrt", "cosine", "none"]
WEIGHTS = [0.1, 0.1, 0.4, 0.4]   # TAO's cosmos-reason optm_decay_type


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    path = write_schema(tmp_path_factory.mktemp("stats"), {
        "decay": {"type": "categorical", "enum": ENUM, "option_weights": WEIGHTS, "default": "linear"},
        "odd": {"type": "categorical", "enum": ["a", "b", "c"], "option_weights": [1, 2, math.pi], "default": "a"},
        "lr": {"type": "float", "default": 3.5e-4, "minimum": 0.0, "maximum": 1.0, "math_cond": "> 0.0"},
        "iters": {"type": "int", "default": 10, "minimum": 1, "maximum": 10000},
    })
    return compile_space(load_schema(path), include=["decay", "odd", "lr", "iters"])


def _samples(space, backend, n=N, seed=0):
    if backend == "optuna":
        return sample_optuna(space, n, seed)
    if backend == "ray":
        return sample_ray(space, n, seed)
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


BACKENDS = ["numpy", "optuna", "ray"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_weighted_choices_match_weights(space, backend):
    configs = _samples(space, backend)
    for name, enum, weights in (("decay", ENUM, WEIGHTS), ("odd", ["a", "b", "c"], [1, 2, math.pi])):
        counts = [sum(c[name] == e for c in configs) for e in enum]
        expected = [N * w / sum(weights) for w in weights]
        p = stats.chisquare(counts, expected).pvalue
        assert p > 0.001, f"{backend} {name}: counts {counts} vs expected {expected} (p={p:.2g})"


@pytest.mark.parametrize("backend", BACKENDS)
def test_log_scale_is_log_uniform(space, backend):
    configs = _samples(space, backend, seed=1)
    lr = np.log([c["lr"] for c in configs])
    lo, hi = math.log(3.5e-6), math.log(3.5e-2)
    assert lr.min() >= lo - 1e-9 and lr.max() <= hi + 1e-9
    p = stats.kstest(lr, "uniform", args=(lo, hi - lo)).pvalue
    assert p > 0.001, f"{backend}: log(lr) is not uniform (KS p={p:.2g})"
    # a uniform sampler on [0, 1] (TAO) would put ~97% of learning rates above 0.035
    assert np.mean(np.array([c["lr"] for c in configs]) < 1e-3) > 0.3
    iters = np.array([c["iters"] for c in configs])
    assert iters.min() >= 1 and iters.max() <= 1000
    assert 0.4 < np.mean(iters < 32) < 0.6   # log-uniform over [1, 1001): half below ~31.6


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_output(space, backend):
    a = _samples(space, backend, n=50, seed=7)
    b = _samples(space, backend, n=50, seed=7)
    c = _samples(space, backend, n=50, seed=8)
    assert a == b
    assert a != c


def test_ray_weighted_choice_uses_native_choice_when_exact(space):
    from ray.tune.search.sample import Categorical, Function

    param_space = space.to_ray()
    assert isinstance(param_space["decay"], Categorical)           # 0.1/0.1/0.4/0.4 -> 10 entries
    assert sorted(param_space["decay"].categories) == sorted(["linear", "sqrt"] + ["cosine"] * 4 + ["none"] * 4)
    assert isinstance(param_space["odd"], Function) and "odd__u" in param_space   # pi is not a ratio
