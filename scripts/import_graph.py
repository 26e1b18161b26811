"""The import graph of the ltbench package: circles and imports that run against the layers.

Every ``import`` / ``from ... import`` in the package counts, at module level or inside a
function (a lazy import is still a dependency), except those under ``if TYPE_CHECKING:``.
``from pkg import name`` where ``name`` is a submodule counts as importing that submodule.

Run ``python scripts/import_graph.py`` for a report; ``tests/test_import_graph.py`` fails on
any circle or upward import. The layers (lowest first) are :data:`LAYERS` below and in
docs/architecture.md.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = "ltbench"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# Subpackages from the bottom of the flow to the top: a module may import its own layer and
# the ones below it, never one above. Modules straight under ltbench/ are named by file.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("ltbench.core", "ltbench._version"),
    ("ltbench.evaluation",),
    ("ltbench.config",),
    ("ltbench.store",),
    ("ltbench.data",),
    ("ltbench.training",),
    ("ltbench.planning",),
    ("ltbench.execution",),
    ("ltbench.reports",),
    ("ltbench.api", "ltbench.bench", "ltbench"),
    ("ltbench.cli", "ltbench.__main__"),
)


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package, by dotted name (a package by its ``__init__``)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)
        out[name] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Import nodes of a tree, skipping ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _imports_of(child))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def _imports_of(node: ast.AST):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    yield from _imports(node)


def edges(mods: dict[str, Path] | None = None) -> dict[str, set[str]]:
    """Module → the package's modules it imports."""
    mods = mods or modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = here[: len(here) - node.level + 1] if node.level else []
                stem = ".".join(base + ([node.module] if node.module else []))
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in mods else stem for a in node.names]
            for t in targets:
                while t and t not in mods:  # ``import ltbench.data.formats.cifar`` → deepest module known
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith(PACKAGE):
                    graph[name].add(t)
        graph.setdefault(name, set())
    return dict(graph)


def _parents_implied(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Importing ``a.b.c`` runs ``a/__init__`` and ``a.b/__init__`` first: those count too."""
    out = {k: set(v) for k, v in graph.items()}
    for src, targets in graph.items():
        for t in targets:
            parts = t.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                if parent in graph and parent != src and not src.startswith(parent + "."):
                    out[src].add(parent)
    return out


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def layer_of(module: str) -> int | None:
    """Index of the layer ``module`` belongs to (longest matching prefix), or None."""
    best, depth = None, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            inside = module == p or (p != PACKAGE and module.startswith(p + "."))  # the package: itself only
            if inside and len(p) > depth:
                best, depth = i, len(p)
    return best


def upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports from a lower layer to a higher one (or from / to a module in no layer)."""
    bad = []
    for src, targets in sorted(graph.items()):
        for t in sorted(targets):
            ls, lt = layer_of(src), layer_of(t)
            if ls is None or lt is None or lt > ls:
                bad.append((src, t))
    return bad


def main() -> int:
    graph = _parents_implied(edges())
    found = circles(graph)
    bad = upward(graph)
    for comp in found:
        print(f"circle of {len(comp)}: {', '.join(comp)}")
    for src, t in bad:
        print(f"upward: {src} -> {t}  (layers {layer_of(src)} -> {layer_of(t)})")
    n_edges = sum(len(v) for v in graph.values())
    print(f"{len(graph)} modules, {n_edges} imports, {len(found)} circles, {len(bad)} upward imports")
    return 1 if found or bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
