"""The :class:`orcha.Client` of one command invocation."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import click

    from orcha.client.api import Client


def client(ctx: click.Context) -> Client:
    """A client of the service the invocation's global options (``--address``,
    ``--key``, ``--config``) and the environment name; use it with ``with``."""
    from orcha.cli.options import settings_from
    from orcha.cli.verbose import report
    from orcha.client.api import Client

    settings = settings_from(ctx)
    report(settings)
    return Client(settings=settings)
