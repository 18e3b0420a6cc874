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
    """Hands each validation epoch's metrics to a :class:`~automl.reporting.Reporter` and stops the
    trainer when ``reporter.should_stop()``.

    Runs on global rank 0 only; the stop decision is broadcast so every DDP rank stops after the
    same epoch. ``checkpoint`` in the report is the ``last.ckpt`` written for this epoch (Lightning
    runs :class:`~lightning.pytorch.callbacks.ModelCheckpoint` after user callbacks in the same hook,
    before the loop looks at ``should_stop``, so a paused trial always has its checkpoint).
    """

    def __init__(self, reporter: Reporter, monitor: str, checkpoint_dir: Path | None = None):
        self.reporter = reporter
        self.monitor = monitor
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.history: list[dict[str, float]] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
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
            self.history.append({"epoch": trainer.current_epoch, **metrics})
            self.reporter.report(trainer.current_epoch, metrics, checkpoint)
            stop = bool(self.reporter.should_stop())
        stop = trainer.strategy.broadcast(stop, src=0)
        if stop:
            trainer.should_stop = True
