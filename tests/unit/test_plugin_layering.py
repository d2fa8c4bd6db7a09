"""The plugin contract and discovery import neither the CLI nor the service.

An AST scan of ``orcha/plugins/*`` and ``orcha/kinds.py``: every import counts, at module
level or inside functions, except those under ``if TYPE_CHECKING:`` (type hints only).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = [*sorted((ROOT / "orcha" / "plugins").glob("*.py")), ROOT / "orcha" / "kinds.py"]
FORBIDDEN = ("orcha.cli", "orcha.service")


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every module ``source`` imports (absolute names), TYPE_CHECKING blocks excluded."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:  # only the "else" branch runs
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append(target)
            found.extend(f"{target}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def _forbidden(names: list[str]) -> list[str]:
    return [n for n in names if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)]


def test_the_scan_covers_the_contract_and_discovery() -> None:
    names = {p.name for p in SCANNED}
    assert {"__init__.py", "contract.py", "discovery.py", "kinds.py"} <= names


@pytest.mark.parametrize("path", SCANNED, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_imports_neither_cli_nor_service(path: Path) -> None:
    names = imports_of(path.read_text(), _module_of(path), path.name == "__init__.py")
    assert _forbidden(names) == [], f"{path.relative_to(ROOT)} imports {_forbidden(names)}"


@pytest.mark.parametrize(
    ("source", "bad"),
    [
        ("import orcha.cli.app\n", True),
        ("from orcha.service import kinds\n", True),
        ("def f():\n    from orcha.cli.bridge import bridge\n", True),
        ("class C:\n    def m(self):\n        import orcha.service.context\n", True),
        ("from ..cli import app\n", True),  # relative, from orcha.plugins.x
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import orcha.cli\n", False),
        ("if TYPE_CHECKING:\n    pass\nelse:\n    import orcha.service\n", True),
        ("import orcha.schema\nfrom orcha.errors import ExitCode\n", False),
        ("import orcha.client\n", False),
    ],
)
def test_the_scan_finds_what_it_must(source: str, bad: bool) -> None:
    """The check itself can fail: forbidden imports in each place are found."""
    names = imports_of(source, "orcha.plugins.sample")
    assert bool(_forbidden(names)) is bad, names
