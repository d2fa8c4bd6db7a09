"""``orcha serve``: run the service in the foreground."""

from __future__ import annotations

import click

from orcha.cli.options import global_options, settings_from


@click.command()
@click.option(
    "--max-running",
    type=click.IntRange(min=1),
    metavar="N",
    help="Run at most N petitions at once (default: the number of CPU cores).",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Seconds between SIGTERM and SIGKILL when a petition is stopped (default 5).",
)
@click.option(
    "--log-cap", metavar="SIZE",
    help="Output kept per petition in its log, e.g. 512K, 64M, 1G (default 64M).",
)  # fmt: skip
@global_options
@click.pass_context
def serve(
    ctx: click.Context, max_running: int | None, grace: float | None, log_cap: str | None
) -> int:
    """Serve petitions of every installed kind until Ctrl+C or SIGTERM.

    The first signal stops accepting, cancels every petition (queued ones are dropped,
    running ones are stopped: SIGTERM, grace period, SIGKILL) and exits 0; a second
    signal kills them at once and exits 1.
    """
    from orcha.cli.app import OrchaGroup
    from orcha.service.kind_manager import KindManager
    from orcha.service.service import Service, configure_logging
    from orcha.settings import parse_size

    cap = None
    if log_cap is not None:
        try:
            cap = parse_size(log_cap)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="'--log-cap'") from e
    settings = settings_from(ctx, max_running=max_running, grace=grace, log_cap=cap)
    configure_logging(settings.verbose)
    group = ctx.find_root().command
    assert isinstance(group, OrchaGroup)
    kinds = {}
    for entry in group.plugins():
        if entry.error and entry.error != "disabled":
            click.echo(f"orcha serve: plugin {entry.name} not loaded: {entry.error}", err=True)
        kinds.update(entry.kinds)
    return Service(KindManager(kinds), settings).run()
