"""One call that turns a LightningModule + DataModule + spec into a finished training run.

:meth:`automl.plugins.TrainerPlugin.train` seeds the run, has the plugin build its data and model and
calls :func:`fit`; everything else (devices, DDP, reporting, checkpoints, resume, the ``max_epochs`` /
``num_epochs`` split) is decided here, once, for all models.

Spec keys read (TAO names, all under ``train``): ``num_epochs`` (schedule horizon),
``validation_interval``, ``checkpoint_interval`` + ``checkpoint_interval_unit``,
``resume_training_checkpoint_path``, ``seed``, ``num_gpus`` / ``gpu_ids`` / ``num_nodes``,
``cudnn.benchmark`` / ``cudnn.deterministic``. ``clip_grad_norm`` is applied here for modules with
automatic optimisation; modules that optimise manually clip themselves.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from automl.errors import AutomlError
from automl.plugins import Monitor
from automl.reporting import FileReporter, Reporter, read_metrics
from automl.training.callbacks import ReportingCallback
from automl.training.checkpoints import BEST, LAST, checkpoint_callbacks
from automl.training.devices import plan_from_spec

log = logging.getLogger("automl.training")


@dataclass
class FitResult:
    best_value: float | None
    best_epoch: int | None
    best_checkpoint: str | None
    last_checkpoint: str | None
    epochs_run: int
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _section(spec: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = spec.get(name) or {}
    return dict(value) if isinstance(value, Mapping) else {}


def seed_from_spec(spec: Mapping[str, Any]) -> None:
    """``train.seed`` (>= 0) seeds Python, NumPy and torch, and the DataLoader workers."""
    seed = _section(spec, "train").get("seed")
    if seed is not None and int(seed) >= 0:
        pl.seed_everything(int(seed), workers=True, verbose=False)


def horizon(spec: Mapping[str, Any], max_epochs: int | None) -> tuple[int, int]:
    """``(num_epochs, stop_epoch)``: the schedule horizon and the epoch count this run stops at."""
    train = _section(spec, "train")
    num_epochs = int(train.get("num_epochs") or 1)
    if num_epochs < 1:
        raise AutomlError(f"train.num_epochs must be >= 1, got {num_epochs}")
    stop = num_epochs if max_epochs is None else max(1, min(int(max_epochs), num_epochs))
    return num_epochs, stop


def build_trainer(spec: Mapping[str, Any], results_dir: Path, monitor: Monitor, reporter: Reporter,
                  max_epochs: int | None = None, extra_callbacks: list[pl.Callback] | None = None,
                  gradient_clip: bool = True) -> tuple[pl.Trainer, ReportingCallback]:
    """A configured :class:`lightning.Trainer` (exposed for trainers that need ``trainer.validate``)."""
    train = _section(spec, "train")
    _, stop = horizon(spec, max_epochs)
    plan = plan_from_spec(train, "train")
    for note in plan.notes:
        log.info(note)
    log.info("devices: %s x%d on %d node(s)%s", plan.accelerator, plan.world_size // plan.num_nodes, plan.num_nodes,
             f", DDP over {plan.backend}" if plan.ddp else "")
    # Lightning's banner ("GPU available: ...", tips) is noise next to our one-line errors and --json output.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    cudnn = train.get("cudnn") or {}
    torch.backends.cudnn.benchmark = bool(cudnn.get("benchmark", False))
    torch.backends.cudnn.deterministic = bool(cudnn.get("deterministic", False))
    checkpoint_dir = Path(results_dir) / "checkpoints"
    reporting = ReportingCallback(reporter, monitor.metric, checkpoint_dir)
    callbacks: list[pl.Callback] = [reporting, *(extra_callbacks or [])]
    callbacks += checkpoint_callbacks(checkpoint_dir, monitor.metric, monitor.mode,
                                      train.get("checkpoint_interval"), train.get("checkpoint_interval_unit", "epoch"))
    clip = float(train.get("clip_grad_norm") or 0.0)
    trainer = pl.Trainer(
        **plan.trainer_kwargs(),
        max_epochs=stop,
        check_val_every_n_epoch=max(1, int(train.get("validation_interval") or 1)),
        num_sanity_val_steps=0,
        logger=False,  # metrics go to the Reporter (metrics.jsonl) and from there to the tracker
        callbacks=callbacks,
        default_root_dir=str(results_dir),
        enable_model_summary=False,
        enable_progress_bar=sys.stderr.isatty(),
        # Our samplers are distributed-aware themselves (see PKBatchSampler) and validation embeds the
        # whole reference/query sets on every rank; Lightning must not re-wrap them.
        use_distributed_sampler=False,
        gradient_clip_val=clip if (clip > 0 and gradient_clip) else None,
        gradient_clip_algorithm="norm" if (clip > 0 and gradient_clip) else None,
    )
    return trainer, reporting


def fit(module: pl.LightningModule, datamodule: pl.LightningDataModule, spec: Mapping[str, Any],
        results_dir: str | Path, *, monitor: Monitor, reporter: Reporter | None = None,
        max_epochs: int | None = None, extra_callbacks: list[pl.Callback] | None = None) -> FitResult:
    """Train ``module`` on ``datamodule`` as the spec says; return where the checkpoints are."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    train = _section(spec, "train")
    # Again (TrainerPlugin.train seeded before building the model): the training stream then does not
    # depend on how many random draws building the model took.
    seed_from_spec(spec)
    reporter = reporter or FileReporter(results_dir)
    resume = str(train.get("resume_training_checkpoint_path") or "").strip() or None
    if resume and not Path(resume).is_file():
        raise AutomlError(f"train.resume_training_checkpoint_path: file not found: {resume}")
    trainer, reporting = build_trainer(spec, results_dir, monitor, reporter, max_epochs, extra_callbacks,
                                       gradient_clip=module.automatic_optimization)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True if resume else None)

    checkpoint_dir = results_dir / "checkpoints"
    best_path = checkpoint_dir / f"{BEST}.ckpt"
    last_path = checkpoint_dir / f"{LAST}.ckpt"
    history = reporting.history
    if not history:  # resumed past the stop epoch, or a rank without history: use the durable record
        history = [{"epoch": r["epoch"], **r.get("metrics", {})} for r in read_metrics(results_dir)]
    scored = [h for h in history if isinstance(h.get(monitor.metric), float) and not math.isnan(h[monitor.metric])]
    best = None
    for h in scored:
        if best is None or monitor.better(h[monitor.metric], best[monitor.metric]):
            best = h
    return FitResult(
        best_value=best[monitor.metric] if best else None,
        best_epoch=int(best["epoch"]) if best else None,
        best_checkpoint=str(best_path) if best_path.exists() else None,
        last_checkpoint=str(last_path) if last_path.exists() else None,
        epochs_run=int(trainer.current_epoch),
        stopped_early=bool(trainer.should_stop) and trainer.current_epoch < trainer.max_epochs,
        history=history,
    )
