"""Bridges an argparse plugin (the original Orcha style) into a click command."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from orcha.plugins import BasePlugin


def bridge(plugin: BasePlugin) -> click.Command:
    """A click command named after ``plugin`` that hands its arguments to argparse."""

    @click.pass_context
    def callback(ctx: click.Context) -> Any:
        from orcha.cli.options import settings_from

        settings_from(ctx)
        parser = argparse.ArgumentParser(prog=f"orcha {plugin.name}", description=plugin.help)
        plugin.create_parser(parser)
        try:
            namespace = parser.parse_args(ctx.args)
        except SystemExit as e:  # argparse printed its usage/help itself
            return e.code if isinstance(e.code, int) else 2
        return plugin.handle(namespace)

    return click.Command(
        name=plugin.name,
        callback=callback,
        help=plugin.help,
        short_help=plugin.help,
        add_help_option=False,  # argparse answers --help for the plugin
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
