"""``orcha health``: whether the service answers, its queue and capacity, each plugin's health."""

from __future__ import annotations

from typing import Any

import click

from orcha.cli.connect import client
from orcha.cli.options import global_options
from orcha.cli.output import json_option, print_json

#: Exit codes of ``orcha health`` (a monitoring convention, documented in the README).
HEALTHY, UNHEALTHY, UNREACHABLE = 0, 1, 2


@click.command("health")
@json_option
@global_options
@click.pass_context
def health(ctx: click.Context, as_json: bool) -> int:
    """Check the service: does it answer, how full is it, are its plugins healthy.

    Exit 0 when healthy, 1 when a plugin is unhealthy, the service cannot save its
    state (disk full, database locked: the "state:" line says why), cannot reach its
    Dask scheduler (the "dask:" line), has been held up for more than 3 s (the
    "scheduler:" line names what holds it) or still runs actions that ignored their
    cancel (the "abandoned:" line); 2 when it cannot be reached (not running, wrong key,
    connection lost).
    """
    from orcha.errors import AuthError, LostServiceError, NoServiceError

    service = client(ctx)
    try:
        with service:
            answer: dict[str, Any] = service.health()
    except (NoServiceError, AuthError, LostServiceError) as e:
        if as_json:
            print_json({"reachable": False, "healthy": False, "error": str(e)})
        click.echo(f"orcha: {e}", err=True)
        return UNREACHABLE
    answer["reachable"] = True
    if as_json:
        print_json(answer)
    else:
        state = "healthy" if answer["healthy"] else "UNHEALTHY"
        click.echo(
            f"service: {state}; {answer['queued']} queued, {answer['running']} running, "
            f"{answer['cpus_in_use']}/{answer['capacity']} CPUs in use"
            + ("; paused" if answer.get("paused") else "")
        )
        if "state" in answer:  # services before 0.2 do not say
            click.echo(f"state: {answer['state']}")
        if answer.get("dask"):  # its Dask scheduler is unreachable: exit 1 too (docs/dask.rst)
            click.echo(f"dask: {answer['dask']}")
        if answer.get("scheduler"):  # held for more than 3 s by one thread: exit 1 too
            click.echo(f"scheduler: {answer['scheduler']}")
        if answer.get("abandoned"):  # the original API's, which no plugin counts: exit 1
            click.echo(f"abandoned: {answer['abandoned']}")
        for name, result in answer["plugins"].items():
            details = result.get("details") or {}
            words = ", ".join(f"{k}={v}" for k, v in details.items())
            mark = "healthy" if result["healthy"] else "UNHEALTHY"
            click.echo(f"plugin {name}: {mark}" + (f" ({words})" if words else ""))
    return HEALTHY if answer["healthy"] else UNHEALTHY
