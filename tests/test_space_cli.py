"""``automl space show`` and ``automl space sample``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from _space_helpers import raw_violations, shared_schemas, write_schema
from automl import plugins
from automl.cli import main
from automl.space import compile_space, load_schema
from test_space_dialect import MALFORMED

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "automl", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def call(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def schema_file(tmp_path):
    return write_schema(tmp_path, {
        "train": {"type": "collection", "properties": {
            "num_epochs": {"type": "int", "default": 20, "minimum": 1, "maximum": 100},
            "optim": {"type": "collection", "properties": {
                "lr": {"type": "float", "default": 3.5e-4, "minimum": 0.0, "maximum": 1.0, "math_cond": "> 0.0"},
                "momentum": {"type": "float", "default": 0.9, "minimum": 0.0, "maximum": 1.0},
                "decay": {"type": "categorical", "enum": ["step", "cosine"], "option_weights": [0.25, 0.75],
                          "default": "step"},
                "lr_steps": {"type": "list_2", "default": [10, 15]},
                "log_dir": {"type": "string", "default": "/tmp/x"}}}}},
    }, automl_default_parameters=["train.optim.lr", "train.optim.momentum", "train.optim.decay",
                                  "train.optim.lr_steps"])


def test_show_table_and_json(capsys, schema_file):
    code, out, _ = call(capsys, "space", "show", "--schema", str(schema_file))
    assert code == 0
    for text in ("train.optim.lr", "log", "[3.5e-06, 0.035]", "0.25, 0.75", "milestones", "path/file string",
                 "log-scale rule"):
        assert text in out, text
    code, out, _ = call(capsys, "space", "show", "--schema", str(schema_file), "--json")
    data = json.loads(out)
    rows = {r["name"]: r for r in data["params"]}
    assert set(rows) == {"train.optim.lr", "train.optim.momentum", "train.optim.decay", "train.optim.lr_steps"}
    assert rows["train.optim.lr"]["scale"] == "log" and rows["train.optim.momentum"]["scale"] == "linear"
    assert {s["name"]: s["reason"] for s in data["skipped"]}["train.optim.log_dir"] == "path/file string"
    code, out, _ = call(capsys, "space", "show", "--schema", str(schema_file), "--all")
    assert "train.num_epochs" in out and "not in automl_default_parameters" in out
    code, out, _ = call(capsys, "space", "show", "--schema", str(schema_file), "--include", "train.num_epochs", "--json")
    assert [r["name"] for r in json.loads(out)["params"]] == ["train.num_epochs"]


def test_show_by_model_name(capsys, tmp_path, schema_file):
    class Fake(plugins.TrainerPlugin):
        name = "space_cli_fake"
        monitor = plugins.Monitor("acc", "max")

        def schema_path(self):
            return schema_file

        def spec_template(self, action="train"):
            return tmp_path / "spec.yaml"

        def train(self, spec, results_dir, reporter=None, max_epochs=None):
            return {}

    plugins.register(Fake())
    code, out, _ = call(capsys, "space", "show", "--model", "space_cli_fake", "--json")
    assert code == 0 and len(json.loads(out)["params"]) == 4


def test_usage_errors_are_one_line(capsys, schema_file):
    code, _, err = call(capsys, "space", "show")
    assert code == 2 and err.strip() == "error: give exactly one of --model NAME or --schema FILE"
    code, _, err = call(capsys, "space", "show", "--schema", str(schema_file), "--include", "train.optim.lrr")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "did you mean 'train.optim.lr'" in err
    code, _, err = call(capsys, "space", "sample", "--schema", str(schema_file), "--backend", "hyperopt")
    assert code == 2 and "allowed: optuna, ray, numpy" in err
    code, _, err = call(capsys, "space", "show", "--schema", str(schema_file.parent / "nope.json"))
    assert code == 2 and "schema file not found" in err


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_schema_cli_exit_2_one_line(capsys, tmp_path, case):
    props, param, message = MALFORMED[case]
    path = write_schema(tmp_path, props)
    code, out, err = call(capsys, "space", "show", "--schema", str(path))
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1
    assert lines[0].startswith("error: ") and str(path) in lines[0] and f"'{param}'" in lines[0] and message in lines[0]


def test_malformed_schema_subprocess_has_no_traceback(tmp_path):
    path = write_schema(tmp_path, MALFORMED["cycle"][0])
    proc = run_cli("space", "sample", "--schema", str(path), "--n", "2")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "dependency cycle" in proc.stderr


@pytest.mark.parametrize("backend", ["optuna", "ray"])
def test_sample_jsonl_is_reproducible(tmp_path, schema_file, backend):
    args = ("space", "sample", "--schema", str(schema_file), "--n", "25", "--seed", "3", "--backend", backend,
            "--format", "jsonl")
    first, second = run_cli(*args), run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout            # byte-identical
    lines = first.stdout.splitlines()
    assert len(lines) == 25
    space = compile_space(load_schema(schema_file))
    for line in lines:
        config = json.loads(line)
        assert list(config) == space.names
        assert space.check(config) == [] and raw_violations(schema_file, config) == []
    other = run_cli(*args[:-5], "4", "--backend", backend)
    assert other.returncode == 0 and other.stdout != first.stdout


def test_sample_real_schema_both_backends(capsys):
    files = [f for f in shared_schemas() if "reid" in f.name or "reid" in str(f.parent.parent.name)]
    if not files:
        pytest.skip("../shared is absent: the real TAO schemas are not in this checkout")
    for backend in ("optuna", "ray"):
        code, out, err = call(capsys, "space", "sample", "--schema", str(files[0]), "--n", "5", "--backend", backend)
        assert code == 0, err
        assert [list(json.loads(line)) for line in out.splitlines()] == [["train.optim.lr_steps"]] * 5
