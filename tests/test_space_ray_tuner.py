"""The compiled ``param_space`` inside a real Ray Tune run (a local Ray instance; slow)."""

from __future__ import annotations

import pytest

from _space_helpers import raw_violations, write_schema
from automl.space import SearchSpace, compile_space, load_schema

pytestmark = pytest.mark.slow


def test_tuner_resolves_param_space(tmp_path):
    ray = pytest.importorskip("ray")
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    path = write_schema(tmp_path, {
        "train": {"type": "collection", "properties": {
            "num_epochs": {"type": "int", "default": 12, "minimum": 2, "maximum": 30},
            "lr": {"type": "float", "default": 3.5e-4, "minimum": 0.0, "maximum": 1.0, "math_cond": "> 0.0"},
            "decay": {"type": "categorical", "enum": ["step", "cosine"], "option_weights": [0.2, 0.8], "default": "step"},
            "lr_steps": {"type": "list_2", "default": [4, 8]}}},
        "dataset": {"type": "collection", "properties": {
            "num_instances": {"type": "int", "default": 4, "minimum": 2, "maximum": 8},
            "batch_size": {"type": "int", "default": 16, "minimum": 8, "maximum": 64,
                           "depends_on": "dataset.num_instances", "math_cond": "/ depends_on"}}},
    })
    space = compile_space(load_schema(path), include=["train", "dataset"])
    stored = space.to_json()

    def trainable(config):
        # a worker rebuilds the space from JSON, as the controller's workers do
        worker_space = SearchSpace.from_json(stored)
        values = worker_space.from_ray(config)
        tune.report({"problems": len(worker_space.check(values)), **{k: str(v) for k, v in values.items()}})

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(
            trainable, param_space=space.to_ray(),
            tune_config=tune.TuneConfig(num_samples=12, search_alg=BasicVariantGenerator(random_state=0)),
            run_config=tune.RunConfig(storage_path=str(tmp_path / "ray"), name="space", verbose=0),
        )
        results = tuner.fit()
    finally:
        ray.shutdown()
    assert len(results) == 12 and not results.errors
    for result in results:
        assert result.metrics["problems"] == 0
        config = space.from_ray(result.config)
        assert raw_violations(path, config) == []
