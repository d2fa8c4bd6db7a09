"""Changing petitions after submission: ``release``, ``edit``, ``restart``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from orcha.cli import bulk
from orcha.cli.build import Refused, click_option
from orcha.cli.completion import petition_ids
from orcha.cli.connect import client
from orcha.cli.grammar import PETITION_OPTIONS, PRIORITY, check_start
from orcha.cli.options import global_options
from orcha.cli.petition_options import chosen
from orcha.errors import ExitCode, NoPetitionError
from orcha.protocol.change_requests import CHANGEABLE


def _change_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--priority`` and the petition options of the requests that may change
    (:data:`~orcha.protocol.change_requests.CHANGEABLE`); their values are collected in
    :func:`orcha.cli.petition_options.chosen`."""
    for option in reversed([o for o in PETITION_OPTIONS if o.dest in CHANGEABLE]):

        def store(ctx: click.Context, param: click.Parameter, value: Any, dest: str = option.dest):
            if value is not None and value != () and value is not False:
                chosen(ctx).schedule[dest] = list(value) if isinstance(value, tuple) else value

        f = click_option(option, store)(f)
    return click_option(PRIORITY)(f)


def _changes(ctx: click.Context) -> dict[str, Any]:
    """The requests the command line changes; a usage error (exit 2) for both --delay
    and --at."""
    try:
        return check_start(dict(chosen(ctx).schedule))
    except ValueError as e:
        raise Refused(str(e)) from None


def _print_json(document: Any) -> None:
    # Indented for people; compact for scripts.
    click.echo(json.dumps(document, indent=2 if sys.stdout.isatty() else None))


def _report(results: dict[str, str], done: str, as_json: bool, extra: Any = None) -> int:
    """Say what happened to each ID (one line each on stderr, past ten a count; or
    JSON); NoPetitionError (its one line) if nothing was done for the last one that
    failed."""
    failures = [(i, r) for i, r in results.items() if r != done]
    if as_json:
        _print_json(extra if extra is not None else {"results": results})
    else:
        bulk.say_done(done, [i for i, r in results.items() if r == done])
        bulk.say_each([reason for _, reason in failures[:-1]])
    if failures:
        if as_json:
            return int(ExitCode.NO_PETITION)
        raise NoPetitionError(failures[-1][1])
    return 0


@click.command("release")
@click.argument("ids", nargs=-1, required=True, metavar="ID...", shell_complete=petition_ids)
@click.option("--json", "as_json", is_flag=True, help='Print JSON: {"results": {ID: ...}}.')
@global_options
@click.pass_context
def release(ctx: click.Context, ids: tuple[str, ...], as_json: bool) -> int:
    """Let held (--hold) or delayed (--delay, --at) petitions start like any other:
    the hold and the start time are dropped (Slurm's 'scontrol release', pueue's
    'enqueue'). An array's name releases its held or delayed members.

    Exit 0 when each was released; 209 if one named could not be (one line each:
    unknown, not queued (it started or ended), or neither held nor delayed).
    """
    with client(ctx) as service:
        results = service.release(ids)
    return _report(results, "released", as_json)


@click.command("edit")
@click.argument("petition_id", metavar="ID", shell_complete=petition_ids)
@_change_options
@click.option("--json", "as_json", is_flag=True, help="Print the petition's new requests as JSON.")
@global_options
@click.pass_context
def edit(ctx: click.Context, petition_id: str, priority: int | None, as_json: bool) -> int:
    """Change a queued petition's priority and requests while it waits (refused once it
    has started). Its place in the queue follows its new priority; 'orcha status'
    shows the change. --after and --after-any replace its dependencies (--after ''
    drops them; one that would close a cycle is refused); --delay counts from now.
    An array's name edits its queued members (Slurm's 'scontrol update' of a job
    array); those that started are left as they are.

    Exit 0 once changed; 209 if no petition has that ID or it is not queued (it started
    or ended; an array: none of its members is queued), or a new --after names none;
    204 if the service refused the change (invalid, can never fit, a cycle, stopping).
    """
    changes = _changes(ctx)
    if priority is None and not changes:
        raise Refused("nothing to change: give --priority or other requests")
    with client(ctx) as service:
        now = service.edit(petition_id, priority=priority, **changes)
    if as_json:
        _print_json(now)
    elif "edited" in now:
        count = len(now["edited"])
        click.echo(f"orcha: edited array {now['id']} ({count} queued petition"
                   f"{'' if count == 1 else 's'}): {_requests(now)}", err=True)  # fmt: skip
    else:
        click.echo(f"orcha: edited {now['id']}: {_requests(now)}", err=True)
    return 0


def _requests(record: dict[str, Any]) -> str:
    """A petition's priority and requests in one line: ``priority -1, cpus=2, held,
    starts at 14:30``."""
    import time

    from orcha.units import starts_at

    words = [f"priority {record['priority']}"]
    for name, value in record["schedule"].items():
        if name == "hold":
            words.append("held")
        elif name == "begin":
            words.append(starts_at(value, time.time()))
        else:
            words.append(
                f"{name}={','.join(map(str, value)) if isinstance(value, list) else value}"
            )
    return ", ".join(words)


@click.command("restart")
@click.argument("ids", nargs=-1, metavar="[ID]...", shell_complete=petition_ids)
@click.option(
    "--failed",
    is_flag=True,
    help="Every petition whose newest run failed or was INTERRUPTED (with --group: of that group).",
)
@_change_options
@click.option(
    "--follow", is_flag=True, help="Then stream the new run's output, as 'orcha follow' (one ID)."
)
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: the results and the new records.")  # fmt: skip
@global_options
@click.pass_context
def restart(
    ctx: click.Context, ids: tuple[str, ...], failed: bool, priority: int | None,
    follow: bool, as_json: bool,
) -> int:  # fmt: skip
    """Run ended petitions again: the same kind, command or parameters, working
    directory, environment and requests, as a new record linked to the old one
    ('restart_of' in 'orcha status --json'). Request options override the old ones.

    Without IDs, --failed restarts every petition whose newest run failed (or was
    INTERRUPTED by the service's death), and --group G those of group G (then --group
    selects, it does not move them). An array's name restarts its members that have
    ended (with --failed: those that failed), each under its own name; with IDs,
    --failed restarts those of them that failed. The new runs are
    detached, as pueue's restart: 'orcha follow ID' (or --follow) streams one. A
    petition still queued or running is refused.

    Exit 0 when each was restarted (with --follow: the new run's exit code); 202 if the
    one ID named is still queued or running (its ID is taken until it ends); 204 if the
    service refused it (sent through the original API, or the service is stopping);
    209 if no petition has that ID, or, of several, one could not be restarted (one
    line each).
    """
    changes = _changes(ctx)
    group = None
    if not ids:
        group = changes.pop("group", None)
        if not (failed or group):
            raise Refused("name the petitions to restart, or use --failed or --group")
    if follow and len(ids) != 1:
        raise Refused("--follow needs exactly one ID")
    with client(ctx) as service:
        answer = service.restart(ids, failed=failed, group=group, priority=priority, **changes)
    results = answer["results"]
    if not results and not as_json:
        click.echo("orcha: no failed petition to restart", err=True)
    # A petition the service numbered is numbered again: say the new run's number.
    done = [i for i, r in results.items() if r == "restarted"]
    new_ids = {i: new["id"] for i, new in zip(done, answer["restarted"], strict=False)}
    shown = {(i if new_ids.get(i, i) == i else f"{i} as {new_ids[i]}"): r
             for i, r in results.items()}  # fmt: skip
    code = _report(shown, "restarted", as_json, answer)
    if follow:
        return int(ctx.invoke(_follow_command(), ids=(new_ids.get(ids[0], ids[0]),)))
    return code


def _follow_command() -> click.Command:
    from orcha.cli.jobs import follow

    return follow
