"""The search controller: resolving a command into a search (:mod:`.controller`), running a backend
picked by name (:mod:`automl.trials.registry`), promotion and the summary (:mod:`.promote`).

What the controller and the backends share sits below both in :mod:`automl.trials` (records, run
folder, algorithms, slots, the trial worker, outcome rules); the backends are in
:mod:`automl.backends`, which this package never imports."""
