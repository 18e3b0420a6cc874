"""What the search controller (:mod:`automl.search`) and the backends (:mod:`automl.backends`) share,
below both: the records (:mod:`.records`), the run folder (:mod:`.rundir`), the algorithm registry
(:mod:`.algorithms`), slots and GPU assignment (:mod:`.slots`), the trial worker process
(:mod:`.worker`), the rules about outcomes (:mod:`.outcome`) and the backends by name
(:mod:`.registry`)."""
