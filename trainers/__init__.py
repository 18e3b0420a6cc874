"""In-tree trainer plugins, one package per model."""
