"""The package's shape: no import circle, no import against the layers, small modules.

The graph comes from ``scripts/import_graph.py`` (every import, lazy ones included); the
layers are listed there and in docs/architecture.md.
"""

import ast
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 600


@pytest.fixture(scope="module")
def graph_tool():
    spec = importlib.util.spec_from_file_location("import_graph", REPO / "scripts" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tool_finds_a_circle_and_an_upward_import(graph_tool, tmp_path):
    pkg = tmp_path / "ltbench"
    (pkg / "core").mkdir(parents=True)
    (pkg / "reports").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "__init__.py").write_text("")
    (pkg / "reports" / "__init__.py").write_text("")
    (pkg / "core" / "a.py").write_text("def f():\n    from ..reports import b  # lazy, still counted\n")
    (pkg / "reports" / "b.py").write_text("from ..core import a\n")
    graph = graph_tool._parents_implied(graph_tool.edges(graph_tool.modules(pkg)))
    assert graph_tool.circles(graph) == [["ltbench.core.a", "ltbench.reports.b"]]
    assert ("ltbench.core.a", "ltbench.reports.b") in graph_tool.upward(graph)
    assert ("ltbench.reports.b", "ltbench.core.a") not in graph_tool.upward(graph)  # downward is allowed


def test_no_import_circle_and_none_against_the_layers(graph_tool):
    graph = graph_tool._parents_implied(graph_tool.edges())
    assert len(graph) > 50  # the real package was read
    assert graph_tool.circles(graph) == []
    assert graph_tool.upward(graph) == []


def test_every_module_has_a_layer_and_every_subpackage_says_its_job(graph_tool):
    mods = graph_tool.modules()
    assert [m for m in mods if graph_tool.layer_of(m) is None] == []
    for name, path in mods.items():
        if path.name == "__init__.py":
            assert ast.get_docstring(ast.parse(path.read_text())), f"{name} has no docstring"


def test_no_module_is_past_the_size_limit(graph_tool):
    sizes = {name: len(path.read_text().splitlines()) for name, path in graph_tool.modules().items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}
