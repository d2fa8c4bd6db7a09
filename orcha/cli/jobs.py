"""Job control from any shell: ``status``, ``cancel``, ``clean``."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from orcha.cli.completion import petition_ids
from orcha.cli.connect import client
from orcha.cli.options import global_options
from orcha.errors import ExitCode, NoPetitionError
from orcha.states import State
from orcha.units import parse_duration

_STATES = [s.value for s in State]


def _when(stamp: float | None) -> str:
    if not stamp:
        return "-"
    t = time.localtime(stamp)
    return time.strftime("%H:%M:%S" if t[:3] == time.localtime()[:3] else "%m-%d %H:%M", t)


def _runtime(row: dict[str, Any]) -> str:
    if not row.get("started"):
        return "-"
    seconds = (row.get("ended") or time.time()) - row["started"]
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def _note(row: dict[str, Any]) -> str:
    note = str(row.get("waiting") or row.get("message") or "")
    retries = (row.get("schedule") or {}).get("retries", 0)
    if retries and row.get("started"):
        note = f"attempt {row.get('attempt', 1)}/{retries + 1}" + (f"; {note}" if note else "")
    if row.get("paused") and row["state"] == "QUEUED" and not note:
        note = "paused"
    extras = []
    if row.get("leftovers"):
        extras.append(f"stopped {row['leftovers']} process(es) it left running")
    if row.get("log_truncated"):
        extras.append(f"log incomplete: {row['log_truncated']}")
    note = "; ".join([note, *extras] if note else extras)
    progress = row.get("progress")
    if progress and row["state"] == "RUNNING":
        from orcha.client.progress import describe

        words = describe(progress.get("value"), progress.get("target"), progress.get("unit", ""))
        note = f"{words}; {note}" if note else words
    return note


def _tree(rows: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The rows in the order ``status`` shows them, each with its ID cell: a child
    petition right under its parent (after its elder siblings), its ID indented behind
    ``└ ``, when its parent is shown too; everything else in the order given (oldest
    first)."""
    latest: dict[str, dict[str, Any]] = {}  # ID -> its newest row so far
    children: dict[int, list[dict[str, Any]]] = {}  # parent's seq -> its children's rows
    roots: list[dict[str, Any]] = []
    for row in rows:  # oldest first: a parent comes before its children
        parent = latest.get(row.get("parent") or "")
        if parent is None:
            roots.append(row)
        else:
            children.setdefault(parent["seq"], []).append(row)
        latest[row["id"]] = row
    if not children:
        return [(row["id"], row) for row in rows]
    out: list[tuple[str, dict[str, Any]]] = []
    stack = [(0, row) for row in reversed(roots)]
    while stack:
        depth, row = stack.pop()
        out.append(("  " * (depth - 1) + "└ " + row["id"] if depth else row["id"], row))
        stack.extend((depth + 1, child) for child in reversed(children.get(row["seq"], [])))
    return out


@click.command("status")
@click.argument("ids", nargs=-1, metavar="[ID]...", shell_complete=petition_ids)
@click.option("--state", "states", multiple=True, metavar="STATE",
              type=click.Choice(_STATES, case_sensitive=False),
              help="Only petitions in this state (repeatable).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@global_options
@click.pass_context
def status(ctx: click.Context, ids: tuple[str, ...], states: tuple[str, ...], as_json: bool) -> int:
    """Show petitions: queued, running and ended (all, or those with the given IDs).

    For a waiting petition it says why it waits. Child petitions (submitted by a
    running petition's kind) are shown under their parent.
    """
    with client(ctx) as service:
        answer = service.status_report(ids, states)
    rows, missing = answer["petitions"], answer["missing"]
    if as_json:
        # Indented for people; compact for scripts (and three times faster to write).
        indent = 2 if sys.stdout.isatty() else None
        click.echo(json.dumps({"petitions": rows, "missing": missing}, indent=indent))
    else:
        header = ["ID", "KIND", "STATE", "PRIO", "SUBMITTED", "RUNTIME", "CODE", "NOTE"]
        shown = _tree(rows)
        rows = [row for _, row in shown]  # the groups below follow the shown order
        table = [
            [cell, r["kind"] or "-", r["state"], str(r["priority"]), _when(r["submitted"]),
             _runtime(r), "-" if r["code"] is None else str(r["code"]), _note(r)]
            for cell, r in shown
        ]  # fmt: skip
        groups = [(r.get("schedule") or {}).get("group", "default") for r in rows]
        if any(g != "default" for g in groups):  # a column only when groups are in use
            header.insert(2, "GROUP")
            for line, name in zip(table, groups, strict=True):
                line.insert(2, name)
        if sys.stdout.isatty():
            from rich.console import Console
            from rich.table import Table

            t = Table(*header, box=None, header_style="bold")
            colours = {"RUNNING": "cyan", "SUCCEEDED": "green", "FAILED": "red",
                       "CANCELLED": "yellow", "INTERRUPTED": "magenta"}  # fmt: skip
            state_at = header.index("STATE")
            for line in table:
                t.add_row(*line, style=colours.get(line[state_at]))
            Console(highlight=False).print(t)
        elif table:
            widths = [max(len(h), *(len(line[i]) for line in table)) for i, h in enumerate(header)]
            for line in [header, *table]:
                cells = (c.ljust(w) for c, w in zip(line, widths, strict=True))
                click.echo("  ".join(cells).rstrip())
    if missing:
        raise NoPetitionError(
            f"no petition has ID {', '.join(map(repr, missing))}; see 'orcha status' for all"
        )
    return 0


@click.command("cancel")
@click.argument("ids", nargs=-1, required=True, metavar="ID...", shell_complete=petition_ids)
@click.option("--force", is_flag=True, help="SIGKILL the processes at once (no grace period).")
@global_options
@click.pass_context
def cancel(ctx: click.Context, ids: tuple[str, ...], force: bool) -> int:
    """Cancel queued or running petitions (their whole process trees are stopped)."""
    with client(ctx) as service:
        results = service.cancel_each(ids, force)
    failures = [(i, r) for i, r in results.items() if r != "cancelled"]
    for petition_id, result in results.items():
        if result == "cancelled":
            click.echo(f"orcha: cancelled {petition_id}", err=True)
    for _, reason in failures[:-1]:
        click.echo(f"orcha: {reason}; nothing to cancel", err=True)
    if failures:
        raise NoPetitionError(f"{failures[-1][1]}; nothing to cancel")
    return 0


@click.command("clean")
@click.option(
    "--older-than",
    metavar="DURATION",
    help="Only petitions that ended more than DURATION ago (90s, 15m, 12h, 7d).",
)
@global_options
@click.pass_context
def clean(ctx: click.Context, older_than: str | None) -> int:
    """Forget ended petitions: drop their records and output logs."""
    seconds = None
    if older_than is not None:
        try:
            seconds = parse_duration(older_than)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="'--older-than'") from e
    with client(ctx) as service:
        removed = service.clean(seconds)
    click.echo(f"orcha: removed {removed} ended petition(s)", err=True)
    return 0


def _write(fd: int, data: bytes | memoryview) -> None:
    import os

    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@click.command("wait")
@click.argument("ids", nargs=-1, required=True, metavar="ID...", shell_complete=petition_ids)
@click.option("--status", "want", type=click.Choice(["any", "success"]), default="any",
              show_default=True,
              help="'success': exit non-zero if any of them did not succeed.")  # fmt: skip
@global_options
@click.pass_context
def wait(ctx: click.Context, ids: tuple[str, ...], want: str) -> int:
    """Block until the given petitions have ended."""
    with client(ctx) as service:
        ended = service.wait_summaries(ids)
    failed = [e for e in ended.values() if e["state"] != "SUCCEEDED"]
    if want == "success" and failed:
        for e in failed:
            click.echo(f"orcha: petition {e['id']} ended {e['state']} (code {e['code']})", err=True)
        return int(ExitCode.FAILED)
    return 0


@click.command("logs")
@click.argument("petition_id", metavar="ID", shell_complete=petition_ids)
@click.option("--tail", type=click.IntRange(min=0), metavar="N", help="Only the last N lines.")
@global_options
@click.pass_context
def logs(ctx: click.Context, petition_id: str, tail: int | None) -> int:
    """Print the stored output of a petition, running or ended (stdout and stderr apart)."""
    with client(ctx) as service:
        for stream, data in service.logs(petition_id, tail):
            _write(1 if stream == "stdout" else 2, data)
    return 0


class _Prefixer:
    """Writes each petition's output line by line behind ``[ID] `` (for several IDs)."""

    def __init__(self, prefix: bool) -> None:
        self.prefix = prefix
        self.partial: dict[tuple[str, int], bytes] = {}

    def write(self, petition_id: str, stream: str, data: bytes) -> None:
        fd = 1 if stream == "stdout" else 2
        if not self.prefix:
            _write(fd, data)
            return
        key = (petition_id, fd)
        head = f"[{petition_id}] ".encode()
        *lines, rest = (self.partial.pop(key, b"") + data).split(b"\n")
        if lines:
            _write(fd, b"".join(head + line + b"\n" for line in lines))
        if rest:
            self.partial[key] = rest

    def flush(self, petition_id: str) -> None:
        head = f"[{petition_id}] ".encode()
        for (name, fd), rest in list(self.partial.items()):
            if name == petition_id:
                _write(fd, head + rest + b"\n")
                del self.partial[(name, fd)]


@click.command("follow")
@click.argument("ids", nargs=-1, required=True, metavar="ID...", shell_complete=petition_ids)
@global_options
@click.pass_context
def follow(ctx: click.Context, ids: tuple[str, ...]) -> int:
    """Stream the output of running or ended petitions from the start (with several IDs,
    each line is prefixed [ID]); exit with the petition's code. Ctrl+C only stops
    following: the petitions keep running."""
    from orcha.client.handles import exit_code

    service = client(ctx)
    try:
        following = service.follow(ids)
        missing = ", ".join(map(repr, following.missing))
        if not following.ids:
            raise NoPetitionError(f"no petition has ID {missing}; see 'orcha status'")
        if missing:
            click.echo(f"orcha: no petition has ID {missing}; following the others", err=True)
        out = _Prefixer(prefix=len(ids) > 1)
        codes: dict[str, int] = {}
        for petition_id, stream, data in following:
            if stream == "skipped":
                who = f"{petition_id}: " if len(ids) > 1 else ""
                click.echo(f"orcha: {who}{data.get('message')}", err=True)
                continue
            if stream != "end":
                out.write(petition_id, stream, data)
                continue
            out.flush(petition_id)
            codes[petition_id] = exit_code(data)
            if data.get("message") and data.get("state") != "SUCCEEDED":
                # Why it failed (a dependency, a timeout...), as the attached client says.
                who = f"{petition_id}: " if len(ids) > 1 else ""
                click.echo(f"orcha: {who}{data['message']}", err=True)
    except KeyboardInterrupt:
        click.echo("orcha: stopped following; the petitions keep running", err=True)
        return int(ExitCode.INTERRUPTED)
    finally:
        service.close()
    return next((codes[i] for i in following.ids if codes.get(i)), 0)


@click.command("watch")
@click.argument("ids", nargs=-1, metavar="[ID]...", shell_complete=petition_ids)
@click.option("--json", "as_json", is_flag=True, help="One JSON event envelope per line.")
@global_options
@click.pass_context
def watch(ctx: click.Context, ids: tuple[str, ...], as_json: bool) -> int:
    """Print events as they happen: the current state first, then submitted, started,
    output and finished. With IDs, exit once all of them have finished."""
    service = client(ctx)
    try:
        for obj in service.watch(ids):
            if as_json:
                click.echo(json.dumps(obj))
            else:
                data = obj.get("data") or {}
                if obj["event"] == "dropped":
                    click.echo(f"orcha: this client fell behind; {data.get('count')} output "
                               "and progress events were dropped", err=True)  # fmt: skip
                    continue
                from orcha.cli.watch_text import watch_lines

                for line in watch_lines(obj):
                    click.echo(line)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    finally:
        service.close()
    return 0
