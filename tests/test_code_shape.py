"""The shape of the code (issue 16): which way imports run, and how long functions and modules get.

The import graph is read statically with ``ast``: every ``import`` and ``from ... import`` in a module
counts wherever it stands -- at the top, inside a function, under ``if TYPE_CHECKING:`` -- with relative
imports resolved, because an import that only runs lazily still ties the two modules together for a
reader. ``from pkg import name`` is an edge to the submodule ``pkg.name`` when there is one, else to
``pkg``. Importing ``a.b.c`` is an edge to ``a.b.c`` only, not to the packages above it that Python
initialises first (every package's ``__init__`` would otherwise close a circle with its submodules).
"""

from __future__ import annotations

import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 500


def _modules(root: Path, package: str) -> dict[str, Path]:
    """Every module under ``root/package`` by dotted name (a package by its own name)."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules that module ``name`` (at ``path``) imports, as dotted names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                out.add(submodule if submodule in known else module)
    out.discard(name)
    return out


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package tree it imports."""
    known = _modules(root, package)
    return {name: _imported(name, path, known) & known.keys() for name, path in known.items()}


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def long_functions(root: Path, *packages: str) -> list[str]:
    out = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        out.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length} lines)")
    return out


def long_modules(root: Path, *packages: str) -> list[str]:
    out = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            length = len(path.read_text().splitlines())
            if length > MAX_MODULE_LINES:
                out.append(f"{path.relative_to(root)} ({length} lines)")
    return out


def test_the_circle_finder_sees_lazy_and_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from pkg.a import A\n")
    (pkg / "a.py").write_text("A = 1\n\ndef late():\n    from . import b\n    return b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import A\n")
    (pkg / "c.py").write_text("import pkg.b\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": {"pkg.b"}}
    assert import_circles(graph) == [["pkg.a", "pkg.b"]]


def test_no_import_circle_inside_automl_space():
    assert import_circles(import_graph(ROOT, "automl/space")) == []


def test_no_import_circle_inside_automl_tracking():
    assert import_circles(import_graph(ROOT, "automl/tracking")) == []


def test_search_and_backends_import_one_way():
    graph = import_graph(ROOT, "automl")

    def edges(source: str, target: str) -> list[str]:
        return sorted(f"{a} -> {b}" for a, targets in graph.items() if a.startswith(source)
                      for b in targets if b.startswith(target))

    there, back = edges("automl.search", "automl.backends"), edges("automl.backends", "automl.search")
    assert there == [], "automl.search picks a backend by name (automl.trials.registry), never by import"
    assert back == [], "automl.backends reads the records from automl.trials, never from the controller"


def test_no_function_over_80_lines():
    assert long_functions(ROOT, "automl", "trainers") == []


def test_no_module_over_500_lines():
    assert long_modules(ROOT, "automl", "trainers") == []



def test_fsutil_is_a_leaf():
    graph = import_graph(ROOT, "automl")
    assert graph["automl.fsutil"] == set(), "automl.fsutil is what every layer may import: it imports no automl module"
