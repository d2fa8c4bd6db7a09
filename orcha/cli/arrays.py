"""``orcha run --array SPEC`` and ``orcha run --each FILE``: many petitions at once.

One ``submit_array`` request queues every member (see :mod:`orcha.protocol.arrays`).
With ``--detach`` the array's name is printed and the command returns (``--json``:
``{"name": NAME, "ids": [member IDs]}``). Attached, the
members' output streams here as ``follow`` prints several petitions (each line behind
``[NAME_INDEX]``, stdout to stdout, stderr to stderr), in the order they write it; the
exit code is 0 if every member succeeded, 1 (after a line saying how many failed) if
any did not, 130 after Ctrl+C, which cancels the members that have not ended (as the
members of an attached array end with their client, like ``run``'s petition).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from orcha.cli.build import Refused
from orcha.cli.bulk import how_ended
from orcha.cli.tables import printable
from orcha.errors import ExitCode

#: How many failed members a summary line names before it says "...".
_NAMED = 10


def members_of(
    spec: str | None, each: str | None, at_once: int | None
) -> tuple[list[Any], int | None]:
    """The members and the limit of ``--array SPEC`` or ``--each FILE`` (``-``: stdin),
    with ``--at-once N``; click.UsageError (exit 2, nothing sent) when they are wrong."""
    from orcha.protocol.arrays import parse_lines, parse_spec

    if spec is not None and each is not None:
        raise Refused("give --array or --each, not both")
    try:
        if spec is not None:
            indices, limit = parse_spec(spec)
            if limit is not None and at_once is not None and limit != at_once:
                raise Refused(f"--array {spec} and --at-once {at_once} disagree")
            return [(i, None) for i in indices], limit if limit is not None else at_once
        assert each is not None
        return parse_lines(_read(each)), at_once
    except ValueError as e:
        hint = "'--array'" if spec is not None else "'--each'"
        raise click.BadParameter(str(e), param_hint=hint) from None


def _read(path: str) -> str:
    if path == "-":
        if sys.stdin.isatty():
            raise Refused("--each -: pipe the lines in (e.g. 'ls *.gz | orcha run ...')")
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError as e:
        raise click.BadParameter(
            f"cannot read {path}: {e.strerror}", param_hint="'--each'"
        ) from None


def run_array(
    kind: str,
    name: str | None,
    params: dict[str, Any],
    priority: int | None,
    detach: bool,
    members: list[Any],
    limit: int | None,
    stdin: bool = False,
) -> int:
    """Submit the array (one request) with the invocation's petition options, then
    print its name (``detach``; with ``--json``, its name and member IDs as JSON) or
    stream its members' output; the exit code. Its members read /dev/null: with
    ``stdin`` (the command would send a piped stdin), attached, one line says that a
    piped or redirected stdin was not sent."""
    import os

    from orcha.cli.connect import client
    from orcha.cli.grammar import check_start
    from orcha.cli.petition_options import chosen
    from orcha.protocol.arrays import ArrayRequest
    from orcha.protocol.messages import SubmitRequest
    from orcha.protocol.schedule import Schedule

    ctx = click.get_current_context()
    as_json = bool(ctx.params.get("as_json"))
    if as_json and not detach:
        raise Refused("--json goes with --detach (attached, stdout is the members' own output)")
    options = chosen(ctx)
    try:
        schedule = Schedule.from_wire(check_start(options.schedule))
    except ValueError as e:
        raise Refused(str(e)) from e
    environment = dict(os.environ)
    environment.update(options.env)
    from orcha.client.requests import host_name, user_name, working_directory

    template = SubmitRequest(
        kind, name or "", params, priority, working_directory(options.cwd), environment,
        attach=not detach, user=user_name(), host=host_name(), schedule=schedule,
    )  # fmt: skip
    if name:
        try:
            from orcha.protocol.arrays import check_member_ids

            check_member_ids(name, max(i for i, _ in members))
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="'ID'") from None
    with client(ctx) as service:
        reply = service.submit_array(ArrayRequest(template, members, limit))
        name, ids = reply["name"], reply["ids"]
        if as_json:  # the notice on stderr is left out, as with every --json
            from orcha.cli.output import print_json

            print_json({"name": name, "ids": ids})
            return 0
        at_once = f", at most {limit} at once" if limit else ""
        span = f"{ids[0]} to {ids[-1]}" if len(ids) > 1 else ids[0]
        click.echo(f"orcha: array {name}: {len(ids)} petition(s) queued ({span}){at_once}",
                   err=True)  # fmt: skip
        if detach:
            click.echo(name)
            return 0
        if stdin:
            from orcha.client.piped import piped_stdin

            if piped_stdin():
                click.echo(f"orcha: array {name}: its members do not read this stdin (they "
                           "read /dev/null); it was not sent (--no-stdin: no such line)",
                           err=True)  # fmt: skip
        return _stream(service, name, len(ids))


def _stream(service: Any, name: str, count: int) -> int:
    """Print the members' output as they write it until all have ended; the exit code."""
    from orcha.cli.jobs import _Prefixer

    out = _Prefixer(prefix=True)
    ends: dict[str, dict[str, Any]] = {}
    try:
        for petition_id, stream, data in service.follow([name]):
            if stream == "skipped":
                click.echo(f"orcha: {petition_id}: {printable(str(data.get('message')))}", err=True)
            elif stream == "end":
                out.flush(petition_id)
                ends[petition_id] = data
            else:
                out.write(petition_id, stream, data)
    except KeyboardInterrupt:
        # The members end with this client anyway; cancelling says so at once.
        results = service.cancel_each([name])
        cancelled = sum(1 for r in results.values() if r == "cancelled")
        click.echo(f"orcha: cancelled {cancelled} petition(s) of array {name} that had "
                   "not ended", err=True)  # fmt: skip
        return int(ExitCode.INTERRUPTED)
    return summarize(name, list(ends.values()), count)


def summarize(name: str, ends: list[dict[str, Any]], count: int) -> int:
    """Say how many members of array ``name`` failed (naming the first few): 1 if any
    did, else 0."""
    failed = [e for e in ends if e.get("state") != "SUCCEEDED"]
    if not failed:
        return 0
    named = ", ".join(f"{e['id']} ({how_ended(e.get('state'), e.get('code'), listed=True)})"
                      for e in failed[:_NAMED])  # fmt: skip
    more = ", ..." if len(failed) > _NAMED else ""
    click.echo(f"orcha: array {name}: {len(failed)} of {count} failed: {named}{more}", err=True)
    return int(ExitCode.FAILED)
