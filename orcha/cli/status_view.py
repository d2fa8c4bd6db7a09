"""How ``orcha status`` lays out petitions: the table's order and COMMAND column, the
detail view of one petition, and the options that choose which petitions are shown.

The rows' other cells (times, runtime, note) are built in :mod:`orcha.cli.jobs`; the
table itself is drawn by :mod:`orcha.cli.tables` (aligned by terminal cells, COMMAND
and NOTE shortened to fit a terminal).
"""

from __future__ import annotations

import time

from orcha.cli.tables import printable
from orcha.text import shell_word

TYPE_CHECKING = False  # click and typing are not imported at load: status's plain forms
if TYPE_CHECKING:  # print without them (orcha.cli.fast_jobs)
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any

    import click

    from orcha.client.api import Client

#: The fields ``--sort`` takes.
SORT_FIELDS = ("submitted", "started", "ended", "priority", "id", "state")

_STATE_ORDER = {
    name: i
    for i, name in enumerate(
        ("RUNNING", "QUEUED", "FAILED", "CANCELLED", "INTERRUPTED", "SUCCEEDED")
    )
}

#: State -> the colour of its rows on a terminal.
STATE_STYLES = {"RUNNING": "cyan", "SUCCEEDED": "green", "FAILED": "red",
                "CANCELLED": "yellow", "INTERRUPTED": "magenta"}  # fmt: skip


def command_of(row: dict[str, Any]) -> str:
    """What the petition runs, on one line: a shell command as a shell would read it
    (``argv`` quoted), another kind's parameters as ``key=value``; ``-`` if nothing."""
    params = row.get("params") or {}
    argv = params.get("argv")
    if isinstance(argv, list) and all(isinstance(a, str) for a in argv):
        return printable(" ".join(map(shell_word, argv)))
    if not isinstance(params, dict) or not params:
        return "-"
    import json

    words = (f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in params.items())
    return printable(" ".join(words))


def _sort_key(field: str) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """The key ``--sort field`` orders rows by (ties in order of submission; petitions
    without the time, such as not started yet, last)."""
    if field in ("started", "ended"):
        return lambda r: (r.get(field) is None, r.get(field) or 0.0, r["seq"])
    if field == "priority":
        return lambda r: (r.get("priority") or 0, r["seq"])
    if field == "id":
        return lambda r: (str(r.get("id")), r["seq"])
    if field == "state":
        return lambda r: (_STATE_ORDER.get(str(r.get("state")), 99), r["seq"])
    return lambda r: (r["seq"],)


def ordered(
    rows: list[dict[str, Any]], sort: str = "submitted"
) -> list[tuple[str, dict[str, Any]]]:
    """The rows in the order ``status`` shows them, each with its ID cell: sorted by
    ``sort`` (one of :data:`SORT_FIELDS`), a child petition right under its parent
    (after its elder siblings, whatever the sort), its ID indented behind ``└ ``, when
    its parent is shown too."""
    rows = sorted(rows, key=lambda r: r["seq"])  # a parent comes before its children
    latest: dict[str, dict[str, Any]] = {}  # ID -> its newest row so far
    children: dict[int, list[dict[str, Any]]] = {}  # parent's seq -> its children's rows
    roots: list[dict[str, Any]] = []
    for row in rows:
        parent = latest.get(row.get("parent") or "")
        if parent is None:
            roots.append(row)
        else:
            children.setdefault(parent["seq"], []).append(row)
        latest[row["id"]] = row
    roots.sort(key=_sort_key(sort))
    out: list[tuple[str, dict[str, Any]]] = []
    stack = [(0, row) for row in reversed(roots)]
    while stack:
        depth, row = stack.pop()
        out.append(("  " * (depth - 1) + "└ " + row["id"] if depth else row["id"], row))
        stack.extend((depth + 1, child) for child in reversed(children.get(row["seq"], [])))
    return out


def _words(values: tuple[str, ...]) -> list[str]:
    """Repeated and comma-separated values as one list, blanks dropped, in order."""
    return [w.strip() for v in values for w in v.split(",") if w.strip()]


def states_option(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    """``--state``: repeatable or a comma list, any case; a usage error names the legal
    states."""
    from orcha.states import State

    return _states_of(values, [s.value for s in State])


def states_among(
    *legal: str,
) -> Callable[[click.Context, click.Parameter, tuple[str, ...]], list[str]]:
    """A ``--state`` callback as :func:`states_option`, of the ``legal`` states only
    (cancel: QUEUED and RUNNING; clean: the ended ones)."""

    def option(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str]:
        return _states_of(values, list(legal))

    return option


def _states_of(values: tuple[str, ...], legal: list[str]) -> list[str]:
    import click

    out = []
    for word in _words(values):
        if word.upper() not in legal:
            raise click.BadParameter(f"{word!r} is not one of the states {', '.join(legal)}")
        out.append(word.upper())
    return list(dict.fromkeys(out))


def groups_option(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    """``--group``: repeatable or a comma list of group names."""
    import click

    from orcha.protocol.schedule import check_group

    out = []
    for word in _words(values):
        try:
            out.append(check_group(word))
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
    return list(dict.fromkeys(out))


def _stamp(stamp: float | None) -> str:
    if not stamp:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _requests(schedule: dict[str, Any]) -> str:
    """A schedule's fields that differ from the defaults, as ``--option value`` words."""
    words = []
    for key, value in schedule.items():
        if key == "group":
            continue
        if key == "mem" and isinstance(value, int):
            value = _size(value)
        elif key in ("timeout", "retry_delay", "delay") and isinstance(value, (int, float)):
            # As typed again: a 1 ms timeout is "0.001s", not "0.0s".
            value = f"{value:.6g}s" if 0 < value < 1 else _duration(value)
        elif key == "begin" and isinstance(value, (int, float)):
            # Shown as the option a user types to ask for it again (--at takes ISO 8601).
            key, value = "at", time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(round(value)))
        elif isinstance(value, list):
            value = ",".join(map(str, value))
        elif isinstance(value, bool):  # a flag (--hold): given or not, never "True"
            if value:
                words.append(f"--{key.replace('_', '-')}")
            continue
        words.append(f"--{key.replace('_', '-')} {value}")
    return printable(" ".join(words)) or "-"


def detail(record: dict[str, Any], note: str) -> list[tuple[str, str]]:
    """The detail view of one petition (``orcha status ID``) as (label, value) pairs:
    everything the table shows, in full, plus its directory, requests, times and
    accounting. ``note``: the table's NOTE cell for it (why it waits, progress...)."""
    schedule = record.get("schedule") or {}
    state = str(record.get("state"))
    retries = int(schedule.get("retries", 0) or 0)
    out = [
        ("ID", printable(str(record.get("id")))),
        ("Kind", record.get("kind") or "-"),
        ("State", state + (" (paused)" if record.get("paused") else "")),
        ("Command", command_of(record)),
        ("Cwd", printable(str(record.get("cwd") or "-"))),
        ("Group", str(schedule.get("group", "default"))),
        ("Priority", str(record.get("priority"))
         + (f" (effective {record['effective_priority']:g})"
            if record.get("effective_priority") is not None else "")),
        ("Requests", _requests(schedule)),
        ("Submitted", _stamp(record.get("submitted"))
         + (f" by {record['user']}@{record['host']}" if record.get("user") else "")),
        ("Started", _stamp(record.get("started"))),
        ("Ended", _stamp(record.get("ended"))),
    ]  # fmt: skip
    if record.get("started"):
        wall = (record.get("ended") or time.time()) - record["started"]
        out.append(("Wall time", _duration(wall)))
    if record.get("cpu_time") is not None:
        out.append(("CPU time", _duration(float(record["cpu_time"]))))
    if record.get("peak_rss") is not None:
        out.append(("Peak memory", _size(float(record["peak_rss"]))))
    elif record.get("cpu_time") is not None:  # measured, but its peak cannot be told
        out.append(("Peak memory", "-"))
    out.append(("Attempt", f"{record.get('attempt', 1)}/{retries + 1}"))
    if record.get("machine"):
        out.append(("Machine", str(record["machine"])))
    if record.get("gpus"):
        out.append(("GPUs", ",".join(map(str, record["gpus"]))))
    out.append(("Code", "-" if record.get("code") is None else str(record["code"])))
    if record.get("message"):
        out.append(("Message", printable(str(record["message"]))))
    attempt_note = f"attempt {record.get('attempt', 1)}/{retries + 1}"
    if note and note not in (record.get("message"), attempt_note):
        out.append(("Note", printable(note)))
    if record.get("parent"):
        out.append(("Parent", str(record["parent"])))
    if record.get("children"):
        out.append(("Children", ", ".join(record["children"])))
    if record.get("outcome") is not None:
        import json

        out.append(("Outcome", printable(json.dumps(record["outcome"]))))
    if record.get("notify_error"):
        out.append(("Webhook", printable(str(record["notify_error"]))))
    return out


def detail_lines(pairs: list[tuple[str, str]], color: bool) -> list[str]:
    """The detail view's lines: labels aligned, in bold when ``color``."""
    from orcha.cli.output import paint

    width = max(len(label) for label, _ in pairs) + 1
    return [paint(f"{label}:".ljust(width), "bold", color) + f" {value}" for label, value in pairs]


def json_pages(
    pages: Iterable[list[dict[str, Any]]], tail: dict[str, Any], indent: int | None
) -> Iterator[str]:
    """The text of ``json.dumps({"petitions": [every record of pages], **tail},
    indent=indent)``, exactly, in pieces: a page's records are printed as they arrive,
    never all held at once."""
    import json

    empty = json.dumps({"petitions": [], **tail}, indent=indent)
    head, rest = empty.split("[]", 1)  # '{"petitions": ' and what follows the list
    inner = "\n" + " " * (2 * indent) if indent is not None else ""
    sep = "," + inner if indent is not None else ", "
    close = "\n" + " " * indent + "]" if indent is not None else "]"
    yield head + "["
    first = True
    for page in pages:
        texts = [json.dumps(r, indent=indent) for r in page]
        if indent is not None:
            texts = [t.replace("\n", inner) for t in texts]  # one level deeper
        if texts:
            yield (inner if first else sep) + sep.join(texts)
            first = False
    yield ("]" if first else close) + rest


def json_texts(texts: Iterable[str], tail: dict[str, Any]) -> Iterator[str]:
    """The text of ``json.dumps({"petitions": [every record], **tail})``, exactly, in
    pieces, from ``texts``: pages of records already encoded, each page's records joined
    by ``", "`` (:meth:`orcha.Client.status_pages` with ``text``)."""
    import json

    head, rest = json.dumps({"petitions": [], **tail}).split("[]", 1)
    yield head + "["
    first = True
    for text in texts:
        if text:
            if not first:
                yield ", "
            yield text
            first = False
    yield "]" + rest


def print_json_listing(
    service: Client, states: list[str], groups: list[str], tail: dict[str, Any]
) -> None:
    """Print ``{"petitions": [every record of states and groups], **tail}`` as
    :func:`orcha.cli.output.print_json` would, a page at a time: piped, on one line, the
    pages as the service encoded them; on a terminal, indented from the records.

    Nothing is printed until the first page has come, so a service that cannot be
    reached leaves stdout empty. A connection lost after that raises with the document
    cut short and no final newline: never closed as if it were complete."""
    import itertools
    import sys

    indent = 2 if sys.stdout.isatty() else None
    pages: Iterator[Any] = iter(service.status_pages(states, groups, text=indent is None))
    first = next(pages, None)  # connects and asks: an error here has printed nothing
    if first is not None:
        pages = itertools.chain([first], pages)
    pieces = json_texts(pages, tail) if indent is None else json_pages(pages, tail, indent)
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()
