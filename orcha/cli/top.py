"""``orcha top``: a live view of the service, refreshed from its event stream.

One ``watch`` with ``usage`` events (see :mod:`orcha.service.usage`) feeds a
:class:`~orcha.client.top_model.TopModel`; nothing is polled. On a terminal the view is
drawn with rich's ``Live`` on the alternate screen, keys read in cbreak mode; ``q``
leaves (exit 0), Ctrl+C too (exit 130), and the terminal is restored either way (also on
SIGTERM). Signal handlers only set flags the loop reads: SIGTERM and SIGHUP end it,
SIGWINCH redraws the view at the terminal's new size. Not on a terminal, with
``--once`` or ``--json``, it prints one snapshot, taken once the first ``usage`` event
has come, and exits 0.

rich is imported only when the live view or a snapshot is drawn: the module is imported
at every ``orcha`` start (to register the command) and must stay light.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from orcha.cli.options import global_options
from orcha.cli.tables import printable
from orcha.cli.tables import render as table_lines
from orcha.defaults import TOP_INTERVAL, USAGE_MAX_INTERVAL, USAGE_MIN_INTERVAL
from orcha.errors import ExitCode
from orcha.units import local_reason

if TYPE_CHECKING:
    from collections.abc import Iterator

    from orcha.client.top_model import TopModel

#: Seconds between two redraws at most while events pour in, and at least (elapsed
#: times move on even without events).
_REDRAW_MIN = 0.2
_REDRAW_MAX = 1.0

_STATE_STYLES = {"SUCCEEDED": "green", "FAILED": "red", "CANCELLED": "yellow",
                 "INTERRUPTED": "magenta"}  # fmt: skip


class Section:
    """One table of the view: a title, column names and rows of text. The cells come
    from petitions (a command line, a message): they are kept as
    :func:`~orcha.cli.tables.printable` shows them, as ``orcha status`` does, so that
    no petition can send its escape sequences to the viewer's terminal."""

    def __init__(self, title: str, header: list[str], rows: list[list[str]], more: int = 0):
        self.title = title
        self.header = header
        self.rows = [[printable(cell) for cell in row] for row in rows]
        self.more = more  # rows left out for lack of room
        self.styles: list[str | None] = [None] * len(rows)


def _size(n: Any) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return "-"  # not reached


def _elapsed(since: Any, until: float) -> str:
    if not isinstance(since, (int, float)):
        return "-"
    seconds = max(0, int(until - since))
    hours, rest = divmod(seconds, 3600)
    if hours >= 24:
        return f"{hours // 24}d{hours % 24:02d}h"
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _clock(stamp: Any) -> str:
    if not isinstance(stamp, (int, float)):
        return "-"
    t = time.localtime(stamp)
    return time.strftime("%H:%M:%S" if t[:3] == time.localtime()[:3] else "%m-%d %H:%M", t)


def _note(p: dict[str, Any]) -> str:
    words = []
    progress = p.get("progress")
    if progress:
        from orcha.client.progress import describe

        words.append(describe(progress.get("value"), progress.get("target"),
                              progress.get("unit", "")))  # fmt: skip
    if (p.get("attempt") or 1) > 1:
        words.append(f"attempt {p['attempt']}")
    if p.get("paused"):
        words.append("paused")
    return "; ".join(words)


def header_line(model: TopModel, address: str, now: float) -> str:
    """The view's first line: where, when, and how full the service is."""
    cpus = model.cpus
    words = [f"orcha top: {address}", time.strftime("%H:%M:%S", time.localtime(now)),
             f"{cpus.get('used', 0)}/{cpus.get('capacity', 0)} CPU slots in use",
             f"{len(model.running)} running", f"{model.queued} waiting"]  # fmt: skip
    if model.paused:
        words.append("PAUSED ('orcha resume' resumes it)")
    if model.dropped:
        words.append(f"{model.dropped} events dropped (this view fell behind)")
    return " · ".join(words)


def sections(model: TopModel, now: float, ended: int = 5) -> list[Section]:
    """The tables of the view, in order: running, waiting, GPUs, groups, ended (the
    GPUs only if the service has any; the groups only if one has a limit or a pause or
    is not ``default``)."""
    running = sorted(model.running.values(), key=lambda p: p.get("started") or 0)
    out = [Section(
        "Running",
        ["ID", "CPU%", "MEM", "PROCS", "TIME", "CPUS", "GPUS", "GROUP", "COMMAND", "NOTE"],
        [[p["id"],
          "-" if p.get("cpu_percent") is None else f"{p['cpu_percent']:.0f}",
          _size(p.get("rss")), str(p.get("processes") if p.get("processes") is not None else "-"),
          _elapsed(p.get("started"), now), str(p.get("cpus") or 1),
          ",".join(p.get("gpus") or []) or "-", p.get("group") or "default",
          p.get("command") or p.get("kind") or "-", _note(p)]
         for p in running],
    )]  # fmt: skip
    out.append(Section(
        "Waiting (queue head)",
        ["ID", "PRIO", "WAITED", "CPUS", "GROUP", "COMMAND", "WHY IT WAITS"],
        [[p["id"], "-" if p.get("priority") is None else str(p["priority"]),
          _elapsed(p.get("submitted"), now), str(p.get("cpus") or 1),
          p.get("group") or "default", p.get("command") or p.get("kind") or "-",
          ("paused; " if p.get("paused") and "paused" not in (p.get("why") or "") else "")
          + local_reason(p.get("why") or "", p.get("begin"), now)]
         for p in model.waiting.values()],
        more=max(0, model.queued - len(model.waiting)),
    ))  # fmt: skip
    if model.gpus:
        out.append(Section("GPUs", ["GPU", "HELD BY"],
                           [[str(g.get("index")), g.get("petition") or "free"]
                            for g in model.gpus]))  # fmt: skip
    groups = model.groups
    if any(g.get("name") != "default" or g.get("max_running") or g.get("paused") for g in groups):
        out.append(Section("Groups", ["GROUP", "MAX", "RUNNING", "QUEUED", "STATE"],
                           [[g["name"], str(g.get("max_running") or "-"), str(g.get("running", 0)),
                             str(g.get("queued", 0)), "paused" if g.get("paused") else "admitting"]
                            for g in groups]))  # fmt: skip
    last = list(model.ended)[:ended]
    if ended:
        section = Section(
            f"Ended (last {ended})", ["ID", "STATE", "CODE", "ENDED", "TIME", "MESSAGE"],
            [[p["id"], str(p.get("state") or "-"),
              "-" if p.get("code") is None else str(p["code"]), _clock(p.get("ended")),
              _elapsed(p.get("started"), p.get("ended") or now) if p.get("started") else "-",
              p.get("message") or ""]
             for p in last],
        )  # fmt: skip
        section.styles = [_STATE_STYLES.get(str(p.get("state"))) for p in last]
        out.append(section)
    return out


def plain(title: str, parts: list[Section]) -> str:
    """The view as plain text (a snapshot for a pipe or ``--once``): aligned columns,
    no colour, no trailing spaces."""
    lines = [title]
    for part in parts:
        lines += ["", f"{part.title}:"]
        if not part.rows:
            lines.append("  (none)")
            continue
        lines += ["  " + line for line in table_lines(part.header, part.rows)]
        if part.more:
            lines.append(f"  … and {part.more} more")
    return "\n".join(lines) + "\n"


def _fit(parts: list[Section], height: int) -> None:
    """Leave out rows (waiting first, then ended, then running) so the view fits in
    ``height`` lines; each section notes how many it left out."""

    def used() -> int:
        # The header and the key line, then each table's title, header and rows.
        return 2 + sum(2 + max(1, len(p.rows)) + (1 if p.more else 0) for p in parts)

    for title in ("Waiting", "Ended", "Running"):
        for part in parts:
            if not part.title.startswith(title):
                continue
            while used() > height and part.rows:
                part.rows.pop()
                part.styles = part.styles[: len(part.rows)]
                part.more += 1


def render(model: TopModel, address: str, ended: int, height: int | None) -> Any:
    """The view as a rich renderable (``height``: the lines it may take)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    now = time.time()
    parts = sections(model, now, ended)
    if height is not None:
        _fit(parts, height)
    # One line whatever the width (the fitting counts one).
    items: list[Any] = [Text(header_line(model, address, now), style="bold", no_wrap=True,
                             overflow="ellipsis")]  # fmt: skip
    for part in parts:
        table = Table(*part.header, box=None, header_style="bold", title=part.title,
                      title_justify="left", title_style="bold cyan", expand=False,
                      pad_edge=False)  # fmt: skip
        for column in table.columns:
            column.no_wrap = True
            column.overflow = "ellipsis"
        if part.rows:
            for row, style in zip(part.rows, part.styles, strict=True):
                table.add_row(*map(Text, row), style=style)  # Text: no markup in cells
        else:
            table.add_row("(none)", *[""] * (len(part.header) - 1), style="dim")
        items.append(table)
        if part.more:
            items.append(Text(f"… and {part.more} more", style="dim"))
    items.append(Text("q: quit", style="dim"))
    return Group(*items)


@click.command("top")
@click.option(
    "--interval",
    "-n",
    type=click.FloatRange(USAGE_MIN_INTERVAL, USAGE_MAX_INTERVAL),
    default=TOP_INTERVAL,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between two measures of the running petitions' CPU and "
    "memory (events such as a start or an end show at once).",
)
@click.option(
    "--ended",
    "ended",
    type=click.IntRange(0, 20),
    default=5,
    show_default=True,
    metavar="N",
    help="How many of the last ended petitions to show.",
)
@click.option(
    "--once", is_flag=True, help="Print one snapshot as plain text and exit (what a pipe gets)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one snapshot as JSON and exit.")
@global_options
@click.pass_context
def top(ctx: click.Context, interval: float, ended: int, once: bool, as_json: bool) -> int:
    """A live view of the service: running petitions with their CPU and memory, the
    queue's head and why each waits, GPUs and who holds them, groups, the last ended.

    It refreshes from the service's event stream (no polling); 'q' or Ctrl+C leaves.
    When stdout is not a terminal or is a dumb one (TERM=dumb: no cursor movement), or
    with --once or --json, it prints one snapshot and exits 0.
    """
    from orcha.cli.connect import client
    from orcha.client.top_model import TopModel

    service = client(ctx)
    try:
        recent, events = service.watch_usage(interval)
        model = TopModel(recent)
        address = str(service.settings.address)
        if once or as_json or not sys.stdout.isatty() or _dumb_terminal():
            for envelope in events:
                model.apply(envelope)
                if model.usage_seen:
                    break
            else:
                from orcha.errors import LostServiceError

                raise LostServiceError("the service stopped before it sent a snapshot")
            if as_json:
                import json

                indent = 2 if sys.stdout.isatty() else None
                click.echo(json.dumps(model.to_json(), indent=indent))
            else:
                now = time.time()
                click.echo(plain(header_line(model, address, now), sections(model, now, ended)),
                           nl=False)  # fmt: skip
            return 0
        return _live(model, events, address, ended)
    finally:
        service.close()


def _dumb_terminal() -> bool:
    """Whether the terminal cannot move its cursor (an Emacs shell, say): rich's live
    view draws nothing there, so a snapshot is all ``top`` can show."""
    return os.environ.get("TERM", "") in ("dumb", "unknown")


def _live(model: TopModel, events: Iterator[dict[str, Any]], address: str, ended: int) -> int:
    """Draw the view until ``q``, Ctrl+C, SIGTERM or SIGHUP, or the service goes."""
    import queue
    import signal
    import threading

    from rich.console import Console
    from rich.live import Live

    inbox: queue.Queue[Any] = queue.Queue()

    def read() -> None:
        try:
            for envelope in events:
                inbox.put(envelope)
        except BaseException as e:  # the service went away: the main loop reports it
            inbox.put(e)
        else:
            inbox.put(None)

    threading.Thread(target=read, name="top-events", daemon=True).start()
    signalled: list[int] = []
    resized: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: signalled.append(signum))
                for sig in (signal.SIGTERM, signal.SIGHUP)}  # fmt: skip
    previous[signal.SIGWINCH] = signal.signal(
        signal.SIGWINCH, lambda signum, _frame: resized.append(signum)
    )
    console = Console(highlight=False)
    keys = _Keys()
    code = 0
    try:
        with keys, Live(console=console, screen=True, auto_refresh=False,
                        redirect_stdout=False, redirect_stderr=False) as live:  # fmt: skip
            drawn, changed = 0.0, True
            while not signalled:
                if "q" in keys.read().lower():
                    break
                try:
                    item = inbox.get(timeout=0.05)
                except queue.Empty:
                    item = False
                if isinstance(item, BaseException):
                    raise item
                if item is None:
                    raise _Gone()
                if item is not False:
                    changed = model.apply(item) or changed
                now = time.monotonic()
                if not model.usage_seen:
                    continue  # the first usage event comes at once and completes the view
                if resized:  # the terminal's size changed: fit the view to it now
                    resized.clear()
                    drawn = 0.0
                if (changed and now - drawn >= _REDRAW_MIN) or now - drawn >= _REDRAW_MAX:
                    live.update(render(model, address, ended, console.size.height),
                                refresh=True)  # fmt: skip
                    drawn, changed = now, False
    except KeyboardInterrupt:
        code = int(ExitCode.INTERRUPTED)
    except OSError:
        if not signalled:
            raise
        # SIGHUP: the terminal has gone, and restoring it cannot be written.
    except _Gone:
        from orcha.errors import LostServiceError

        raise LostServiceError("the service stopped") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if signalled:
        code = 128 + signalled[0]
    return code


class _Gone(Exception):
    """The event stream ended: the service closed the connection."""


class _Keys:
    """Keys typed on the terminal, read without waiting (cbreak mode: no echo, no line
    editing; Ctrl+C still interrupts). The terminal's mode is restored on exit. Without
    a terminal on stdin, no keys."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._saved: Any = None

    def __enter__(self) -> _Keys:
        if sys.stdin.isatty():
            import termios
            import tty

            self._fd = sys.stdin.fileno()
            self._saved = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd, termios.TCSANOW)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            import termios

            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)

    def read(self) -> str:
        """What was typed since the last read ("" if nothing)."""
        if self._fd is None:
            return ""
        import os
        import select

        text = ""
        while select.select([self._fd], [], [], 0)[0]:
            data = os.read(self._fd, 64)
            if not data:
                break
            text += data.decode(errors="replace")
        return text
