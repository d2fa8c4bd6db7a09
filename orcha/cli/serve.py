"""``orcha serve``: run the service in the foreground."""

from __future__ import annotations

from typing import Any

import click

from orcha.cli.options import global_options, globals_of, settings_from


@click.command()
@click.option(
    "--max-running",
    type=click.IntRange(min=1),
    metavar="N",
    help="CPU slots: running petitions together ask for at most N CPUs (--cpus, 1 each by "
    "default), so at most N run at once (default: the number of CPU cores).",
)
@click.option(
    "--gpus",
    "gpus_text",
    metavar="LIST",
    help="GPUs to hand out, e.g. 0,1,2; 'none'; 'auto' asks nvidia-smi (default auto).",
)
@click.option(
    "--aging",
    metavar="DURATION",
    help="Waiting this long improves a petition's priority by one step, so none starves "
    "(e.g. 10m; 0 turns aging off; default 10m).",
)
@click.option(
    "--backfill-bound",
    metavar="DURATION",
    help="Longest later petitions may delay one that waits for resources by starting "
    "ahead of it; only those with a --timeout within it may (default 5m; 0: never).",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Seconds between SIGTERM and SIGKILL when a petition is stopped (default 5).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Service log lines on stderr: text, or one JSON object per line (for journald).",
)
@click.option(
    "--log-cap", metavar="SIZE",
    help="Output kept per petition in its log, e.g. 512K, 64M, 1G (default 64M).",
)  # fmt: skip
@click.option(
    "--dask",
    "dask_address",
    metavar="ADDRESS",
    help="Run petitions on the workers of this Dask cluster, e.g. tcp://HOST:8786 (also "
    "ORCHA_DASK, or 'executor:' in config.yaml; needs pip install 'orcha[dask]').",
)
@click.option(
    "--dask-scheduler-file",
    metavar="FILE",
    help="Find the Dask scheduler through its scheduler file instead of --dask.",
)
@click.option(
    "--dask-local/--no-dask-local",
    default=None,
    help="With Dask: this host runs petitions too (default: only the workers do).",
)
@global_options
@click.pass_context
def serve(
    ctx: click.Context,
    max_running: int | None,
    gpus_text: str | None,
    aging: str | None,
    backfill_bound: str | None,
    grace: float | None,
    log_format: str,
    log_cap: str | None,
    dask_address: str | None,
    dask_scheduler_file: str | None,
    dask_local: bool | None,
) -> int:
    """Serve petitions of every installed kind until Ctrl+C or SIGTERM.

    The first signal stops accepting, stops the running petitions (SIGTERM, grace period,
    SIGKILL), keeps the queued ones for the next start, and exits 0; a second signal
    kills the running ones at once and exits 1. If the service dies (even by kill -9), the
    process you started, its guard, stops every petition's tree within the grace period.

    SIGHUP (or 'orcha config reload') reads the configuration file again and applies
    max_running, gpus, groups, aging, backfill_bound, grace, log_cap, notify and hooks
    without stopping any petition; the options given here still beat the file.

    With --dask, petitions run on the workers of a Dask cluster (docs/dask.rst); orcha
    keeps the queue, priorities, admission, output and logs here.
    """
    from orcha.cli.options import load_config
    from orcha.service.build import build_service
    from orcha.service.daemon import Daemon
    from orcha.service.guard import serve_guarded
    from orcha.service.log_config import configure_logging
    from orcha.service.reload import ConfigSource
    from orcha.service.systemd import Notifier
    from orcha.units import parse_duration, parse_gpus, parse_size

    def parsed(text: str | None, parse: Any, hint: str) -> Any:
        if text is None:
            return None
        try:
            return parse(text)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint=hint) from e

    options = {
        "max_running": max_running,
        "grace": grace,
        "log_cap": parsed(log_cap, parse_size, "'--log-cap'"),
        "gpus": parsed(gpus_text, parse_gpus, "'--gpus'") if gpus_text is not None else None,
        "aging": parsed(aging, parse_duration, "'--aging'"),
        "backfill_bound": parsed(backfill_bound, parse_duration, "'--backfill-bound'"),
    }
    settings = settings_from(ctx, **options)
    configure_logging(settings.verbose, log_format)
    config = load_config(ctx)  # an invalid file: ConfigError, and the service never starts
    from orcha.service.dask.target import resolve as resolve_dask

    dask = resolve_dask(dask_address, dask_scheduler_file, dask_local, config)
    if dask is not None:
        from orcha.service.dask import require_distributed

        require_distributed()  # one line saying what to install, before anything starts

    def run(guard_pid: int | None) -> int:
        notifier = Notifier(main_pid=guard_pid)
        service = build_service(settings, config=config, dask=dask)
        # A reload reads the same file again; these options still beat it then.
        service.config_source = ConfigSource(globals_of(ctx).config, options, config)
        return Daemon(service, notifier, guard_pid).run()

    # Forks here, before plugins and sockets: this process stays as the guard that stops
    # the petitions' trees if the service dies (orcha.service.guard).
    return serve_guarded(settings.grace, run)
