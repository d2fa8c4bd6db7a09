"""What ``orcha status`` prints as text: the table, the detail view of one petition, and
the notes on stderr about what it left out. Free of click, so that the plain forms
(``orcha status``, ``orcha status ID...``) print it from :mod:`orcha.cli.fast_jobs`
exactly as the click command in :mod:`orcha.cli.jobs` does.

The layout (order, COMMAND column, detail) is :mod:`orcha.cli.status_view`'s; the table
is drawn by :mod:`orcha.cli.tables`; colour as :func:`orcha.cli.output.use_color` says.
"""

from __future__ import annotations

import sys
import time

from orcha.cli import status_view
from orcha.text import quoted

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    #: How a line reaches the user: ``echo(text, err)`` prints ``text`` and a newline on
    #: stdout (stderr if ``err``), as it is (colour codes are decided before).
    Echo = Callable[[str, bool], None]


#: Piped, the widest command (in terminal cells) that sets the COMMAND column's width: a
#: longer one is printed whole but runs over, pushing only its own row's NOTE, so one
#: huge argv does not pad every other row (and the header) to its width.
PIPED_COMMAND_CELLS = 120


def echo(text: str, err: bool = False) -> None:
    """Print ``text`` and a newline on stdout (stderr if ``err``), then flush: what
    ``click.echo(text, color=True)`` does on a stream whose encoding is not ASCII."""
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def _when(stamp: float | None) -> str:
    if not stamp:
        return "-"
    t, now = time.localtime(stamp), time.localtime()
    if t[:3] == now[:3]:
        return time.strftime("%H:%M:%S", t)  # today's: the time is enough
    return time.strftime("%m-%d %H:%M" if t[0] == now[0] else "%Y-%m-%d %H:%M", t)


def _runtime(row: dict[str, Any]) -> str:
    if not row.get("started"):
        return "-"
    seconds = (row.get("ended") or time.time()) - row["started"]
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def note(row: dict[str, Any]) -> str:
    """The NOTE cell of a petition's row: why it waits or what its message says, its
    attempt, progress and what went wrong around it."""
    if row.get("waiting"):  # a start time in this client's time zone, not the service's
        from orcha.units import local_reason

        begin = (row.get("schedule") or {}).get("begin")
        note = local_reason(str(row["waiting"]), begin, time.time())
    else:
        note = str(row.get("message") or "")
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


def print_table(rows: list[dict[str, Any]], sort: str, out: Echo = echo) -> None:
    """The status table (see :mod:`orcha.cli.status_view`): on a terminal, COMMAND cut
    short and NOTE wrapped to fit its width."""
    from orcha.cli.output import use_color
    from orcha.cli.tables import render
    from orcha.protocol.selection import group_of

    if not rows:
        return
    header = ["ID", "KIND", "STATE", "PRIO", "SUBMITTED", "RUNTIME", "CODE", "COMMAND", "NOTE"]
    shown = status_view.ordered(rows, sort)
    table = [
        [cell, r["kind"] or "-", r["state"], str(r["priority"]), _when(r["submitted"]),
         _runtime(r), "-" if r["code"] is None else str(r["code"]), status_view.command_of(r),
         note(r)]
        for cell, r in shown
    ]  # fmt: skip
    groups = [group_of(r) for _, r in shown]
    if any(g != "default" for g in groups):  # a column only when groups are in use
        header.insert(2, "GROUP")
        for cells, name in zip(table, groups, strict=True):
            cells.insert(2, name)
    machines = [r.get("machine") for _, r in shown]
    if any(m not in (None, "local") for m in machines):  # where each runs, with Dask
        at_state = header.index("STATE") + 1
        header.insert(at_state, "WHERE")
        for cells, machine in zip(table, machines, strict=True):
            cells.insert(at_state, machine or "-")
    # Piped, lines stay whole: a script or grep wants every word.
    at = header.index
    width, overflow = None, {at("COMMAND"): PIPED_COMMAND_CELLS}
    if sys.stdout.isatty():
        import shutil  # only for a terminal: piped, its import is start-up wasted

        width, overflow = shutil.get_terminal_size().columns, {}
    shrink = {at("COMMAND"): 12, at("NOTE"): 24}
    styles = [status_view.STATE_STYLES.get(r["state"]) for _, r in shown]
    lines = render(header, table, width, shrink, styles, use_color(), wrapped=[at("NOTE")],
                   overflow=overflow)  # fmt: skip
    for line in lines:
        out(line, False)  # coloured only if use_color() said so


def show(answer: dict[str, Any], ids: tuple[str, ...], sort: str, out: Echo = echo) -> None:
    """Print the service's ``status_report`` ``answer`` for ``ids`` as text: one
    petition asked for and found in detail, else the table sorted by ``sort``; then, on
    stderr, how many it left out. Raises :class:`orcha.errors.NoPetitionError` naming
    the IDs the service does not know (after printing the others)."""
    rows, missing = answer["petitions"], answer["missing"]
    if len(ids) == 1 and len(rows) == 1:
        from orcha.cli.output import use_color

        pairs = status_view.detail(rows[0], note(rows[0]))
        out("\n".join(status_view.detail_lines(pairs, use_color())), False)
    else:
        print_table(rows, sort, out)
    if answer.get("hidden_queued"):
        out(f"orcha: {answer['hidden_queued']} later queued petition(s) not shown (--all)", True)
    if answer.get("hidden"):
        out(f"orcha: {answer['hidden']} older ended petition(s) not shown (--all)", True)
    if missing:
        from orcha.errors import NoPetitionError

        raise NoPetitionError(
            f"no petition has ID {', '.join(map(quoted, missing))}; see 'orcha status'"
        )
