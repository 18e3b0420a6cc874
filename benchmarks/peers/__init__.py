"""Other search systems driving our trainer, for ``benchmarks/search_quality.py``.

* :mod:`peers.tao_automl` -- TAO's own AutoML (PyPI ``nvidia-tao-automl``) from its own venv, through
  :mod:`peers.tao_driver` (runs in that venv) and :mod:`peers.train_worker` (our trainer, this venv);
* :mod:`peers.common` -- JSON-lines child processes, best-so-far curves, held-out evaluation.

``benchmarks/`` is not an installed package: scripts put ``benchmarks/`` on ``sys.path`` and import
``peers``.
"""
