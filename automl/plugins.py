"""The trainer plugin contract and its registry.

A trainer is a :class:`TrainerPlugin` registered by name, like a timm model: in-tree trainers and
separately installed packages declare an entry point in the group ``automl.trainers`` that points at
a plugin instance (or a zero-argument factory). Tests and notebooks can also call :func:`register`.

The controller knows nothing about any model: it reads the plugin's schema, samples a trial config,
writes it into the plugin's base spec and calls :meth:`TrainerPlugin.train` in a worker process.
"""

from __future__ import annotations

import abc
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Literal

from automl.errors import AutomlError, did_you_mean
from automl.reporting import Reporter
from automl.spec_keys import SpecKeys

ENTRY_POINT_GROUP = "automl.trainers"
ACTIONS = ("train", "evaluate", "inference", "export", "gen_trt_engine")


@dataclass(frozen=True)
class Monitor:
    """The metric a search optimises, e.g. ``Monitor("val Precision at Rank 1", "max")``."""

    metric: str
    mode: Literal["max", "min"]

    @property
    def direction(self) -> str:  # Optuna's spelling
        return "maximize" if self.mode == "max" else "minimize"

    def better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b


class TrainerPlugin(abc.ABC):
    """One model's trainer. Subclasses set the class attributes and implement the actions; a
    Lightning trainer supplies the parts of :meth:`train` (see there) instead of the whole action.

    Every action takes the resolved spec (a nested dict in the TAO layout) and a results directory,
    writes its outputs there, and returns a JSON-serialisable dict of results (also written to
    ``<results_dir>/<action>.json`` by the caller, so no output of the action may use that name).

    ``train`` must:
      * call ``reporter.report(epoch, metrics, checkpoint)`` after each validation, where ``metrics``
        contains ``monitor.metric``, and stop cleanly when ``reporter.should_stop()``;
      * honour ``train.num_epochs`` as the schedule horizon, and ``max_epochs`` (if given) as the
        epoch after which to stop this run: multi-fidelity search pauses a trial at a rung and
        resumes it later from ``train.resume_training_checkpoint_path`` with a larger ``max_epochs``,
        so the learning-rate schedule must not depend on ``max_epochs``;
      * save ``<results_dir>/checkpoints/best.ckpt`` (best epoch by the monitor) and ``last.ckpt``,
        loadable with ``torch.load(weights_only=True)``;
      * return at least ``{"best_value", "best_epoch", "best_checkpoint", "last_checkpoint",
        "epochs_run"}``.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    monitor: ClassVar[Monitor]
    #: other metrics the trainer reports, for objectives such as ``latency_ms:min``
    metrics: ClassVar[tuple[str, ...]] = ()
    #: the key of ``evaluate(...)`` results (under ``"metrics"`` or at the top level) that measures
    #: what ``monitor`` measures, on the held-out split a plugin's ``evaluation_keys(data_dir)`` points
    #: evaluate at. With both, a search reports baseline and winner on that split (None: validation only).
    evaluation_metric: ClassVar[str | None] = None

    #: where :meth:`schema_path` and :meth:`spec_template` look: ``<spec_dir>/<name>.train.schema.json``
    #: and ``<spec_dir>/<name>/spec_template_<action>.yaml`` (the layout of search_spaces/). A plugin
    #: that keeps them elsewhere overrides the two methods instead.
    spec_dir: ClassVar[Path | None] = None

    #: which TAO spec keys have no effect here (one warning) or are refused at some values
    #: (:mod:`automl.spec_keys`); checked by :meth:`train` and :meth:`run_action`
    spec_keys: ClassVar[SpecKeys | None] = None

    # -- metadata -----------------------------------------------------------------------------
    def schema_path(self) -> Path:
        """The train schema in TAO's dialect."""
        if self.spec_dir is None:
            raise AutomlError(f"model '{self.name}' names no train schema")
        return self.spec_dir / f"{self.name}.train.schema.json"

    def spec_template(self, action: str = "train") -> Path:
        """The default spec YAML for an action."""
        folder = (self.spec_dir or Path()) / self.name
        path = folder / f"spec_template_{action}.yaml"
        if self.spec_dir is None or not path.is_file():
            have = sorted(p.stem.removeprefix("spec_template_") for p in folder.glob("spec_template_*.yaml"))
            raise AutomlError(f"model '{self.name}' has no spec template for action '{action}'"
                              f"{'; available: ' + ', '.join(have) if have else ''}")
        return path

    def check_spec(self, spec: Mapping[str, Any], source: str, overrides: Mapping[str, Any] | None = None) -> None:
        """``spec`` against this model's train schema, as ``automl train`` and ``automl run`` check it
        before anything is written: the first problem is one :class:`~automl.errors.SpecError` line
        naming ``source`` (or ``override`` for a bad ``key=value`` among ``overrides``)."""
        from automl.space import check_spec, load_schema

        check_spec(spec, load_schema(self.schema_path()), source, overrides)

    def make_dataset(self, out_dir: Path, *, seed: int = 0, **options: Any) -> dict[str, Any]:
        """Generate a dataset in this model's TAO layout under ``out_dir`` (``automl data make``).

        Returns the dotted spec keys that point the model at it, e.g.
        ``{"dataset.train_dataset": ".../known_classes/train", ...}``. ``options`` are generator knobs
        such as ``classes``, ``per_class``, ``size``.
        """
        raise AutomlError(f"model '{self.name}' has no dataset generator")

    def data_keys(self, data_dir: Path) -> dict[str, Any]:
        """The dotted spec keys for a folder made earlier by :meth:`make_dataset` (``--data DIR``)."""
        raise AutomlError(f"model '{self.name}' cannot read a generated dataset folder")

    def data_keys_for(self, data_dir: Path, spec: Mapping[str, Any]) -> dict[str, Any]:
        """:meth:`data_keys` for the spec they go into (the user's overrides applied): a model whose
        folder use depends on the spec (mae's ``train.stage``) overrides this one, not ``data_keys``."""
        return self.data_keys(data_dir)

    #: bumped when a plugin's generated demo data changes, so a cached copy from before is made anew
    demo_data_version: ClassVar[str] = "2"

    def demo_data(self, cache_dir: Path, seed: int = 0) -> dict[str, Any]:
        """The small demo dataset a search runs on when the user gives no data: generated once into
        ``cache_dir`` and reused."""
        marker = cache_dir / ".complete"
        if not marker.exists() or marker.read_text().strip() != self.demo_data_version:
            shutil.rmtree(cache_dir, ignore_errors=True)  # a half-written or outdated copy
            keys = self.make_dataset(cache_dir, seed=seed)
            marker.write_text(self.demo_data_version)
            return keys
        return self.data_keys(cache_dir)

    # -- actions --------------------------------------------------------------------------------
    def train(
        self,
        spec: Mapping[str, Any],
        results_dir: Path,
        reporter: Reporter | None = None,
        max_epochs: int | None = None,
    ) -> dict[str, Any]:
        """Seed, build the data, build the model, fit (:func:`automl.training.runner.fit`).

        Lightning trainers supply the parts (:meth:`train_spec`, :meth:`build_datamodule`,
        :meth:`build_module`, and where they differ :meth:`fit_monitor` and :meth:`train_summary`);
        a trainer without Lightning overrides this method whole.
        """
        from automl.training.runner import fit, horizon, seed_from_spec

        self.check_spec_keys(spec, "train")
        spec = self.train_spec(spec)
        seed_from_spec(spec)  # before anything is built: the initial weights follow train.seed too
        datamodule = self.build_datamodule(spec)
        module = self.build_module(spec, datamodule)
        monitor = self.fit_monitor(datamodule, reporter)
        result = fit(module, datamodule, spec, results_dir, monitor=monitor, reporter=reporter,
                     max_epochs=max_epochs).as_dict()
        result.update(monitor=monitor.metric, mode=monitor.mode, num_epochs=horizon(spec, None)[0],
                      **self.train_summary(datamodule, module))
        return result

    def check_spec_keys(self, spec: Mapping[str, Any], action: str) -> list[str]:
        """Refuse values this trainer cannot honour; warn once about keys with no effect here."""
        return self.spec_keys.check(spec, action) if self.spec_keys is not None else []

    def train_spec(self, spec: Mapping[str, Any]) -> Mapping[str, Any]:
        """The spec training runs on: defaults filled in, values the trainer cannot honour refused."""
        return spec

    def build_datamodule(self, spec: Mapping[str, Any]) -> Any:
        """The ``LightningDataModule`` (reading and checking the dataset keys)."""
        raise AutomlError(f"model '{self.name}' has no train action")

    def build_module(self, spec: Mapping[str, Any], datamodule: Any) -> Any:
        """The ``LightningModule``, with any pretrained weights the spec names already loaded."""
        raise AutomlError(f"model '{self.name}' has no train action")

    def fit_monitor(self, datamodule: Any, reporter: Reporter | None) -> Monitor:
        """The metric that picks ``best.ckpt`` for this run (the search's ``monitor`` by default)."""
        return self.monitor

    def train_summary(self, datamodule: Any, module: Any) -> dict[str, Any]:
        """Trainer-specific entries of the train result (data sizes, pretrained-weight notes)."""
        return {}

    def evaluate(self, spec: Mapping[str, Any], results_dir: Path) -> dict[str, Any]:
        raise AutomlError(f"model '{self.name}' has no evaluate action")

    def inference(self, spec: Mapping[str, Any], results_dir: Path) -> dict[str, Any]:
        raise AutomlError(f"model '{self.name}' has no inference action")

    def export(self, spec: Mapping[str, Any], results_dir: Path) -> dict[str, Any]:
        raise AutomlError(f"model '{self.name}' has no export action")

    def gen_trt_engine(self, spec: Mapping[str, Any], results_dir: Path) -> dict[str, Any]:
        raise AutomlError(f"model '{self.name}' has no gen_trt_engine action")

    def run_action(self, action: str, spec: Mapping[str, Any], results_dir: Path) -> dict[str, Any]:
        if action not in ACTIONS:
            raise AutomlError(f"unknown action '{action}'; allowed: {', '.join(ACTIONS)}")
        if action != "train":  # train checks in train(), which searches call directly
            self.check_spec_keys(spec, action)
        return getattr(self, action)(spec, results_dir)


_registered: dict[str, TrainerPlugin | Callable[[], TrainerPlugin]] = {}
_loaded: dict[str, TrainerPlugin] = {}


def register(plugin: TrainerPlugin | Callable[[], TrainerPlugin], name: str | None = None) -> None:
    """Register a plugin in this process (entry points are found without this)."""
    key = name or plugin.name  # type: ignore[union-attr]
    _registered[key] = plugin
    _loaded.pop(key, None)


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    return sorted(set(_entry_points()) | set(_registered))


def get_trainer(name: str) -> TrainerPlugin:
    if name in _loaded:
        return _loaded[name]
    if name in _registered:
        obj = _registered[name]
    else:
        eps = _entry_points()
        if name not in eps:
            names = available()
            raise AutomlError(
                f"unknown model '{name}'{did_you_mean(name, names)}; available: {', '.join(names) or 'none'}"
            )
        obj = eps[name].load()
    plugin = obj() if callable(obj) and not isinstance(obj, TrainerPlugin) else obj
    if not isinstance(plugin, TrainerPlugin):
        raise AutomlError(f"trainer '{name}' does not provide a TrainerPlugin (got {type(plugin).__name__})")
    _loaded[name] = plugin
    return plugin
