"""ml_recog: metric-learning recognition (TAO's ``ml_recog``) as an automl trainer plugin.

Entry point ``trainers.ml_recog:plugin`` (group ``automl.trainers``).
"""

from trainers.ml_recog.plugin import MLRecogPlugin

plugin = MLRecogPlugin()

__all__ = ["MLRecogPlugin", "plugin"]
