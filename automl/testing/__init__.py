"""Test helpers that ship with the package so worker processes can load them by name.

:mod:`automl.testing.toy` is a tiny trainer plugin (entry point ``toy``) with an analytic objective,
real checkpoints and failure injection; the search tests and ``benchmarks/overhead.py`` run on it.
"""
