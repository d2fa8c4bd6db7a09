"""Sphinx directives that generate reference pages from orcha's own code, and the
collector of every literal block for the examples test.

Directives (each renders what the code says, so the pages cannot drift from it):

``.. orcha-config-reference::``
    The configuration file's keys, from :data:`orcha.config.SCHEMA`.
``.. orcha-kinds-reference::``
    The petition kinds and settings of orcha's own plugins, from their schemas.
``.. orcha-state-diagram::``
    The petition lifecycle, from :mod:`orcha.states`: a graphviz diagram where ``dot``
    is installed, and always a table of the allowed transitions.
``.. orcha-exit-codes::``
    The exit codes, from :class:`orcha.errors.ExitCode` and its meanings.
``.. orcha-module-map::``
    Every module of ``orcha`` and ``orcha_plugins`` with the first line of its
    docstring, grouped by the layers of :mod:`orcha.layers`.

The collector writes ``examples.json`` into the output folder: every literal block of
every page with its page, line, language and text, and the file it was included from.
``tests/docs/test_examples.py`` runs each one according to its language.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

EXAMPLES_FILE = "examples.json"

logger = logging.getLogger(__name__)


def _cell(text: str) -> str:
    """One list-table cell: literal text never breaks the table's markup."""
    return text.replace("\n", " ").strip() or "\\-"


def _schema_rows(
    schema: dict[str, Any], prefix: str = "", required: frozenset[str] = frozenset()
) -> list[list[str]]:
    """A row per key (nested objects flattened to ``a.b``; array items to ``a[]``), its
    type and constraints worded as ``orcha describe`` words them."""
    from orcha.cli.describe import _constraints, _type

    rows: list[list[str]] = []
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        if "default" in sub:
            default = f"``{json.dumps(sub['default'])}``"
        else:
            default = "(required)" if name in required else "\\-"
        constraints = _constraints(sub)
        rows.append(
            [
                f"``{path}``",
                _type(sub),
                default,
                _cell(constraints and f"{constraints}"),
                _cell(sub.get("description", "")),
            ]
        )
        if "properties" in sub:
            rows += _schema_rows(sub, f"{path}.", frozenset(sub.get("required", [])))
        items = sub.get("items")
        if isinstance(items, dict) and "properties" in items:
            rows += _schema_rows(items, f"{path}[].", frozenset(items.get("required", [])))
        extra = sub.get("additionalProperties")
        if isinstance(extra, dict) and "properties" in extra:
            rows += _schema_rows(extra, f"{path}.NAME.", frozenset(extra.get("required", [])))
    return rows


def _list_table(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [f".. list-table:: {title}", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        first, *rest = row
        lines.append(f"   * - {first}")
        lines += [f"     - {cell}" for cell in rest]
    lines.append("")
    return lines


class _GeneratedDirective(SphinxDirective):
    """Renders the reStructuredText its :meth:`lines` returns."""

    has_content = False

    def lines(self) -> list[str]:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        container = nodes.section() if self.name.endswith("reference") else nodes.container()
        content = StringList(self.lines(), source=f"<{self.name}>")
        nested_parse_with_titles(self.state, content, container)
        return list(container.children)


SCHEMA_HEADER = ["Key", "Type", "Default", "Constraints", "Description"]


class ConfigReference(_GeneratedDirective):
    def lines(self) -> list[str]:
        from orcha.config import SCHEMA

        return _list_table("The configuration file's keys", SCHEMA_HEADER, _schema_rows(SCHEMA))


class KindsReference(_GeneratedDirective):
    def lines(self) -> list[str]:
        from orcha.plugins import discover

        out: list[str] = []
        for entry in discover():
            if not entry.embedded:
                continue
            out += [f"Plugin ``{entry.name}``", "~" * (len(entry.name) + 11), ""]
            helptext = getattr(entry.plugin, "help", "")
            if helptext:
                out += [helptext, ""]
            schema = getattr(entry.plugin, "config_schema", None)
            if schema and schema.get("properties"):
                title = f"Settings of {entry.name} (``plugins.{entry.name}.config``)"
                out += _list_table(title, SCHEMA_HEADER, _schema_rows(schema))
            for kind_name, kind in sorted(entry.kinds.items()):
                out += [f"Kind ``{kind_name}``: {kind.help or 'no description'}", ""]
                if kind.schema and kind.schema.get("properties"):
                    rows = _schema_rows(kind.schema, "", frozenset(kind.schema.get("required", [])))
                    out += _list_table(f"Parameters of {kind_name}", SCHEMA_HEADER, rows)
        return out


class StateDiagram(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        from orcha.states import FINISHED, TRANSITIONS, State

        result: list[nodes.Node] = []
        if shutil.which("dot"):
            from sphinx.ext.graphviz import graphviz

            dot = ["digraph lifecycle {", "  rankdir=LR;", "  node [shape=box, style=rounded];"]
            dot += [f'  "{s}" [peripheries=2];' for s in State if s in FINISHED]
            dot += [f'  "{a}" -> "{b}";' for a, b in TRANSITIONS]
            dot.append("}")
            node = graphviz()
            node["code"] = "\n".join(dot)
            node["options"] = {"docname": self.env.docname}
            node["alt"] = "The petition lifecycle: " + "; ".join(
                f"{a} to {b}" for a, b in TRANSITIONS
            )
            result.append(node)
        else:
            logger.info("orcha-state-diagram: 'dot' not found; the table stands alone")
        rows = [[f"``{a}``", f"``{b}``", _cell(why)] for (a, b), why in TRANSITIONS.items()]
        content = StringList(
            _list_table("The transitions", ["From", "To", "When"], rows), source="<orcha-states>"
        )
        container = nodes.container()
        self.state.nested_parse(content, 0, container)
        result += container.children
        return result


class ExitCodes(_GeneratedDirective):
    def lines(self) -> list[str]:
        from orcha.errors import EXIT_CODE_MEANINGS, RUN_CODE_MEANINGS

        rows = [[f"``{int(code)}``", f"``{code.name}``", _cell(meaning)]
                for code, meaning in EXIT_CODE_MEANINGS.items()]  # fmt: skip
        rows[3:3] = [
            [f"``{code}``", "", _cell(meaning)] for code, meaning in RUN_CODE_MEANINGS.items()
        ]
        return _list_table("Exit codes", ["Code", "Name", "Meaning"], rows)


class ModuleMap(_GeneratedDirective):
    """One table per layer: each module and what it owns (its docstring's first line,
    read with ast: nothing is imported)."""

    def lines(self) -> list[str]:
        import ast
        from pathlib import Path

        from orcha.layers import ENTRY, FIRST_PARTY, LAYERS, ORIGINAL_API, layer_of

        root = Path(__file__).resolve().parents[2]
        by_layer: dict[str, list[list[str]]] = {}
        for package in ("orcha", "orcha_plugins"):
            for path in sorted((root / package).rglob("*.py")):
                parts = list(path.relative_to(root).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts.pop()
                module = ".".join(parts)
                doc = ast.get_docstring(ast.parse(path.read_text())) or ""
                first = " ".join(doc.split("\n\n")[0].split())
                by_layer.setdefault(layer_of(module), []).append([f"``{module}``", _cell(first)])
        out: list[str] = []
        described = dict(LAYERS)
        order = [name for name, _ in LAYERS] + [ORIGINAL_API, FIRST_PARTY, ENTRY]
        for layer in order:
            rows = by_layer.pop(layer, [])
            title = f"{layer}: {described[layer]}" if layer in described else layer
            out += _list_table(_cell(title), ["Module", "What it owns"], rows)
        if by_layer:
            raise ValueError(f"modules in no known layer: {by_layer}")
        return out


def _collect(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Remember every literal block of ``docname`` for :func:`_write`."""
    found = app.env.__dict__.setdefault("orcha_examples", {})
    blocks = []
    for node in doctree.findall(nodes.literal_block):
        included = node.get("source")
        source_file = node.source or ""
        blocks.append(
            {
                "page": docname,
                "line": node.line,
                "language": node.get("language") or app.config.highlight_language,
                "text": node.astext(),
                "included": os.path.relpath(included, app.srcdir) if included else None,
                "from_docstring": bool(source_file) and not source_file.endswith(".rst"),
                "classes": list(node.get("classes", [])),
            }
        )
    found[docname] = blocks


def _write(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None:
        return
    found = app.env.__dict__.get("orcha_examples", {})
    with open(os.path.join(app.outdir, EXAMPLES_FILE), "w", encoding="utf-8") as f:
        json.dump(found, f, indent=1, sort_keys=True)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("orcha-config-reference", ConfigReference)
    app.add_directive("orcha-kinds-reference", KindsReference)
    app.add_directive("orcha-state-diagram", StateDiagram)
    app.add_directive("orcha-exit-codes", ExitCodes)
    app.add_directive("orcha-module-map", ModuleMap)
    app.connect("doctree-resolved", _collect)
    app.connect("build-finished", _write)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": False}
