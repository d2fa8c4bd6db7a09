"""Plugins' commands in the CLI: discovery plus the bridge for argparse plugins.

Discovery (:mod:`orcha.plugins.discovery`) finds the plugins and the command objects
their ``commands()`` hooks give; a plugin of the original Orcha API brings an argparse
parser instead, which :func:`bridge` turns into a click command named after it. The CLI
calls :func:`discover` here, so that every entry's ``commands`` holds click commands.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, NoReturn

import click

from orcha.errors import NoServiceError
from orcha.plugins.discovery import LoadedPlugin
from orcha.plugins.discovery import discover as discover_plugins

if TYPE_CHECKING:
    from orcha.plugins.contract import BasePlugin

__all__ = ["OneLineParser", "bridge", "discover", "with_commands"]


def discover(disabled: frozenset[str] = frozenset()) -> list[LoadedPlugin]:
    """:func:`orcha.plugins.discovery.discover`, each argparse plugin's command bridged."""
    return with_commands(discover_plugins(disabled))


def with_commands(entries: list[LoadedPlugin]) -> list[LoadedPlugin]:
    """``entries``, the command of each loaded argparse plugin added to its ``commands``
    (first, as it is the plugin's own). Discovery already checked that no one else has
    its name."""
    for entry in entries:
        plugin = entry.plugin
        if plugin is not None and plugin.is_argparse and plugin.name not in entry.commands:
            command = bridge(plugin, own_service=not entry.kinds)
            entry.commands = {plugin.name: command, **entry.commands}
    return entries


class OneLineParser(argparse.ArgumentParser):
    """The parser of an argparse plugin's command: argparse's, but a usage error is one
    line, as orcha's own commands say theirs (``orcha hello-world send: the following
    arguments are required: ID (see 'orcha hello-world send --help')``), not the usage
    block and ``PROG: error: ...``; exit code 2. Its subparsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        see = f" (see '{self.prog} --help')" if self.add_help else ""
        self.exit(2, f"{self.prog}: {message}{see}\n")


def bridge(plugin: BasePlugin, own_service: bool = False) -> click.Command:
    """A click command named after ``plugin`` that hands its arguments to argparse.
    ``own_service``: the plugin brings its own service (the original API's, as the
    tutorial's hello-world: no kinds), so when none runs, its client says to start that
    one rather than 'orcha serve' (which would refuse its messages)."""

    @click.pass_context
    def callback(ctx: click.Context) -> Any:
        from orcha.cli.options import settings_from
        from orcha.cli.verbose import report

        report(settings_from(ctx))
        parser = OneLineParser(prog=f"orcha {plugin.name}", description=plugin.help)
        plugin.create_parser(parser)
        try:
            namespace = parser.parse_args(ctx.args)
        except SystemExit as e:  # argparse printed its help, or the parser its error
            return e.code if isinstance(e.code, int) else 2
        try:
            return plugin.handle(namespace)
        except NoServiceError as e:
            if not (own_service and e.advises_serve):
                raise
            advice = _start_own_service(parser, f"orcha {plugin.name}")
            raise NoServiceError(e.address, e.reason, advice) from e

    return click.Command(
        name=plugin.name,
        callback=callback,
        help=plugin.help,
        short_help=plugin.help,
        add_help_option=False,  # argparse answers --help for the plugin
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )


def _start_own_service(parser: argparse.ArgumentParser, prog: str) -> str:
    """What to run when a plugin's own service is not running: its ``serve`` subcommand,
    as the original API's plugins name it, or where its help says how."""
    serves = any(
        isinstance(action, argparse._SubParsersAction) and "serve" in action.choices
        for action in parser._actions
    )
    not_ours = "'orcha serve' does not run its messages"
    if serves:
        return f"start the plugin's own service with '{prog} serve' ({not_ours})"
    return f"start the plugin's own service (see '{prog} --help'; {not_ours})"
