"""The dialect's rules on small synthetic schemas: constraints, dependencies, selection, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from _space_helpers import EdgeSource, raw_violations, write_schema
from automl.errors import SchemaError, SpecError
from automl.space import compile_space, load_schema, validate_spec
from automl.space.optuna_adapter import sample_optuna
from automl.space.ray_adapter import sample_ray


def all_backends(space, n=300, seed=0):
    """Configs from numpy, Optuna and Ray, plus both edges of every draw."""
    rng = np.random.default_rng(seed)
    return ([space.sample(rng) for _ in range(n)] + sample_optuna(space, n, seed) + sample_ray(space, n, seed)
            + [space.draw(EdgeSource(top=False)), space.draw(EdgeSource(top=True)), space.defaults()])


def values(configs, name):
    return [c[name] for c in configs]


def assert_valid(path, space, configs, fixed=None):
    for c in configs:
        assert space.check(c) == [], c
        assert raw_violations(path, c, fixed) == [], c


# ------------------------------------------------------------------------------------------------
# math_cond
# ------------------------------------------------------------------------------------------------
def test_power_of_k_includes_one_and_stays_in_range(tmp_path):
    path = write_schema(tmp_path, {"r": {"type": "int", "default": 8, "minimum": 1, "maximum": 256, "math_cond": "^ 2"}})
    space = compile_space(load_schema(path), include=["r"])
    configs = all_backends(space)
    seen = set(values(configs, "r"))
    assert seen == {1, 2, 4, 8, 16, 32, 64, 128, 256}
    assert_valid(path, space, configs)


def test_power_of_k_excludes_one_when_out_of_range(tmp_path):
    path = write_schema(tmp_path, {"r": {"type": "int", "default": 8, "minimum": 2, "maximum": 100, "math_cond": "^ 3"}})
    space = compile_space(load_schema(path), include=["r"])
    assert set(values(all_backends(space, 100), "r")) == {3, 9, 27, 81}


def test_multiple_of_k_never_exceeds_maximum(tmp_path):
    path = write_schema(tmp_path, {"h": {"type": "int", "default": 64, "minimum": 1, "maximum": 100, "math_cond": "/ 8"}})
    space = compile_space(load_schema(path), include=["h"])
    configs = all_backends(space)
    seen = set(values(configs, "h"))
    assert seen <= set(range(8, 97, 8)) and max(seen) == 96 and min(seen) == 8
    assert_valid(path, space, configs)


def test_constant_conditions_hold_exactly(tmp_path):
    path = write_schema(tmp_path, {
        "lr_mult": {"type": "float", "default": 0.1, "minimum": 0.0, "maximum": 1.0, "math_cond": "> 0.0"},
        "p": {"type": "float", "default": 0.5, "minimum": 0.0, "maximum": 2.0, "math_cond": "> 0.0 <= 1.0"},
        "refpoints": {"type": "int", "default": -1, "minimum": -2, "maximum": 3, "math_cond": "!= 0"},
        "n": {"type": "int", "default": 3, "minimum": 0, "maximum": 5, "math_cond": ">0"},
        "f": {"type": "float", "default": 1.0, "minimum": 0.5, "maximum": 10.0, "math_cond": ">= 1"},
    })
    space = compile_space(load_schema(path), include=["lr_mult", "p", "refpoints", "n", "f"])
    configs = all_backends(space)
    assert min(values(configs, "lr_mult")) > 0.0
    assert 0 < min(values(configs, "p")) and max(values(configs, "p")) <= 1.0
    assert 0 not in values(configs, "refpoints") and set(values(configs, "refpoints")) == {-2, -1, 1, 2, 3}
    assert min(values(configs, "n")) == 1
    assert min(values(configs, "f")) >= 1.0
    assert_valid(path, space, configs)
    assert space.check({"lr_mult": 0.0, "p": 1.5, "refpoints": 0, "n": 0, "f": 0.7}) != []
    assert len(space.check({"lr_mult": 0.0, "p": 1.5, "refpoints": 0, "n": 0, "f": 0.7})) >= 5


# ------------------------------------------------------------------------------------------------
# dependencies
# ------------------------------------------------------------------------------------------------
def _pk_schema(tmp_path):
    return write_schema(tmp_path, {"dataset": {"type": "collection", "properties": {
        "num_instances": {"type": "int", "default": 4, "minimum": 2, "maximum": 8, "parent_param": "TRUE"},
        "batch_size": {"type": "int", "default": 16, "minimum": 4, "maximum": 64,
                       "depends_on": "dataset.num_instances", "math_cond": "/ depends_on"},
    }}})


def test_multiple_of_parent_both_searched(tmp_path):
    path = _pk_schema(tmp_path)
    space = compile_space(load_schema(path), include=["dataset.num_instances", "dataset.batch_size"])
    assert space.names == ["dataset.num_instances", "dataset.batch_size"]
    configs = all_backends(space)
    for c in configs:
        assert c["dataset.batch_size"] % c["dataset.num_instances"] == 0
        assert 4 <= c["dataset.batch_size"] <= 64
    assert_valid(path, space, configs)
    assert space.check({"dataset.num_instances": 6, "dataset.batch_size": 16}) == [
        "dataset.batch_size: 16 must be multiple of dataset.num_instances (= 6)"]


def test_multiple_of_fixed_parent_and_divisor_of_fixed_child(tmp_path):
    path = _pk_schema(tmp_path)
    schema = load_schema(path)
    space = compile_space(schema, include=["dataset.batch_size"], fixed={"dataset.num_instances": 6})
    seen = set(values(all_backends(space), "dataset.batch_size"))
    assert seen == {6, 12, 18, 24, 30, 36, 42, 48, 54, 60}
    space = compile_space(schema, include=["dataset.num_instances"], fixed={"dataset": {"batch_size": 32}})
    seen = set(values(all_backends(space), "dataset.num_instances"))
    assert seen == {2, 4, 8}


def test_relational_depends_on(tmp_path):
    path = write_schema(tmp_path, {
        "crop_min": {"type": "int", "default": 384, "minimum": 32, "maximum": Infinity, "parent_param": "TRUE"},
        "crop_max": {"type": "int", "default": 600, "minimum": 32, "maximum": 1333, "depends_on": "crop_min",
                     "math_cond": "> depends_on"},
        "queries": {"type": "int", "default": 300, "minimum": 100, "maximum": 900},
        "select": {"type": "int", "default": 300, "minimum": 1, "maximum": 1000, "depends_on": "queries"},
    })
    space = compile_space(load_schema(path), include=["crop_max", "crop_min", "select", "queries"])
    assert space.names.index("crop_min") < space.names.index("crop_max")
    assert space.names.index("queries") < space.names.index("select")
    configs = all_backends(space)
    assert all(c["crop_max"] > c["crop_min"] for c in configs)
    assert all(c["select"] <= c["queries"] for c in configs)
    assert_valid(path, space, configs)
    # crop_min's Infinity maximum became a window, also kept below crop_max's maximum
    row = next(r for r in space.describe() if r["name"] == "crop_min")
    assert "Infinity" in row["condition"] and row["range"] == "[32, 1332]"


def test_fixed_dependent_narrows_searched_parent(tmp_path):
    path = write_schema(tmp_path, {
        "queries": {"type": "int", "default": 300, "minimum": 100, "maximum": 900},
        "select": {"type": "int", "default": 300, "minimum": 1, "maximum": 1000, "depends_on": "queries"},
    })
    space = compile_space(load_schema(path), include=["queries"], fixed={"select": 500})
    assert min(values(all_backends(space), "queries")) >= 500
    assert space.defaults() == {"queries": 500}


def test_milestones_sorted_within_epoch_budget(tmp_path):
    path = write_schema(tmp_path, {"train": {"type": "collection", "properties": {
        "num_epochs": {"type": "int", "default": 100, "minimum": 1, "maximum": Infinity},
        "optim": {"type": "collection", "properties": {"lr_steps": {"type": "list_2", "default": [40, 70]}}},
    }}})
    schema = load_schema(path)
    fixed = {"train.num_epochs": 12}
    space = compile_space(schema, include=["train.optim.lr_steps"], fixed=fixed)
    configs = all_backends(space)
    for c in configs:
        steps = c["train.optim.lr_steps"]
        assert 1 <= len(steps) <= 4 and steps == sorted(set(steps)) and all(0 < s < 12 for s in steps)
    assert {len(c["train.optim.lr_steps"]) for c in configs} == {1, 2, 3, 4}
    assert_valid(path, space, configs, fixed)
    # the default [40, 70] of 100 epochs is scaled into the 12-epoch budget for the baseline
    assert space.defaults()["train.optim.lr_steps"] == [5, 8]
    # searched epochs: milestones follow each trial's own budget
    space = compile_space(schema, include=["train.optim.lr_steps", "train.num_epochs"])
    assert space.names == ["train.num_epochs", "train.optim.lr_steps"]
    for c in all_backends(space):
        assert all(0 < s < c["train.num_epochs"] for s in c["train.optim.lr_steps"]) and c["train.optim.lr_steps"]


def test_kernel_is_odd_and_fits_the_image(tmp_path):
    path = write_schema(tmp_path, {
        "model": {"type": "collection", "properties": {
            "input_height": {"type": "int", "default": 224, "parent_param": "TRUE"},
            "input_width": {"type": "int", "default": 224, "parent_param": "TRUE"}}},
        "blur": {"type": "collection", "properties": {
            "kernel": {"type": "list_3", "default": [15, 15], "depends_on": "model.input_height,model.input_width"}}},
    })
    fixed = {"model.input_height": 64, "model.input_width": 80}
    space = compile_space(load_schema(path), include=["blur.kernel"], fixed=fixed)
    configs = all_backends(space)
    assert {tuple(c["blur.kernel"]) for c in configs} == {(3, 3), (5, 5)}
    assert space.defaults() == {"blur.kernel": [5, 5]}
    assert_valid(path, space, configs, fixed)


def test_dependency_order_and_structured_lists(tmp_path):
    path = write_schema(tmp_path, {
        "betas": {"type": "list_2", "default": [0.9, 0.999], "minimum": [0.8, 0.9], "maximum": [0.95, 0.999]},
        "scales": {"type": "list_2", "default": [480, 512, 544, 576]},
        "frozen": {"type": "list_1_backbone", "default": [-1]},
        "mods": {"type": "subset_list", "enum": ["q", "k", "v"], "default": ["q", "v"]},
        "extra": {"type": "optional_list", "enum": ["visual"], "default": []},
        "layers": {"type": "list_1_normal", "default": [1, 2], "minimum": 1, "maximum": 4},
    })
    space = compile_space(load_schema(path), include=["betas", "scales", "frozen", "mods", "extra", "layers"])
    configs = all_backends(space)
    assert_valid(path, space, configs)
    assert {len(c["scales"]) for c in configs} == {1, 2, 3, 4}
    assert [] in values(configs, "extra") and [-1] in values(configs, "frozen") and [0, 1, 2, 3] in values(configs, "frozen")
    assert all(c["mods"] for c in configs)
    assert {tuple(c["layers"]) for c in configs} == {(1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)}


# ------------------------------------------------------------------------------------------------
# scale and windows
# ------------------------------------------------------------------------------------------------
def test_log_rule_and_overrides(tmp_path):
    path = write_schema(tmp_path, {
        "base_lr": {"type": "float", "default": 3.5e-4, "minimum": 0.0, "maximum": 1.0, "math_cond": "> 0.0"},
        "momentum": {"type": "float", "default": 0.9, "minimum": 0.0, "maximum": 1.0, "math_cond": "> 0.0"},
        "saturation": {"type": "float", "default": 0.3, "minimum": 0.0, "maximum": 2.0},
        "lr_inf": {"type": "float", "default": 6e-5, "minimum": 0.0, "maximum": Infinity},
        "tight_lr": {"type": "float", "default": 1e-6, "minimum": 1e-7, "maximum": 1e-5},
        "iters": {"type": "int", "default": 10, "minimum": 1, "maximum": 10000},
        "workers": {"type": "int", "default": 8, "minimum": 1, "maximum": Infinity},
    })
    schema = load_schema(path)
    rows = {r["name"]: r for r in compile_space(schema, include=list(schema.leaves)).describe()}
    assert rows["base_lr"]["scale"] == "log" and rows["base_lr"]["range"] == "[3.5e-06, 0.035]"
    assert rows["momentum"]["scale"] == "linear" and rows["momentum"]["range"] == "(0, 1]"
    assert rows["saturation"]["scale"] == "linear"
    assert rows["lr_inf"]["scale"] == "log" and rows["lr_inf"]["range"] == "[6e-07, 0.006]"
    assert rows["tight_lr"]["scale"] == "log" and rows["tight_lr"]["range"] == "[1e-07, 1e-05]"
    assert rows["iters"]["scale"] == "log" and rows["iters"]["range"] == "[1, 1000]"
    assert rows["workers"]["scale"] == "linear" and rows["workers"]["range"] == "[1, 32]"
    assert "Infinity" in rows["workers"]["condition"]
    space = compile_space(schema, include=["base_lr"], overrides={
        "momentum": {"min": 0.5, "max": 0.99}, "base_lr": {"scale": "linear", "min": 0.001, "max": 0.1}})
    rows = {r["name"]: r for r in space.describe()}
    assert rows["base_lr"]["scale"] == "linear" and rows["base_lr"]["range"] == "[0.001, 0.1]"
    assert rows["momentum"]["range"] == "[0.5, 0.99]"   # overriding a parameter searches it


def test_weighted_choice_and_choice_overrides(tmp_path):
    path = write_schema(tmp_path, {
        "decay": {"type": "categorical", "default": "linear", "enum": ["linear", "sqrt", "cosine", "none"],
                  "option_weights": [0.1, 0.0, 0.4, 0.5]},
        "flag": {"type": "bool", "default": True},
        "size": {"type": "ordered_int", "default": 518, "enum": [224, 518]},
    })
    schema = load_schema(path)
    space = compile_space(schema, include=["decay", "flag", "size"])
    configs = all_backends(space)
    assert "sqrt" not in values(configs, "decay")          # weight 0 is never drawn
    assert set(values(configs, "flag")) == {True, False}
    assert set(values(configs, "size")) == {224, 518}
    assert_valid(path, space, configs)
    space = compile_space(schema, include=["decay"], overrides={"decay": {"choices": ["cosine", "none"], "weights": [1, 3]}})
    assert set(values(all_backends(space), "decay")) == {"cosine", "none"}


# ------------------------------------------------------------------------------------------------
# which parameters are searched
# ------------------------------------------------------------------------------------------------
def _selection_schema(tmp_path, **root):
    return write_schema(tmp_path, {
        "train": {"type": "collection", "automl_enabled": False, "properties": {
            "lr": {"type": "float", "default": 0.01, "minimum": 0.0, "maximum": 1.0, "automl_enabled": True},
            "wd": {"type": "float", "default": 0.01, "minimum": 0.0, "maximum": 1.0, "automl_enabled": True},
            "gpu_ids": {"type": "list", "default": [0]},
            "off": {"type": "int", "default": 1, "minimum": 0, "maximum": 5, "automl_enabled": False},
            "results_dir": {"type": "string", "default": "/tmp"},
            "opt": {"type": "categorical", "enum": ["sgd", "adam"], "default": "sgd", "automl_enabled": True}}},
    }, **root)


def test_selection_rules(tmp_path):
    schema = load_schema(_selection_schema(
        tmp_path, automl_default_parameters=["train.lr", "train.wd", "train.off"],
        automl_disabled_parameters=["train", "train.wd"]))
    space = compile_space(schema)
    assert space.names == ["train.lr"]      # a default beats its disabled collection
    reasons = dict(space.skipped)
    assert "automl_disabled_parameters" in reasons["train.wd"]
    assert reasons["train.off"] == "automl_enabled: false"
    assert reasons["train.results_dir"] == "path/file string"
    assert reasons["train.gpu_ids"].startswith("free-form list")
    assert "disabled collection 'train'" in reasons["train.opt"]
    # include overrides the schema's choice
    assert compile_space(schema, include=["train.off", "train.wd"]).names == ["train.wd", "train.off"]
    assert compile_space(schema, include=["train"]).names == ["train.lr", "train.wd", "train.off", "train.opt"]


def test_selection_without_default_list_uses_automl_enabled(tmp_path):
    schema = load_schema(_selection_schema(tmp_path))
    assert compile_space(schema).names == ["train.lr", "train.wd", "train.opt"]


def test_misspelt_names_suggest_the_closest(tmp_path):
    schema = load_schema(_selection_schema(tmp_path))
    with pytest.raises(SpecError, match=r"unknown parameter 'train\.lrr'.*did you mean 'train\.lr'"):
        compile_space(schema, include=["train.lrr"])
    with pytest.raises(SpecError, match=r"did you mean 'train\.wd'"):
        compile_space(schema, overrides={"train.wdd": {"min": 0.1}})
    with pytest.raises(SpecError, match=r"unknown key 'maxx'.*did you mean 'max'"):
        compile_space(schema, overrides={"train.wd": {"maxx": 0.1}})
    with pytest.raises(SpecError, match="cannot be searched: path/file string"):
        compile_space(schema, include=["train.results_dir"])


# ------------------------------------------------------------------------------------------------
# malformed schemas: one line naming the file and the parameter
# ------------------------------------------------------------------------------------------------
MALFORMED = {
    "unknown type": ({"x": {"type": "floaty", "default": 1}}, "x", "unknown type 'floaty'"),
    "min > max": ({"x": {"type": "int", "default": 1, "minimum": 5, "maximum": 2}}, "x", "minimum 5 > maximum 2"),
    "weights length": ({"x": {"type": "categorical", "enum": ["a", "b"], "option_weights": [1.0], "default": "a"}},
                       "x", "option_weights has 1 entries but the enum has 2"),
    "negative weights": ({"x": {"type": "categorical", "enum": ["a", "b"], "option_weights": [1.0, -1.0]}},
                         "x", "non-negative"),
    "zero weights": ({"x": {"type": "categorical", "enum": ["a", "b"], "option_weights": [0, 0]}}, "x", "positive sum"),
    "unknown depends_on": ({"x": {"type": "int", "default": 1, "depends_on": "y.z"}}, "x", "depends_on 'y.z' names no parameter"),
    "cycle": ({"a": {"type": "int", "default": 1, "depends_on": "b"}, "b": {"type": "int", "default": 1, "depends_on": "a"}},
              "a", "dependency cycle: a -> b -> a"),
    "bad math_cond": ({"x": {"type": "int", "default": 1, "math_cond": "% 3"}}, "x", "math_cond '% 3' is not understood"),
    "list bounds": ({"x": {"type": "list_2", "default": [1, 2], "minimum": [0, 3], "maximum": [1, 2]}}, "x", "element 1"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_schema_is_one_clear_line(tmp_path, case):
    props, param, message = MALFORMED[case]
    path = write_schema(tmp_path, props)
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    text = str(info.value)
    assert "\n" not in text and str(path) in text and f"'{param}'" in text and message in text


def test_lenient_where_real_files_are_sloppy(tmp_path):
    path = write_schema(tmp_path, {
        "t": {"type": "categorical", "enum": ["MultiStep", "Cosine"], "default": "MultiStepLR"},
        "lr": {"anyOf": [{"type": "number"}, {"type": "array"}], "default": 1e-6, "minimum": 1e-6, "maximum": 1e-3},
        "w": {"anyOf": [{"type": "integer"}, {"type": "number"}], "default": 0, "minimum": 0, "maximum": 5,
              "depends_on": "e", "math_cond": "/ 2"},
        "e": {"type": "int", "default": 3, "minimum": 1, "maximum": 20},
        "junk": {"type": "collection", "default": {"type": "weird", "x": 1}},
        "automl_disabled_parameters": ["t"],
    }, automl_default_parameters=["t", "lr", "w", "missing.name"])
    schema = load_schema(path)
    assert any("not in its enum" in w for w in schema.warnings)
    assert any("missing.name" in w for w in schema.warnings)
    assert schema.leaves["lr"].type == "float" and schema.leaves["w"].type == "int"
    space = compile_space(schema, include=["t", "lr", "w"])
    assert space.defaults()["t"] == "MultiStep"
    assert set(values(all_backends(space, 100), "w")) == {0, 2}   # multiple of 2, <= e (3)
    assert "t" in dict(compile_space(schema).skipped)


def test_default_spec_and_leaves(tmp_path):
    path = _selection_schema(tmp_path)
    schema = load_schema(path)
    spec = schema.default_spec()
    assert spec["train"]["lr"] == 0.01 and spec["train"]["opt"] == "sgd"
    leaf = schema.leaves["train.lr"]
    assert leaf.type == "float" and leaf["maximum"] == 1.0 and leaf.get("enum") is None


# ------------------------------------------------------------------------------------------------
# validate_spec
# ------------------------------------------------------------------------------------------------
def test_validate_spec(tmp_path):
    path = write_schema(tmp_path, {
        "train": {"type": "collection", "properties": {
            "num_epochs": {"type": "int", "default": 10, "minimum": 1, "maximum": Infinity},
            "lr": {"type": "float", "default": 0.1, "minimum": 0.0, "maximum": 1.0, "math_cond": "> 0.0"},
            "opt": {"type": "categorical", "enum": ["sgd", "adam"], "default": "sgd"},
            "amp": {"type": "bool", "default": False},
            "steps": {"type": "list_2", "default": [3, 6]},
            "hidden": {"type": "int", "default": 64, "minimum": 8, "maximum": 512, "math_cond": "/ 8"}}},
        "dataset": {"type": "collection", "properties": {"val_dataset": {"type": "collection", "default": {}}}},
    })
    schema = load_schema(path)
    good = {"train": {"num_epochs": 3, "lr": 0.5, "opt": "adam", "amp": True, "steps": [1, 2], "hidden": 128},
            "dataset": {"val_dataset": {"anything": {"goes": 1}}}}
    assert validate_spec(good, schema, "spec.yaml") == []
    bad = {"train": {"num_epoch": 3, "lr": 0.0, "opt": "rmsprop", "amp": "yes", "steps": 3, "hidden": 100},
           "dataset": {"val_dataset": 3}}
    problems = validate_spec(bad, schema, "spec.yaml")
    text = "\n".join(problems)
    assert len(problems) == 7, problems
    assert all(p.startswith("spec.yaml: ") for p in problems)
    assert "unknown key 'train.num_epoch' (did you mean 'train.num_epochs'?)" in text
    assert "'train.lr' = 0.0 violates math_cond '> 0'" in text
    assert "allowed values: sgd, adam" in text
    assert "'train.amp' must be true or false" in text
    assert "'train.steps' must be a list" in text
    assert "multiple of 8" in text
    assert "'dataset.val_dataset' must be a mapping" in text
    assert validate_spec({"train": {"num_epochs": "ten"}}, schema, "s") == ["s: 'train.num_epochs' must be an int, got 'ten'"]
    assert validate_spec({"train": {"lr": 2.0}}, schema, "s") == ["s: 'train.lr' = 2.0 is outside [0.0, 1.0]"]


Infinity = math.inf


def test_windows_follow_the_users_spec(tmp_path):
    path = write_schema(tmp_path, {
        "lr": {"type": "float", "default": 3.5e-4, "minimum": 0.0, "maximum": 1.0, "math_cond": "> 0.0"},
        "bs": {"type": "int", "default": 4, "minimum": 1, "maximum": Infinity},
    })
    space = compile_space(load_schema(path), include=["lr", "bs"], fixed={"lr": 0.01, "bs": 32})
    rows = {r["name"]: r for r in space.describe()}
    assert rows["lr"]["range"] == "[0.0001, 1]" and rows["bs"]["range"] == "[1, 128]"
    assert space.defaults() == {"lr": 0.01, "bs": 32}


def test_ordered_int_parent_and_infeasible_parent_values(tmp_path):
    path = write_schema(tmp_path, {
        "k": {"type": "ordered_int", "default": 4, "enum": [2, 4, 8, 5]},
        "bs": {"type": "int", "default": 16, "minimum": 9, "maximum": 12, "depends_on": "k", "math_cond": "/ depends_on"},
        "n": {"type": "int", "default": 3, "minimum": 2, "maximum": 7},
        "m": {"type": "int", "default": 12, "minimum": 13, "maximum": 14, "depends_on": "n", "math_cond": "/ depends_on"},
    })
    schema = load_schema(path)
    space = compile_space(schema, include=["k", "bs", "n", "m"])
    configs = all_backends(space)
    # bs in [9, 12] must be a multiple of k: k = 8 has none, so it is dropped; likewise n in {5, 6} for m in [13, 14]
    assert set(values(configs, "k")) == {2, 4, 5}
    assert set(values(configs, "n")) == {2, 7}
    assert all(c["bs"] % c["k"] == 0 and c["m"] % c["n"] == 0 for c in configs)
    assert_valid(path, space, configs)
    # a fixed dependent filters a categorical parent
    space = compile_space(schema, include=["k"], fixed={"bs": 10})
    assert set(values(all_backends(space, 50), "k")) == {2, 5}


def test_search_range_narrows_the_search_but_not_what_a_spec_may_hold(tmp_path):
    import json

    schema = {"type": "object", "properties": {"train": {"type": "object", "properties": {
        "batch_size": {"type": "int", "default": 32, "minimum": 4, "maximum": 256, "automl_search_range": [8, 64],
                       "automl_enabled": True},
        "lr": {"type": "float", "default": 0.01, "minimum": 0.0, "maximum": 1.0, "automl_search_range": [0.001, 0.1],
               "automl_enabled": True}}}}}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(schema))
    space = compile_space(load_schema(path))
    for config in (space.sample(seed) for seed in range(200)):
        assert 8 <= config["train.batch_size"] <= 64 and 0.001 <= config["train.lr"] <= 0.1
    assert validate_spec({"train": {"batch_size": 4, "lr": 0.5}}, load_schema(path), str(path)) == []
    schema["properties"]["train"]["properties"]["batch_size"]["automl_search_range"] = [2, 64]
    path.write_text(json.dumps(schema))
    with pytest.raises(SchemaError, match="automl_search_range .* must lie inside"):
        load_schema(path)
