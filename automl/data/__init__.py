"""Shared data tools: safe archive extraction, class-folder image datasets, generated glyph datasets,
and a Fashion-MNIST reader for Debian's ``dataset-fashion-mnist`` package."""
