"""In-tree trainer plugins, one package per model."""

from pathlib import Path

#: the in-tree schemas and spec templates (``<model>.train.schema.json``, ``<model>/spec_template_<action>.yaml``)
SEARCH_SPACES = Path(__file__).resolve().parents[1] / "search_spaces"
