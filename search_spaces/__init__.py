"""Schemas (TAO dialect) and spec templates shipped with the in-tree trainers."""
