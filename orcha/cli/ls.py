"""``orcha ls``: the installed plugins, their versions and what they provide."""

from __future__ import annotations

import sys
from typing import Any

import click

from orcha.cli.options import global_options
from orcha.cli.output import json_option, print_json

FOOTER = "Plugins marked with an asterisk (*) are embedded plugins"


def _details(entry: Any, unconfigured: dict[str, str]) -> list[str]:
    if entry.error:
        return [f"error: {entry.error}"]
    lines = []
    if entry.name in unconfigured:
        lines.append(f"error: the service will not load it: {unconfigured[entry.name]}")
    if entry.commands:
        names = []
        for name in sorted(entry.commands):
            aliases = sorted(a for a, t in entry.aliases.items() if t == name)
            names.append(f"{name} ({', '.join(aliases)})" if aliases else name)
        lines.append("commands: " + ", ".join(names))
    if entry.kinds:
        lines.append("kinds: " + ", ".join(sorted(entry.kinds)) + " (served by 'orcha serve')")
    elif _own_service(entry):
        lines.append(
            f"service: its own, not 'orcha serve' (see 'orcha {entry.name} --help'); "
            "its commands talk only to that one"
        )
    if entry.predicates:
        lines.append("predicates: " + ", ".join(_name_of(p) for p in entry.predicates))
    if entry.sinks:
        lines.append("event sinks: " + ", ".join(_name_of(s) for s in entry.sinks))
    return lines


def _own_service(entry: Any) -> bool:
    """Whether the plugin is one of the original Orcha API that brings its own service
    (an argparse plugin without kinds, such as the tutorial's hello-world): 'orcha
    serve' cannot run what its commands send, and its service serves no kinds."""
    plugin = entry.plugin
    return plugin is not None and bool(plugin.is_argparse) and not entry.kinds


def _service(entry: Any) -> str | None:
    """Which service runs what the plugin sends (``orcha ls --json``'s ``service``)."""
    if entry.kinds:
        return "orcha serve"
    return "own" if _own_service(entry) else None


def _name_of(predicate: Any) -> str:
    return str(getattr(predicate, "__name__", None) or type(predicate).__name__)


def _unconfigured(ctx: click.Context, entries: list[Any]) -> dict[str, str]:
    """Plugins the service will leave out for want of settings, by name. An invalid
    configuration file is for 'orcha config validate' to report: nothing here then."""
    from orcha.cli.options import load_config
    from orcha.config import check_plugins
    from orcha.errors import ConfigError
    from orcha.plugins.discovery import plugins_by_name

    try:
        _, unconfigured = check_plugins(load_config(ctx), plugins_by_name(entries))
    except ConfigError:
        return {}
    return unconfigured


def _label(entry: Any) -> str:
    return entry.display if entry.plugin is not None else f"{entry.name} - not loaded"


@click.command("ls")
@json_option
@global_options
@click.pass_context
def ls(ctx: click.Context, as_json: bool) -> int:
    """List discovered plugins with their versions, commands and petition kinds."""
    from orcha import __version__

    group = ctx.find_root().command
    entries = group.plugins()  # type: ignore[attr-defined]
    unconfigured = _unconfigured(ctx, entries)
    if as_json:
        doc = {
            "orcha": __version__,
            "plugins": [
                {
                    "name": e.name,
                    "version": e.version.rpartition(" - ")[2] if e.plugin is not None else None,
                    "display": _label(e),
                    "embedded": e.embedded,
                    "origin": e.origin,
                    "module": e.module,
                    "commands": sorted(e.commands),
                    "aliases": dict(sorted(e.aliases.items())),
                    "description": (e.plugin.help if e.plugin is not None else "") or "",
                    "kinds": [
                        {"name": k.name, "description": k.help, "schema": k.schema}
                        for _, k in sorted(e.kinds.items())
                    ],
                    "predicates": [_name_of(p) for p in e.predicates],
                    "event_sinks": [_name_of(s) for s in e.sinks],
                    "service": _service(e),
                    "error": e.error or unconfigured.get(e.name),
                }
                for e in entries
            ],
        }
        print_json(doc)
        return 0
    if sys.stdout.isatty():
        from rich.markup import escape
        from rich.tree import Tree

        from orcha.cli.output import rich_console

        tree = Tree(f"[bold]orcha[/] - {__version__}")
        for e in entries:
            broken = e.error or e.name in unconfigured
            style = "red" if broken else "green" if e.embedded else "cyan"
            node = tree.add(f"[{style}]{escape(_label(e))}[/]")
            for line in _details(e, unconfigured):
                node.add(escape(line))
        console = rich_console()  # --color, NO_COLOR
        console.print(tree)
        console.print(f"\n{escape(FOOTER)}")
        return 0
    from orcha.cli.output import paint, use_color

    color = use_color()  # not a terminal: --color always or FORCE_COLOR paint it
    out = [paint("orcha", "bold", color) + f" - {__version__}"]
    for i, e in enumerate(entries):
        last = i == len(entries) - 1
        broken = e.error or e.name in unconfigured
        style = "red" if broken else "green" if e.embedded else "cyan"
        out.append(("└ " if last else "├ ") + paint(_label(e), style, color))
        out.extend(("    " if last else "│   ") + line for line in _details(e, unconfigured))
    out += ["", FOOTER]
    click.echo("\n".join(out), color=color)  # click strips colour off a terminal otherwise
    return 0
