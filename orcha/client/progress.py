"""How a foreground client shows a petition's progress reports.

On a terminal (stderr is a TTY): a rich progress bar, a spinner when the amount is
unknown, as the live line of the client's :class:`~orcha.client.screen.Screen` (output
never lands on it), removed when the petition ends. Otherwise: plain lines on stderr
(``orcha: progress 3/10 files``), at most two a second plus the last, so logs stay
readable. rich is imported only when a bar is drawn.
"""

from __future__ import annotations

import os
import time

from orcha.text import printable

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from typing import Any

    from orcha.client.screen import Screen

#: Least seconds between two plain progress lines.
PLAIN_INTERVAL = 0.5


def _number(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe(value: float | None, target: float | None, unit: str) -> str:
    """``3/10 files``, ``3 files``, or ``working`` (no value)."""
    if value is None:
        text = "working"
    elif target is None:
        text = _number(value)
    else:
        text = f"{_number(value)}/{_number(target)}"
    return f"{text} {unit}".rstrip()


class ProgressView:
    """Shows progress reports for one petition on ``screen``; :meth:`close` when it ends.

    On a terminal, the bar is the screen's live line (so output never lands on it)."""

    def __init__(self, petition_id: str, screen: Screen) -> None:
        self.petition_id = petition_id
        self.screen = screen
        self.tty = screen.tty
        self._bar: Any = None
        self._task: Any = None
        self._consoles: dict[int, Any] = {}  # width -> the console rendering the bar
        self._last_line = 0.0
        self._pending: str | None = None

    def update(self, value: float | None, target: float | None, unit: str) -> None:
        if self.tty:
            self._draw(value, target, unit)
            return
        line = describe(value, target, unit)
        now = time.monotonic()
        final = value is not None and target is not None and value >= target
        if final or now - self._last_line >= PLAIN_INTERVAL:
            self._emit(line)
            self._last_line = now
            self._pending = None
        else:
            self._pending = line  # shown at close if nothing newer comes

    def _emit(self, line: str) -> None:
        self.screen.notice(f"progress {line}")

    def _draw(self, value: float | None, target: float | None, unit: str) -> None:
        if self._bar is None:
            from rich.progress import (
                BarColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            # Never started: no thread of rich's draws; the screen asks for the line.
            self._bar = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                # The amount holds the kind's unit: text, not markup (see below).
                TextColumn("{task.fields[amount]}", markup=False), TimeElapsedColumn(),
                auto_refresh=False,
            )  # fmt: skip
            self._task = self._bar.add_task(self.petition_id, total=None, amount="")
        self._bar.update(
            self._task,
            completed=value or 0,
            total=target if value is not None else None,
            # Escaped: a kind may pass on what a petition holds; it must not drive the
            # terminal.
            amount=printable(describe(value, target, unit)),
        )
        self.screen.live(self._line)

    def _line(self, width: int) -> str:
        """The bar as one line of at most ``width`` columns, with its colours."""
        console = self._consoles.get(width)
        if console is None:
            import io

            from rich.console import Console

            console = Console(file=io.StringIO(), width=width, force_terminal=True,
                              no_color="NO_COLOR" in os.environ, highlight=False)  # fmt: skip
            self._consoles = {width: console}
        console.begin_capture()
        console.print(self._bar.make_tasks_table(self._bar.tasks), end="", no_wrap=True,
                      overflow="crop", crop=True)  # fmt: skip
        return str(console.end_capture()).split("\n", 1)[0]

    def close(self) -> None:
        if self._bar is not None:
            self._bar = None
            self.screen.live(None)
        elif self._pending is not None:
            self._emit(self._pending)
            self._pending = None
