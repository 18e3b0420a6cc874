"""Every real TAO train schema compiles on both backends, and 1,000 samples from each obey every
constraint, checked by an independent reader of the raw JSON (tests/_space_helpers.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from _space_helpers import REPO, EdgeSource, raw_violations, schema_params
from automl.space import SearchSpace, compile_space, load_schema, validate_spec
from automl.space.selection import unsearchable
from automl.space.optuna_adapter import sample_optuna
from automl.space.ray_adapter import sample_ray

N = 1000


@pytest.mark.parametrize("path", schema_params())
def test_default_space_samples_obey_schema(path):
    schema = load_schema(path)
    space = compile_space(schema)
    assert space.names, f"{path.name}: nothing searched"
    # something is skipped, and every skipped leaf has a reason
    assert all(reason for _, reason in space.skipped)
    assert set(space.names).isdisjoint(n for n, _ in space.skipped)
    assert set(space.names) | {n for n, _ in space.skipped} == set(schema.leaves)

    baseline = space.defaults()
    assert space.check(baseline) == []
    assert raw_violations(path, baseline) == []

    for backend, configs in (("optuna", sample_optuna(space, N, seed=0)), ("ray", sample_ray(space, N, seed=0))):
        assert len(configs) == N
        for config in configs:
            assert list(config) == space.names, backend
            problems = raw_violations(path, config)
            assert problems == [], f"{backend}: {problems[:3]}"
            assert space.check(config) == [], backend
        # the samples are not degenerate: every parameter with more than one value varies
        for name in space.names:
            seen = {json.dumps(c[name]) for c in configs}
            assert len(seen) > 1, f"{backend}: {name} never varies"


@pytest.mark.parametrize("path", schema_params())
def test_every_searchable_leaf_compiles_and_samples(path):
    """Beyond the defaults: include every leaf that can be searched (lists, kernels, subsets, ...)."""
    schema = load_schema(path)
    include = [n for n, leaf in schema.leaves.items() if unsearchable(leaf) is None]
    space = compile_space(schema, include=include)
    assert sorted(space.names) == sorted(include)
    configs = [space.defaults()] + sample_optuna(space, 100, seed=1) + sample_ray(space, 100, seed=1)
    configs += [space.draw(EdgeSource(top=False)), space.draw(EdgeSource(top=True))]
    for config in configs:
        assert raw_violations(path, config) == []
        assert space.check(config) == []


@pytest.mark.parametrize("path", schema_params())
def test_space_json_round_trip(path):
    space = compile_space(load_schema(path))
    text = json.dumps(space.to_json())
    again = SearchSpace.from_json(json.loads(text))
    assert again.names == space.names
    assert json.dumps(again.to_json()) == text
    assert again.sample(np.random.default_rng(3)) == space.sample(np.random.default_rng(3))
    assert again.defaults() == space.defaults()


@pytest.mark.parametrize("path", schema_params())
def test_schema_default_spec_validates(path):
    schema = load_schema(path)
    assert validate_spec(schema.default_spec(), schema, path.name) == []
    templates = sorted(path.parent.parent.glob("references/spec_template_train*.yaml"))
    for template in templates:  # the tao-models spec templates a TAO user starts from
        import yaml

        assert validate_spec(yaml.safe_load(template.read_text()), schema, template.name) == []


@pytest.mark.parametrize("path", sorted((REPO / "search_spaces").glob("*.train.schema.json")), ids=lambda p: p.name)
def test_project_schemas_compile_and_sample(path):
    """Our own trainers' schemas (search_spaces/) go through the same compiler and checks."""
    schema = load_schema(path)
    space = compile_space(schema)
    assert space.names
    configs = [space.defaults()] + sample_optuna(space, 200, seed=0) + sample_ray(space, 200, seed=0)
    configs += [space.draw(EdgeSource(top=False)), space.draw(EdgeSource(top=True))]
    for config in configs:
        assert space.check(config) == []
        assert raw_violations(path, config) == []
    assert validate_spec(schema.default_spec(), schema, path.name) == []


@pytest.mark.parametrize("path", schema_params())
def test_known_configs_replay_on_both_backends(path):
    """optuna_params / to_ray_config reproduce a given config: the baseline (trial 0) and warm starts
    are enqueued as Optuna params (helpers included) and given to Ray as points to evaluate."""
    import optuna

    from automl.space.ray_adapter import _native
    from automl.space.sources import UnitSource

    schema = load_schema(path)
    include = [n for n, leaf in schema.leaves.items() if unsearchable(leaf) is None]
    space = compile_space(schema, include=include)
    configs = [space.defaults()] + sample_ray(space, 20, seed=2)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for config in configs:
        study.enqueue_trial(space.optuna_params(config))
        assert _close(space.suggest(study.ask()), config)
        ray_config = space.to_ray_config(config)
        assert space.from_ray(ray_config) == config
        # the sample_from entries decode the helper units back into the same values
        ctx = {**space.context, **config}
        for p in space.params:
            if _native(space, p) is None:
                assert _close(p.draw(UnitSource(ray_config), ctx), config[p.name]), p.name


def _close(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b
