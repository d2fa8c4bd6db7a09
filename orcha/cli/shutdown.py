"""``orcha shutdown``: stop the service from a client, as Ctrl+C or SIGTERM does."""

from __future__ import annotations

import click

from orcha.cli.connect import client
from orcha.cli.options import global_options
from orcha.cli.output import json_option, print_json

#: How long ``--wait`` waits for the service to exit beyond its grace period (the grace
#: bounds how long its petitions' trees take to stop).
_WAIT_MARGIN = 30.0


@click.command("shutdown")
@click.option("--force", is_flag=True,
              help="Kill the running petitions' trees at once (as a second Ctrl+C), "
                   "also when a stop is under way.")  # fmt: skip
@click.option("--wait", "wait_", is_flag=True,
              help="Return once the service has exited (it is on this host); give up "
                   "(exit 124) if it has not 30 s after its grace period.")  # fmt: skip
@json_option
@global_options
@click.pass_context
def shutdown(ctx: click.Context, force: bool, wait_: bool, as_json: bool) -> int:
    """Stop the service, as Ctrl+C or SIGTERM does (pueue's 'shutdown', tsp -K): it
    stops admitting, cancels the running petitions (their whole process trees, within
    its grace period), keeps the queued ones for its next start, and exits. While it
    stops, it still answers ('orcha status'); a second stop signal, or --force, kills
    what still runs at once.

    Exit 0; 200 if no service runs there; 124 if --wait gave up first (30 s after
    the service's grace period).
    """
    service = client(ctx)
    address = service.settings.address
    if wait_ and not address.is_unix:
        from orcha.address import is_loopback

        if not is_loopback(address):
            from orcha.cli.build import Refused

            raise Refused("--wait needs the service on this host (a socket or a loopback address)")
    with service:
        answer = service.shutdown(force)
    running, queued = answer["running"], answer["queued"]
    if as_json:
        print_json({**answer, "address": str(address)})
    elif force:
        # Once stopping, the queued ones are set aside already (not counted here).
        kept = "" if answer.get("stopping") else f", keeping {queued} queued for its next start"
        click.echo(
            f"orcha: the service at {address} is stopping by force: killing {running} "
            f"running petition(s){kept}",
            err=True,
        )
    elif answer.get("stopping"):
        click.echo(
            f"orcha: the service at {address} is stopping already, {running} running "
            "petition(s) left; 'orcha shutdown --force' kills them at once",
            err=True,
        )
    else:
        click.echo(
            f"orcha: the service at {address} is stopping: cancelling {running} "
            f"running petition(s), keeping {queued} queued for its next start",
            err=True,
        )
    if not wait_:
        return 0
    return _wait_for_exit(int(answer["pid"]), service.settings.grace + _WAIT_MARGIN)


def _wait_for_exit(pid: int, timeout: float) -> int:
    """Poll until process ``pid`` is gone (0), or ``timeout`` seconds pass (124)."""
    import os
    import time

    from orcha.errors import ExitCode

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return 0
        except PermissionError:
            pass  # it is there, another user's: wait on
        time.sleep(0.05)
    click.echo(f"orcha: the service (pid {pid}) has not exited after {timeout:g} s", err=True)
    return int(ExitCode.TIMEOUT)
