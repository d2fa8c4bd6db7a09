"""The import graph of ``orcha`` and ``orcha_plugins``: no cycles, imports point down.

The layers and the rules between them are :mod:`orcha.layers` (ARCHITECTURE.md, and the
module map in docs/internals.rst).

Every import counts, at module level or inside a function, except those under
``if TYPE_CHECKING:`` (they never run). The scan reads the source with :mod:`ast`; it
imports nothing, so it also sees imports on paths the other tests never take.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from orcha.layers import FORBIDDEN, layer_of

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("orcha", "orcha_plugins")

#: Longest module, in lines. One responsibility per module keeps them well under it.
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for dirpath, _, files in os.walk(ROOT / package):
            for name in files:
                if name.endswith(".py"):
                    path = Path(dirpath) / name
                    found[_module_name(path)] = path
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(name: str) -> str | None:
    """The module of ours that importing ``name`` runs (its longest known prefix)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path) -> set[str]:
    """The modules of ours that ``module`` imports, anywhere but under TYPE_CHECKING."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name)
                if target:
                    out.add(target)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                # `from pkg import mod` imports the module pkg.mod; `from mod import f`, mod.
                target = _resolve(f"{base}.{alias.name}") if base else None
                if target is None or target == base.rpartition(".")[0]:
                    target = _resolve(base)
                if target:
                    out.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    out.discard(module)
    return out


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm,
    iterative so a deep graph cannot exhaust the stack)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return components


def test_the_scan_sees_the_code() -> None:
    # A broken scan would pass every rule below: check it finds known edges.
    assert len(MODULES) > 40
    assert "orcha.states" in GRAPH["orcha.service.scheduler"]
    assert "orcha.protocol.messages" in GRAPH["orcha.client.attach"]
    # An import inside a function counts; one under TYPE_CHECKING does not.
    assert "orcha.cli.app" in GRAPH["orcha.cli.main"]


def test_there_is_no_import_cycle() -> None:
    cycles = _cycles(GRAPH)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down(module: str) -> None:
    layer = layer_of(module)
    wrong = sorted(
        target for target in GRAPH[module] if layer_of(target) in FORBIDDEN.get(layer, frozenset())
    )
    assert not wrong, f"{module} ({layer}) imports {wrong}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_too_long(module: str) -> None:
    lines = MODULES[module].read_text().count("\n")
    assert lines <= MAX_LINES, f"{module} has {lines} lines (at most {MAX_LINES})"


def test_imports_in_functions_count_and_type_checking_ones_do_not(tmp_path: Path) -> None:
    source = tmp_path / "fake.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "TYPE_CHECKING = False\n"
        "if TYPE_CHECKING:\n"
        "    from orcha.service import scheduler\n"
        "else:\n"
        "    import orcha.states\n"
        "def f():\n"
        "    from orcha import errors\n"
        "    from .protocol.messages import STDOUT\n"
    )
    assert _imports("orcha.fake", source) == {
        "orcha.states", "orcha.errors", "orcha.protocol.messages"
    }  # fmt: skip
