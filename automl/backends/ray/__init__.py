"""The Ray Tune backend (``--backend ray``), one job per module: :mod:`.cluster` (where it runs, checked
before anything starts), :mod:`.search` (the algorithm as Tune's searcher and scheduler), :mod:`.trial`
(inside a trial's Ray worker), :mod:`.driver` (Tune's events -> run folder, tracker, progress) and
:mod:`.backend` (:class:`RayBackend`: connecting, the Tuner, resume). Every Ray Tune call of a search
is in this package; the module docstring of :mod:`.backend` has the supported range and caveats."""

from automl.backends.ray.backend import RayBackend

__all__ = ["RayBackend"]
