"""Lightning callbacks shared by all trainers."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import torch

from automl.reporting import Reporter


def _number(value) -> float | None:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None
        value = value.detach().cpu().item()
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class ReportingCallback(pl.Callback):
    """Hands each validated epoch's metrics to a :class:`~automl.reporting.Reporter` and stops the
    trainer when ``reporter.should_stop()``.

    Reports at the end of the training epoch in which validation ran: by then the epoch's training
    loss is aggregated and :class:`~lightning.pytorch.callbacks.ModelCheckpoint` has written
    ``last.ckpt`` (the ``checkpoint`` in the report), so a trial paused here always has its checkpoint.
    Runs on global rank 0 only; the stop decision is broadcast so every DDP rank stops after the
    same epoch.
    """

    def __init__(self, reporter: Reporter, monitor: str, checkpoint_dir: Path | None = None):
        self.reporter = reporter
        self.monitor = monitor
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.history: list[dict[str, float]] = []
        self._validated = False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._validated:
            return
        self._validated = False
        stop = False
        if trainer.is_global_zero:
            metrics = {}
            for key, value in trainer.callback_metrics.items():
                number = _number(value)
                if number is not None:
                    metrics[key] = number
            if self.monitor not in metrics:
                metrics[self.monitor] = math.nan
            checkpoint = self.checkpoint_dir / "last.ckpt" if self.checkpoint_dir else None
            if checkpoint is not None and not checkpoint.exists():
                checkpoint = None
            self.history.append({"epoch": trainer.current_epoch, **metrics})
            self.reporter.report(trainer.current_epoch, metrics, checkpoint)
            stop = bool(self.reporter.should_stop())
        stop = trainer.strategy.broadcast(stop, src=0)
        if stop:
            trainer.should_stop = True
