"""automl: hyperparameter search over TAO-dialect train schemas with pluggable Lightning trainers."""

__version__ = "0.1.0"
