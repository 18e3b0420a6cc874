"""Random specs, overrides, settings and schemas thrown at ``automl run --dry-run``, ``automl train`` and
``automl space show`` (issue 14): the exit status is 0 or 2, a refusal is one stderr line, nothing
prints a traceback, and a refusal leaves no run or results folder behind.

The CLI runs in this process (:func:`automl.cli.main`, exactly what the ``automl`` script calls) so an
example costs milliseconds, not a Python start-up; ``run`` uses ``--dry-run`` (every check of a real
run, no search) and ``train`` trains the toy for one epoch, so examples that are accepted stay cheap.
About a minute in all.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automl.cli import main

# bounded (max_examples below): about a minute for the three on this project's 2-core CI machine;
# derandomized so that the default test run is the same every time
FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def _no_tracking():
    """Plain training's MLflow run is not what is fuzzed here; the setting is undone after this module
    (set at import time it leaked into every later test of the session and turned their tracking off)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("AUTOML_TRACKING", "off")
    yield
    patch.undo()

# keys the toy's schema has (the failure and sleep knobs are left out: they fail or slow down on purpose),
# sections, and keys it does not have
KEYS = ("toy.lr", "toy.width", "toy.activation", "toy.momentum", "toy.noise", "train.seed", "toy", "train",
        "nope", "toy.nope", "train.seed.deep", "automl_max_epochs", "automl.automl_algorithm", "a..b", ".x")
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 1200), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["relu", "gelu", "sigmoid", "abc", "", "1e-3", "[1,2]", "{a: 1}", "~"]),
                    st.text(max_size=6))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.sampled_from(["lr", "width", "x"]), SCALARS,
                                                                           max_size=2))


def _text(value) -> str:
    return value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


OVERRIDES = st.lists(st.one_of(st.tuples(st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0]}={_text(kv[1])}"),
                               st.sampled_from(["noequals", "=1", " = "])), max_size=3)
SPEC_TEXT = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4).map(lambda d: yaml.safe_dump(_nest(d))),
    st.sampled_from(["train:\n  seed: 1\n  seed: 2\n", "- a\n- b\n", "a: [1,\n", "\x00\x01", "{}", "toy: 3\n"]),
    st.text(max_size=30),
)
SETTING_NAMES = ("reduction_factor", "min_epochs", "pruner", "population", "percentile", "grid_points", "nope", "")


def _nest(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else node
        node[parts[-1]] = value
    return out


def call(argv: list[str]) -> tuple[int, str, str]:
    """``automl ARGV`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def check(code: int, stdout: str, stderr: str, leftovers: list[Path]) -> None:
    assert code in (0, 2), f"exit {code}: {stderr[-2000:]}"
    assert "Traceback" not in stderr + stdout, stderr[-2000:]
    if code == 2:
        assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("error: "), stderr[-2000:]
        assert leftovers == [], leftovers


def _spec_file(folder: Path, text: str | None) -> list[str]:
    if text is None:
        return []
    (folder / "spec.yaml").write_text(text, errors="replace")
    return ["-e", str(folder / "spec.yaml")]


@settings(FUZZ, max_examples=30)
@given(spec=SPEC_TEXT, overrides=OVERRIDES,
       setting=st.lists(st.tuples(st.sampled_from(SETTING_NAMES), SCALARS), max_size=2),
       algorithm=st.sampled_from([None, "tpe", "asha", "pbt", "bayesian", "grid", "nsga2", "nope"]),
       numbers=st.fixed_dictionaries({"--budget": st.sampled_from([None, "-1", "0", "1", "3", "x"]),
                                      "--time-budget": st.sampled_from([None, "-5", "0", "nan", "inf", "10"]),
                                      "--trial-timeout": st.sampled_from([None, "0", "-1", "30"]),
                                      "--max-failures": st.sampled_from([None, "-1", "0", "3"])}),
       name=st.sampled_from([None, "ok", "../x", "a/b", ".", "", "sp ace"]),
       storage=st.sampled_from([None, "foo://bar", "sqlite:///{tmp}/s.db", "journal://{tmp}/j.log", "notaurl"]))
def test_run_dry_run_fuzz(spec, overrides, setting, algorithm, numbers, name, storage):
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        argv = ["run", "--model", "toy", "--dry-run", "--no-tracking", "--output", str(tmp_path / "runs"),
                *_spec_file(tmp_path, spec), *overrides]
        for key, value in setting:
            argv += ["--setting", f"{key}={_text(value)}"]
        for option, value in [("--algorithm", algorithm), ("--name", name), *numbers.items(),
                              ("--storage", storage.format(tmp=tmp) if storage else None)]:
            if value is not None:
                argv += [option, value]
        code, stdout, stderr = call(argv)
        runs = tmp_path / "runs"
        leftovers = [p for p in runs.iterdir() if p.name != ".demo_data"] if runs.exists() else []
        check(code, stdout, stderr, leftovers + [p for p in (tmp_path / "x", tmp_path / "a") if p.exists()])
        if code == 0:
            assert no_run_folder(runs)


def no_run_folder(runs: Path) -> bool:
    """A dry run made no run folder (the demo data cache may exist)."""
    return not runs.exists() or all(p.name == ".demo_data" for p in runs.iterdir())


@settings(FUZZ, max_examples=15)
@given(spec=SPEC_TEXT, overrides=OVERRIDES)
def test_train_fuzz(spec, overrides):
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        results = tmp_path / "results"
        # the last override keeps an accepted example at one epoch
        code, stdout, stderr = call(["train", "--model", "toy", "-r", str(results), *_spec_file(tmp_path, spec),
                                     *overrides, "train.num_epochs=1"])
        check(code, stdout, stderr, [results] if results.exists() else [])
        if code == 0:
            assert (results / "train.json").is_file()


LEAF = st.dictionaries(
    st.sampled_from(["type", "default", "minimum", "maximum", "enum", "option_weights", "math_cond", "depends_on",
                     "automl_enabled", "scale", "automl_search_range", "valid_min", "description", "properties"]),
    st.one_of(SCALARS, st.sampled_from(["int", "float", "bool", "categorical", "string", "list", "collection",
                                        "ordered_int", "subset_list", "> 0", "/ 2", "^ 2", "log", "a"]),
              st.lists(SCALARS, max_size=4)),
    max_size=5)
SCHEMA = st.one_of(
    st.recursive(LEAF, lambda children: st.fixed_dictionaries(
        {"type": st.just("collection"), "properties": st.dictionaries(st.sampled_from(["a", "b", "c"]), children,
                                                                      max_size=3)}), max_leaves=8),
    st.dictionaries(st.sampled_from(["properties", "type", "default"]), VALUES, max_size=3),
)


@settings(FUZZ, max_examples=100)
@given(schema=SCHEMA, as_json=st.booleans())
def test_space_show_fuzz(schema, as_json):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.json"
        path.write_text(json.dumps(schema))
        code, stdout, stderr = call(["space", "show", "--schema", str(path), *(["--json"] if as_json else [])])
        check(code, stdout, stderr, [])

