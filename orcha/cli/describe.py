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


def _template(ctx: click.Context, kind_name: str, plugins: list[Any]) -> dict[str, Any]:
    """The runtime kind ``kind_name`` as the service lists it ('orcha kinds ls'). An
    UNKNOWN PetitionError if there is none, or no installed plugin has its parent; if no
    service answers, the kind is no plugin's, said as before (templates are the
    service's)."""
    from orcha.cli.connect import client
    from orcha.errors import OrchaError

    known = ", ".join(sorted(k for e in plugins for k in e.kinds)) or "none"
    unknown = f"no installed plugin provides petition kind {kind_name!r} (installed: {known})"
    try:
        with client(ctx) as service:
            listing = service.kinds()
    except OrchaError:
        raise PetitionError(f"{unknown}; see 'orcha ls'", ExitCode.UNKNOWN) from None
    found = [k for k in listing if k["name"] == kind_name]
    if not found:
        raise PetitionError(
            f"{unknown} and the service has no runtime kind of that name; see 'orcha ls' "
            "and 'orcha kinds ls'",
            ExitCode.UNKNOWN,
        )
    if not any(found[0]["from"] in e.kinds for e in plugins):
        raise PetitionError(
            f"{kind_name!r} is a runtime kind from {found[0]['from']!r}, which no installed "
            f"plugin provides (installed: {known}); see 'orcha ls'",
            ExitCode.UNKNOWN,
        )
    return dict(found[0])


@click.command("describe")
@click.argument("kind_name", metavar="KIND")
@json_option
@global_options
@click.pass_context
def describe(ctx: click.Context, kind_name: str, as_json: bool) -> int:
    """Show what parameters a petition kind takes (its schema), and which plugin has it.
    A runtime kind ('orcha kinds add', asked of the service): the kind it is a template
    of, its settings, and that kind's parameters, the template's values as defaults."""
    group = ctx.find_root().command
    plugins = group.plugins()  # type: ignore[attr-defined]
    template = None
    name = kind_name
    if not any(kind_name in entry.kinds for entry in plugins):
        template = _template(ctx, kind_name, plugins)
        name = template["from"]
    entry, kind = next((e, e.kinds[name]) for e in plugins if name in e.kinds)
    schema = kind.schema
    if as_json:
        if template is not None:
            template = {k: template[k] for k in ("from", "params", "schedule")}
        print_json({"kind": kind_name, "plugin": entry.name, "description": kind.help,
                    "schema": schema, "template": template})  # fmt: skip
        return 0
    fixed: dict[str, Any] = {}
    if template is None:
        click.echo(f"{kind.name} (plugin {entry.name}): {kind.help or 'no description'}")
    else:
        fixed = template["params"]
        click.echo(f"{kind_name} (runtime kind from {name}, plugin {entry.name}): "
                   f"{kind.help or 'no description'}")  # fmt: skip
        settings = {**fixed, **template["schedule"]}
        words = " ".join(f"{k}={json.dumps(v)}" for k, v in settings.items()) or "none"
        click.echo(f"settings: {words} (a submission's own parameters and options "
                   "override them)")  # fmt: skip
    if schema is None:
        click.echo("parameters: not declared (the kind checks them itself)")
        return 0
    _table(schema, fixed)
    return 0


def _table(schema: dict[str, Any], fixed: dict[str, Any]) -> None:
    """The parameters ``schema`` declares, one row each; a value in ``fixed`` (a
    template's) shown as the parameter's default."""
    properties: dict[str, Any] = schema.get("properties", {})
    if not properties:
        click.echo("parameters: none")
        return
    required = set(schema.get("required", []))
    rows = [["PARAMETER", "TYPE", "DEFAULT", "CONSTRAINTS", "DESCRIPTION"]]
    for name, sub in properties.items():
        if name in fixed:
            default = json.dumps(fixed[name])
        elif "default" in sub:
            default = json.dumps(sub["default"])
        else:
            default = "(required)" if name in required else "-"
        rows.append([name, _type(sub), default, _constraints(sub) or "-",
                     sub.get("description", "")])  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:4], widths, strict=True)] + [row[4]]
        click.echo("  ".join(cells).rstrip())
    if schema.get("additionalProperties") is False:
        click.echo("no other parameters are accepted")
