"""``automl train | evaluate | inference | export | gen_trt_engine``: one model action on a spec.

    automl train --model ml_recog -e spec.yaml train.num_epochs=3 --results-dir runs/a --json

``automl train`` is plain training with AutoML off, on the same path (:func:`train_plain`) as
``automl run --automl off``. Every action writes ``<results_dir>/<action>.json``
and, with ``--json``, prints the same object as the last stdout line. Specs are validated against the
model's train schema first: a wrong key, type or value is one line naming the key and what is allowed
(exit status 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from automl import plugins
from automl.cli import app
from automl.errors import SpecError
from automl.spec import apply_config, dump_yaml, get_dotted, load_yaml, parse_overrides
from automl.training.devices import is_launched_worker


def load_spec(plugin: plugins.TrainerPlugin, action: str, spec_file: Path | None, overrides: list[str] | None,
              data_dir: Path | None = None) -> tuple[dict[str, Any], str]:
    """The spec file (or the model's template for ``action``), then ``--data``, then ``key=value`` overrides."""
    path = spec_file or plugin.spec_template(action)
    spec = load_yaml(path)
    given = parse_overrides(overrides or [])
    if data_dir is not None:
        keys = plugin.data_keys_for(data_dir, apply_config(spec, given))  # e.g. mae's train.stage picks the folder
        if action in ("evaluate", "inference") and hasattr(plugin, "evaluation_keys"):
            keys = plugin.evaluation_keys(data_dir)  # evaluation runs on the classes never trained on
        spec = apply_config(spec, keys)
    spec = apply_config(spec, given)
    return spec, str(path)


def validate(plugin: plugins.TrainerPlugin, spec: dict[str, Any], source: str,
             overrides: dict[str, Any] | None = None, action: str = "train") -> None:
    """Check ``spec`` against the model's train schema (and, for training, that a checkpoint to
    resume from is a weights-only one); the first problem becomes one error line."""
    plugin.check_spec(spec, source, overrides)
    if action == "train":
        from automl.training.weights import check_resume_checkpoint

        check_resume_checkpoint(spec)


def results_dir_for(spec: dict[str, Any], action: str, model: str, cli_value: Path | None) -> Path:
    for value in (cli_value, get_dotted(spec, f"{action}.results_dir"), spec.get("results_dir")):
        if value and str(value).strip():
            return Path(str(value))
    return Path("results") / model / action


def check_output_file(action: str, spec: dict[str, Any], out_dir: Path) -> None:
    """An action's own output file (TAO's ``<action>.output_file``) must not be the summary file
    ``<results_dir>/<action>.json``: the summary, written last, would replace it."""
    value = str(get_dotted(spec, f"{action}.output_file", "") or "").strip()
    summary = out_dir / f"{action}.json"
    if value and Path(value).resolve() == summary.resolve():
        raise SpecError(f"{action}.output_file: {value} is where automl writes the {action} summary; "
                        "choose another file name (or leave it empty for the default)")


def start_tracking(model: str, spec: dict[str, Any], results_dir: Path):
    """Plain training's experiment tracking (one run). Returns an object with ``finish(result)``.

    The MLflow run (:func:`automl.tracking.start_training_run`); a no-op when tracking is off.
    """
    from automl.tracking import start_training_run

    run = start_training_run(results_dir, model=model, spec=spec)
    if run is not None:
        return run

    class _NoTracking:
        def finish(self, result: dict[str, Any], failed: bool = False) -> None:
            pass

    return _NoTracking()


def train_plain(plugin: plugins.TrainerPlugin, spec: dict[str, Any], source: str, out_dir: Path, *,
                as_json: bool = False, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """One training run with AutoML off (``automl train``, ``automl run --automl off``): validate the
    spec, train, record. Under DDP every rank runs this; only rank 0 writes files and tracks."""
    from automl.reporting import FileReporter
    from automl.training.results import write_result

    validate(plugin, spec, source, overrides)
    out_dir.mkdir(parents=True, exist_ok=True)
    worker = is_launched_worker()
    tracking = None
    if not worker:
        dump_yaml(spec, out_dir / "spec.yaml")  # what actually ran, overrides included
        tracking = start_tracking(plugin.name, spec, out_dir)
    try:
        result = plugin.train(spec, out_dir, FileReporter(out_dir))
    except BaseException:
        if tracking is not None:
            tracking.finish({}, failed=True)
        raise
    if tracking is not None:
        tracking.finish(result)
    result = {"action": "train", "model": plugin.name, "results_dir": str(out_dir), **result}
    if not worker:
        write_result("train", result, out_dir, as_json=as_json)
    return result


def run_action(action: str, model: str, spec_file: Path | None, overrides: list[str] | None,
               results_dir: Path | None, as_json: bool, data_dir: Path | None = None) -> dict[str, Any]:
    from automl.training.results import write_result

    plugin = plugins.get_trainer(model)
    spec, source = load_spec(plugin, action, spec_file, overrides, data_dir)
    out_dir = results_dir_for(spec, action, model, results_dir)
    if action == "train":
        return train_plain(plugin, spec, source, out_dir, as_json=as_json, overrides=parse_overrides(overrides or []))
    validate(plugin, spec, source, parse_overrides(overrides or []), action)
    check_output_file(action, spec, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = plugin.run_action(action, spec, out_dir)
    result = {"action": action, "model": model, "results_dir": str(out_dir), **result}
    if not is_launched_worker():
        write_result(action, result, out_dir, as_json=as_json)
    return result


def _register(action: str, summary: str) -> None:
    def command(
        model: str = typer.Option(..., "--model", "-m", help="Trainer name (see `automl models`)."),
        experiment_spec: Optional[Path] = typer.Option(None, "--experiment-spec", "-e",
                                                       help="Spec YAML (default: the model's template for this action)."),
        overrides: Optional[list[str]] = typer.Argument(None, help="Dotted overrides, e.g. train.num_epochs=3."),
        results_dir: Optional[Path] = typer.Option(None, "--results-dir", "-r", help="Output folder (default: "
                                                   "the spec's results_dir, else results/<model>/<action>)."),
        data: Optional[Path] = typer.Option(None, "--data", help="A folder made by `automl data make` "
                                            "(sets the dataset keys)."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object on the last line."),
    ) -> None:
        result = run_action(action, model, experiment_spec, overrides, results_dir, as_json, data)
        if not as_json and not is_launched_worker():
            typer.echo(f"{action} done: {result['results_dir']}/{action}.json")

    command.__doc__ = summary
    app.command(action)(command)


_register("train", "Train a model on a spec (plain training, AutoML off).")
_register("evaluate", "Evaluate a checkpoint (retrieval/accuracy metrics).")
_register("inference", "Run a checkpoint on images and write its predictions.")
_register("export", "Export a checkpoint to ONNX (dynamic batch) and check it with onnxruntime.")
_register("gen_trt_engine", "Build a TensorRT engine from an exported ONNX file (needs a GPU).")
