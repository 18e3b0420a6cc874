"""The search controller: algorithms (:mod:`.algorithms`), slots and GPU assignment (:mod:`.slots`),
the trial worker process (:mod:`.worker`), the run folder (:mod:`.rundir`), promotion
(:mod:`.promote`) and the entry points (:mod:`.controller`). The backends that run trials are in
:mod:`automl.backends`."""
