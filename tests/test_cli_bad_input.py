"""Bad input to the command line (issue 14): one line on stderr, exit status 2, no traceback, and
nothing written -- no run folder, no ``search.json``, no MLflow run -- so the corrected command works
under the same ``--name``. Every case runs the real ``automl`` in its own process."""

from __future__ import annotations

import json
import pickle
from collections import OrderedDict
from pathlib import Path

import pytest

from _search_helpers import automl_cli

RUN = ("run", "--model", "toy", "--no-tracking", "--no-promote", "--budget", "1", "--output", "runs")


def _inputs(folder: Path) -> dict[str, Path]:
    """Files the cases point at: specs, a non-weights-only checkpoint, a plain file."""
    (folder / "wrong_key.yaml").write_text("wrong_key: 1\n")
    (folder / "duplicate.yaml").write_text("train:\n  num_epochs: 2\n  num_epochs: 3\n")
    (folder / "afile.txt").write_text("not a dataset\n")
    with open(folder / "evil.ckpt", "wb") as f:  # a pickle that would call print() when loaded unsafely
        pickle.dump(OrderedDict(epoch=print), f)
    return {"wrong_key": folder / "wrong_key.yaml", "duplicate": folder / "duplicate.yaml",
            "afile": folder / "afile.txt", "evil": folder / "evil.ckpt"}


def assert_refused(proc, expected: str, cwd: Path) -> None:
    """Exit 2, exactly one stderr line naming the problem, no traceback, no run folder."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    runs = cwd / "runs"
    # the demo data is a cache kept for later runs, never a run folder
    assert not runs.exists() or [p.name for p in runs.iterdir()] in ([], [".demo_data"]), list(runs.iterdir())
    assert not list(cwd.rglob("search.json")) and not list(cwd.rglob("mlflow.db"))


RUN_CASES = {
    "unknown override key": (["train.nope=1"], "unknown key 'train.nope'"),
    "a section overridden by a value": (["toy=1"], "'toy' must be a mapping"),
    "a choice outside the enum": (["toy.activation=sigmoid"], "allowed values: relu, gelu, tanh"),
    "a value out of range": (["toy.width=99"], "'toy.width' = 99 is outside [1, 8]"),
    "an unknown key in the spec file": (["-e", "{wrong_key}"], "unknown key 'wrong_key'"),
    "a duplicate key in the spec file": (["-e", "{duplicate}"], "duplicate key 'num_epochs'"),
    "a name that leaves --output": (["--name", "../../escape"], "--name '../../escape': a search name is one folder"),
    "a setting of the wrong type": (["--setting", "reduction_factor=abc"], "reduction_factor='abc': expected int"),
    "an unknown setting": (["--setting", "nope=3"], "--setting nope: unknown"),
    "a storage URL no driver reads": (["--storage", "foo://bar"], "--storage 'foo://bar': cannot open it"),
    "a negative time budget": (["--time-budget", "-5"], "--time-budget -5: must be a positive"),
    "a zero trial timeout": (["--trial-timeout", "0"], "--trial-timeout 0: must be a positive"),
    "a negative failure limit": (["--max-failures", "-1"], "--max-failures -1: must be 0"),
    "--data naming a file": (["--data", "{afile}"], "automl data make --task toy --out DIR"),
    "a pinned resume checkpoint": (["train.resume_training_checkpoint_path={evil}"],
                                   "cannot start them all from one checkpoint"),
    "--automl off: a value out of range": (["--automl", "off", "toy.width=99"], "'toy.width' = 99 is outside"),
    "--automl off: a name that leaves --output": (["--automl", "off", "--name", "../x"], "one folder name"),
    "--automl off: a checkpoint that is not weights-only": (
        ["--automl", "off", "train.resume_training_checkpoint_path={evil}"], "is not a weights-only checkpoint"),
}


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_run_refuses_bad_input_before_writing_anything(tmp_path, case):
    files = _inputs(tmp_path)
    args, expected = RUN_CASES[case]
    args = [a.format(**files) for a in args]
    proc = automl_cli(*RUN, *args, cwd=tmp_path)
    assert_refused(proc, expected.format(**files), tmp_path)
    assert not (tmp_path.parent / "escape").exists() and not (tmp_path / "x").exists()


def test_a_refused_command_corrected_under_the_same_name_runs(tmp_path):
    refused = automl_cli(*RUN, "--name", "same", "--storage", "foo://bar", "train.num_epochs=1", cwd=tmp_path)
    assert_refused(refused, "--storage 'foo://bar'", tmp_path)
    fixed = automl_cli(*RUN, "--name", "same", "--json", "train.num_epochs=1", cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert json.loads(fixed.stdout.strip().splitlines()[-1])["exit_code"] == 0


def test_ray_on_a_remote_cluster_with_local_storage_is_refused_before_the_folder(tmp_path):
    pytest.importorskip("ray")
    proc = automl_cli(*RUN, "--name", "r", "--backend", "ray", "--address", "10.255.255.1:6379", cwd=tmp_path)
    assert_refused(proc, "--backend ray on a remote cluster needs storage every node can reach", tmp_path)


def test_dry_run_checks_and_writes_no_run_folder(tmp_path):
    proc = automl_cli(*RUN, "--name", "d", "--dry-run", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["name"] == "d"
    assert not (tmp_path / "runs" / "d").exists()
    assert_refused(automl_cli(*RUN, "--dry-run", "toy.width=99", cwd=tmp_path), "outside [1, 8]", tmp_path)


def test_train_refuses_a_checkpoint_that_is_not_weights_only_in_one_line(tmp_path):
    files = _inputs(tmp_path)
    proc = automl_cli("train", "--model", "toy", "-r", "runs/t", f"train.resume_training_checkpoint_path={files['evil']}",
                      cwd=tmp_path)
    assert_refused(proc, f"{files['evil']} is not a weights-only checkpoint", tmp_path)
    proc = automl_cli("train", "--model", "toy", "-r", "runs/t", "-e", str(files["duplicate"]), cwd=tmp_path)
    assert_refused(proc, "line 3", tmp_path)


def _nested(depth: int) -> str:
    return '{"properties": {"x": ' * depth + '{"type": "int", "default": 1}' + "}}" * depth


SCHEMA_CASES = {
    "properties that are a list": ('{"properties": {"a": {"type": "collection", "properties": [1, 2]}}}',
                                   "parameter 'a': 'properties' must be an object, got list"),
    "top-level properties that are a list": ('{"properties": [1, 2]}', "top-level 'properties' object"),
    "no top-level properties": ('{"type": "object"}', "needs a top-level 'properties' object"),
    "a leaf of unknown keys only": ('{"properties": {"a": {"typ": "int", "dflt": 1}}}',
                                    "parameter 'a': has none of type, default"),
    "collections nested too deep": (_nested(40), "nested more than 32 collections deep"),
    "JSON nested past Python's recursion limit": (_nested(3000), "nested too deeply"),
}


@pytest.mark.parametrize("case", list(SCHEMA_CASES))
def test_a_malformed_schema_is_one_line(tmp_path, case):
    text, expected = SCHEMA_CASES[case]
    (tmp_path / "s.json").write_text(text)
    proc = automl_cli("space", "show", "--schema", "s.json", cwd=tmp_path)
    assert_refused(proc, expected, tmp_path)
