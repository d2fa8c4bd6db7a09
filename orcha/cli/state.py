"""``orcha state ls|get|set|rm PLUGIN [KEY] [VALUE]``: plugins' persistent state."""

from __future__ import annotations

import json
from typing import Any

import click

from orcha.cli.connect import client
from orcha.cli.options import global_options
from orcha.cli.output import json_option, print_json


@click.group("state")
def state() -> None:
    """A plugin's persistent key-value state (JSON values), kept by the service."""


@state.command("ls")
@click.argument("plugin")
@json_option
@global_options
@click.pass_context
def state_ls(ctx: click.Context, plugin: str, as_json: bool) -> int:
    """Print every key of PLUGIN's state with its value (JSON), a tab between them."""
    with client(ctx) as service:
        items = service.state(plugin)
    if as_json:
        print_json({"plugin": plugin, "state": items})
        return 0
    for key, value in items.items():
        click.echo(f"{key}\t{json.dumps(value)}")
    return 0


@state.command("get")
@click.argument("plugin")
@click.argument("state_key", metavar="KEY")
@global_options
@click.pass_context
def state_get(ctx: click.Context, plugin: str, state_key: str) -> int:
    """Print the value (JSON) of KEY in PLUGIN's state."""
    with client(ctx) as service:
        value = service.state_get(plugin, state_key)
    click.echo(json.dumps(value))
    return 0


def _json(ctx: click.Context, param: click.Parameter, text: str) -> Any:
    try:
        value = json.loads(text, parse_constant=_not_json)
        json.dumps(value, allow_nan=False)  # 1e999 parses as infinity: not JSON either
        return value
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not JSON; quote text as JSON, e.g. {_as_json_text(text)}"
        ) from None


def _as_json_text(text: str) -> str:
    """``text`` as a JSON string, quoted for a shell: typed back, it is ``text``. Its
    control characters (and bytes that are not UTF-8) escaped, never printed raw."""
    import shlex

    encoded = json.dumps(text, ensure_ascii=False)
    if not encoded.isprintable():  # U+2028 and the like, or a surrogate
        encoded = json.dumps(text)
    return shlex.quote(encoded)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@state.command("set")
@click.argument("plugin")
@click.argument("state_key", metavar="KEY")
@click.argument("value", callback=_json)
@json_option
@global_options
@click.pass_context
def state_set(ctx: click.Context, plugin: str, state_key: str, value: Any, as_json: bool) -> int:
    """Set KEY in PLUGIN's state to VALUE, a JSON value (5, true, '"text"', '[1, 2]')."""
    with client(ctx) as service:
        service.state_set(plugin, state_key, value)
    if as_json:
        print_json({"plugin": plugin, "key": state_key, "value": value})
    return 0


@state.command("rm")
@click.argument("plugin")
@click.argument("state_key", metavar="KEY")
@json_option
@global_options
@click.pass_context
def state_rm(ctx: click.Context, plugin: str, state_key: str, as_json: bool) -> int:
    """Remove KEY from PLUGIN's state."""
    with client(ctx) as service:
        removed = service.state_rm(plugin, state_key)
    if as_json:
        print_json({"plugin": plugin, "key": state_key, "removed": removed})
        return 0
    if not removed:
        click.echo(f"orcha: plugin {plugin} had no state key {state_key!r}", err=True)
    return 0
