"""Masked auto-encoder trainer (``automl train --model mae``)."""

from trainers.mae.plugin import MaeTrainer

plugin = MaeTrainer()

__all__ = ["MaeTrainer", "plugin"]
