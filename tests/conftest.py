"""Settings for the whole test session."""

import os

# The suite's searches were written for one CPU trial at a time (counts of failures in a row, trial
# order); the CPU default of one slot per core has its own tests in tests/test_slots.py, which unset
# this. Set before any test starts, so every ``automl`` subprocess inherits it.
os.environ.setdefault("AUTOML_CPU_SLOTS", "1")
