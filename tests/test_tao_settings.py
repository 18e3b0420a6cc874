"""TAO's AutoML settings and TAO's own search selection: each setting a TAO user writes is honoured or
refused, ``--space tao`` searches exactly what TAO's AutoML searches, ``automl space show`` says which
parameters TAO searches, and ml_recog's space never puts one class in a batch. No training here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automl.cli import main
from automl.errors import AutomlError
from automl.plugins import get_trainer
from automl.search.controller import resolve_setup
from automl.space import load_schema
from automl.space.selection import tao_selection

TAO_MODELS = Path(__file__).resolve().parents[1].parent / "shared" / "tao-models"
TAO_TRAIN_SCHEMAS = {"ml_recog": "tao-train-metric-learning-recognition", "reid": "tao-train-reid",
                     "mae": "tao-train-mask-auto-encoder"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ml_recog_data")
    get_trainer("ml_recog").make_dataset(out, seed=0, classes=6, per_class=4, size=32)
    return out


def setup_for(tmp_path: Path, data: Path, spec_text: str = "", **kwargs):
    spec = tmp_path / "spec.yaml"
    spec.write_text("train:\n  num_epochs: 2\n" + spec_text)
    return resolve_setup(model="ml_recog", spec_file=str(spec), data=str(data), output=tmp_path / "runs", **kwargs)


def test_automl_hyperparameters_restricts_the_space_to_exactly_those_names(tmp_path, data):
    names = ["train.optim.trunk.base_lr", "train.optim.trunk.momentum", "dataset.re_prob"]
    setup = setup_for(tmp_path, data, f"automl_hyperparameters: [{', '.join(names)}]\n")
    assert sorted(setup.space.names) == sorted(names)
    # TAO's API writes the list as a string
    setup = setup_for(tmp_path, data, "automl:\n  automl_hyperparameters: \"['dataset.re_prob']\"\n")
    assert setup.space.names == ["dataset.re_prob"]
    with pytest.raises(AutomlError, match=r"automl_hyperparameters: 'train.optim.nope' is not a parameter of .*"
                                          r"ml_recog.train.schema.json \(did you mean"):
        setup_for(tmp_path, data, "automl_hyperparameters: [train.optim.nope]\n")


def test_automl_delete_intermediate_ckpt_decides_whether_trials_keep_checkpoints(tmp_path, data):
    assert setup_for(tmp_path, data, "automl_delete_intermediate_ckpt: false\n").keep_checkpoints is True
    assert setup_for(tmp_path, data, "automl_delete_intermediate_ckpt: true\n").keep_checkpoints is False
    assert setup_for(tmp_path, data).keep_checkpoints is False


def test_automl_enabled_false_and_unknown_settings_are_refused(tmp_path, data):
    spec = str(tmp_path / "spec.yaml")
    with pytest.raises(AutomlError, match=rf"^{spec}: automl_enabled: false: `automl run` searches; .*--automl off"):
        setup_for(tmp_path, data, "automl_enabled: false\n")
    assert setup_for(tmp_path, data, "automl_enabled: true\n").budget_trials == 10
    with pytest.raises(AutomlError, match=rf"^{spec}: automl_foo is not a TAO AutoML setting this project honours.*"
                                          r"allowed: automl_algorithm, "):
        setup_for(tmp_path, data, "automl_foo: 1\n")
    with pytest.raises(AutomlError, match=r"--setting foo: unknown"):
        setup_for(tmp_path, data, settings={"foo": 1})
    # our own settings under TAO's prefix stay accepted
    assert setup_for(tmp_path, data, "automl:\n  pruner: none\n").algorithm_settings["pruner"] == "none"


@pytest.mark.skipif(not TAO_MODELS.is_dir(), reason=f"TAO schemas not found at {TAO_MODELS} (../shared is absent)")
@pytest.mark.parametrize("model", sorted(TAO_TRAIN_SCHEMAS))
def test_recorded_tao_selection_is_taos_own(model):
    tao = json.loads((TAO_MODELS / TAO_TRAIN_SCHEMAS[model] / "schemas" / "train.schema.json").read_text())
    assert tao_selection(load_schema(get_trainer(model).schema_path())) == tao["automl_default_parameters"]


def test_space_tao_searches_exactly_taos_selection(tmp_path, data):
    tao = tao_selection(load_schema(get_trainer("ml_recog").schema_path()))
    setup = setup_for(tmp_path, data, space_source="tao")
    assert sorted(setup.space.names) == sorted(tao)
    assert "train.batch_size" not in setup.space.names and "train.optim.warmup_iters" in setup.space.names
    with pytest.raises(AutomlError, match="--space tao and automl_hyperparameters both choose"):
        setup_for(tmp_path, data, "automl_hyperparameters: [dataset.re_prob]\n", space_source="tao")
    with pytest.raises(AutomlError, match=r"--space 'taos': allowed: project, tao"):
        setup_for(tmp_path, data, space_source="taos")


def test_space_show_marks_what_tao_searches(capsys):
    main(["space", "show", "--model", "ml_recog", "--json"])
    shown = json.loads(capsys.readouterr().out)
    tao = tao_selection(load_schema(get_trainer("ml_recog").schema_path()))
    searched = {row["name"]: row["tao_searches"] for row in shown["params"]}
    assert searched["train.batch_size"] is False and searched["dataset.num_instance"] is False
    assert searched["train.optim.trunk.base_lr"] is True
    assert set(shown["tao_only"]) == {"train.optim.gamma", "train.optim.warmup_factor", "train.optim.warmup_iters",
                                      "train.optim.embedder.bias_lr_factor", "train.optim.trunk.bias_lr_factor",
                                      "train.optim.embedder.momentum", "train.optim.trunk.momentum",
                                      "train.optim.embedder.weight_decay_bias", "train.optim.trunk.weight_decay_bias"}
    assert set(shown["tao_only"]) | {n for n, yes in searched.items() if yes} == set(tao)
    main(["space", "show", "--model", "ml_recog"])
    table = capsys.readouterr().out
    assert "TAO searches this" in table and "--space tao" in table


def test_ml_recog_space_keeps_at_least_two_classes_per_batch():
    from automl.space import compile_space

    space = compile_space(load_schema(get_trainer("ml_recog").schema_path()))
    for seed in range(200):
        config = space.sample(seed)
        batch, k = config["train.batch_size"], config["dataset.num_instance"]
        assert batch % k == 0 and batch // k >= 2, config


def test_search_with_one_class_per_batch_is_refused(tmp_path, data):
    """TAO's template: batch_size 4 with num_instance 4. Plain training warns; a search refuses."""
    with pytest.raises(AutomlError, match=r"train.batch_size=4 must be > dataset.num_instance=4"):
        setup_for(tmp_path, data, "  batch_size: 4\ndataset:\n  num_instance: 4\n",
                  overrides=["train.batch_size=4", "dataset.num_instance=4"])
    # pinning only the batch size leaves num_instance the values that keep 2 classes or more
    setup = setup_for(tmp_path, data, overrides=["train.batch_size=4"])
    param = next(p for p in setup.space.params if p.name == "dataset.num_instance")
    values = {setup.space.sample(seed)["dataset.num_instance"] for seed in range(50)}
    assert values == {2} and param.low >= 2
