"""``orcha describe KIND``: a petition kind's parameters, from its schema."""

from __future__ import annotations

import json
from typing import Any

import click

from orcha.cli.options import global_options
from orcha.cli.output import json_option, print_json
from orcha.errors import ExitCode, PetitionError


def _constraints(schema: dict[str, Any]) -> str:
    parts = []
    for key, words in (("minimum", ">="), ("maximum", "<="), ("exclusiveMinimum", ">"),
                       ("exclusiveMaximum", "<"), ("minLength", "length >="),
                       ("maxLength", "length <="), ("minItems", "items >="),
                       ("maxItems", "items <="), ("pattern", "matches")):  # fmt: skip
        if key in schema:
            parts.append(f"{words} {schema[key]}")
    if "enum" in schema:
        parts.append("one of " + ", ".join(json.dumps(v) for v in schema["enum"]))
    return ", ".join(parts)


def _type(schema: dict[str, Any]) -> str:
    kind = schema.get("type", "any")
    text = " or ".join(kind) if isinstance(kind, list) else str(kind)
    items = schema.get("items")
    if text == "array" and isinstance(items, dict) and "type" in items:
        text = f"array of {_type(items)}"
    return text


@click.command("describe")
@click.argument("kind_name", metavar="KIND")
@json_option
@global_options
@click.pass_context
def describe(ctx: click.Context, kind_name: str, as_json: bool) -> int:
    """Show what parameters a petition kind takes (its schema), and which plugin has it."""
    group = ctx.find_root().command
    found = [
        (entry, entry.kinds[kind_name])
        for entry in group.plugins()  # type: ignore[attr-defined]
        if kind_name in entry.kinds
    ]
    if not found:
        known = sorted(k for e in group.plugins() for k in e.kinds)  # type: ignore[attr-defined]
        raise PetitionError(
            f"no installed plugin provides petition kind {kind_name!r} (installed: "
            f"{', '.join(known) or 'none'}); see 'orcha ls'",
            ExitCode.UNKNOWN,
        )
    entry, kind = found[0]
    schema = kind.schema
    if as_json:
        print_json({"kind": kind.name, "plugin": entry.name, "description": kind.help,
                    "schema": schema})  # fmt: skip
        return 0
    click.echo(f"{kind.name} (plugin {entry.name}): {kind.help or 'no description'}")
    if schema is None:
        click.echo("parameters: not declared (the kind checks them itself)")
        return 0
    properties: dict[str, Any] = schema.get("properties", {})
    if not properties:
        click.echo("parameters: none")
        return 0
    required = set(schema.get("required", []))
    rows = [["PARAMETER", "TYPE", "DEFAULT", "CONSTRAINTS", "DESCRIPTION"]]
    for name, sub in properties.items():
        default = json.dumps(sub["default"]) if "default" in sub else (
            "(required)" if name in required else "-")  # fmt: skip
        rows.append([name, _type(sub), default, _constraints(sub) or "-",
                     sub.get("description", "")])  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:4], widths, strict=True)] + [row[4]]
        click.echo("  ".join(cells).rstrip())
    if schema.get("additionalProperties") is False:
        click.echo("no other parameters are accepted")
    return 0
