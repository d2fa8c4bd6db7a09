"""``orcha kinds ls|add|rm``: petition templates defined while the service runs."""

from __future__ import annotations

import json
from typing import Any

import click

from orcha.cli.connect import client
from orcha.cli.options import global_options
from orcha.cli.output import json_option, print_json


@click.group("kinds", invoke_without_command=True)
@click.pass_context
def kinds(ctx: click.Context) -> int | None:
    """Runtime kinds: reusable petition templates (a kind, fixed parameters, resources).

    A template is kept by the service across restarts and usable at once, e.g. with
    'orcha send ID --kind NAME'. What a submission gives itself wins over the template.
    Alone, 'orcha kinds' lists them, as 'orcha kinds ls'.
    """
    if ctx.invoked_subcommand is None:
        return int(ctx.invoke(kinds_ls))
    return None


def _value(key: str, text: str) -> Any:
    """A --set value: JSON if it parses, else text; sizes and durations as orcha reads them."""
    from orcha.units import parse_duration, parse_size

    try:
        value = json.loads(text)
    except ValueError:
        value = text
    if isinstance(value, str):
        try:
            if key == "mem":
                return parse_size(value)
            if key in ("timeout", "retry_delay"):
                return parse_duration(value)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint=f"'--set {key}'") from None
    if key in ("after", "after_any", "notify") and isinstance(value, str):
        return [v for v in value.split(",") if v]
    return value


def _settings(ctx: click.Context, param: click.Parameter, items: tuple[str, ...]) -> dict[str, Any]:
    """The --set items as {key: value}; the requests among them (cpus, gpus, timeout...)
    checked here by the service's rules (a usage error, exit 2, rather than its 204). The
    kind's own parameters are the service's to check: it has the kind."""
    from orcha.protocol.schedule import Schedule

    out: dict[str, Any] = {}
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="'--set'")
        out[key] = _value(key, text)
    requests = {k: v for k, v in out.items() if k in Schedule.FIELDS}
    for key, value in requests.items():
        try:
            Schedule.from_wire({key: value})
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint=f"'--set {key}'") from None
    try:
        Schedule.from_wire(requests)  # what only holds of them together
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--set'") from None
    return out


def _kind_name(ctx: click.Context, param: click.Parameter, name: str) -> str:
    """A new kind's name, checked here (a usage error, exit 2) by the rules the service
    applies: a group's, safe on command lines and in logs."""
    from orcha.protocol.schedule import check_group

    try:
        return check_group(name)
    except ValueError as e:
        raise click.BadParameter(str(e).replace("group name", "kind name")) from None


@kinds.command("ls")
@json_option
@global_options
@click.pass_context
def kinds_ls(ctx: click.Context, as_json: bool) -> int:
    """List the runtime kinds: parent kind, settings, and whether usable now."""
    with client(ctx) as service:
        listing = service.kinds()
    if as_json:
        print_json({"kinds": listing})
        return 0
    if not listing:
        click.echo("orcha: no runtime kinds; 'orcha kinds add NAME --from KIND' defines one",
                   err=True)  # fmt: skip
    # Columns aligned: each as wide as its longest entry.
    name_width = max((len(k["name"]) for k in listing), default=0)
    from_width = max((len(k["from"]) for k in listing), default=0)
    for k in listing:
        settings = {**k["params"], **k["schedule"]}
        words = " ".join(f"{key}={json.dumps(v)}" for key, v in settings.items())
        state = "" if k["available"] else f"  (unavailable: no loaded plugin has {k['from']})"
        line = f"{k['name']:<{name_width}}  from {k['from']:<{from_width}}  {words}{state}"
        click.echo(line.rstrip())
    return 0


@kinds.command("add")
@click.argument("name", callback=_kind_name)
@click.option("--from", "parent", required=True, metavar="KIND",
              help="The kind it is a template of (see 'orcha ls').")  # fmt: skip
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", callback=_settings,
              help="A parameter of that kind, or cpus, mem, gpus, group, timeout, retries, "
              "retry_delay, notify. VALUE is JSON or text. Repeatable.")  # fmt: skip
@json_option
@global_options
@click.pass_context
def kinds_add(
    ctx: click.Context, name: str, parent: str, settings: dict[str, Any], as_json: bool
) -> int:
    """Define runtime kind NAME from KIND with fixed settings (replacing one of that name).

    Refused if it asks for more CPUs, memory or GPUs than the service has. Options given
    to 'orcha send/run --kind NAME' (--cpus, --timeout...) override its settings. It may
    leave out parameters KIND requires: 'orcha kinds add big --from shell --set cpus=8',
    then 'orcha run --kind big -- CMD' gives each run its command.
    """
    with client(ctx) as service:
        kind = service.add_kind(name, parent, settings)
    if as_json:
        print_json({"kind": kind})
        return 0
    click.echo(f"orcha: kind {kind['name']} defined from {parent}", err=True)
    return 0


@kinds.command("rm")
@click.argument("name")
@json_option
@global_options
@click.pass_context
def kinds_rm(ctx: click.Context, name: str, as_json: bool) -> int:
    """Remove runtime kind NAME (queued petitions of it keep their settings)."""
    from orcha.errors import NoPetitionError

    with client(ctx) as service:
        removed = service.remove_kind(name)
    if as_json:
        print_json({"name": name, "removed": removed})
    if not removed:
        raise NoPetitionError(f"there is no runtime kind {name!r}; see 'orcha kinds ls'")
    if not as_json:
        click.echo(f"orcha: kind {name} removed", err=True)
    return 0
