"""Person re-identification trainer (``automl train --model reid``)."""

from trainers.reid.plugin import ReidTrainer

plugin = ReidTrainer()

__all__ = ["ReidTrainer", "plugin"]
