"""How a foreground client shows a petition's progress reports.

On a terminal (stderr is a TTY): a rich progress bar, a spinner when the amount is
unknown, removed when the petition ends. Otherwise: plain lines on stderr
(``orcha: progress 3/10 files``), at most two a second plus the last, so logs stay
readable. rich is imported only when a bar is drawn.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from typing import Any

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
    """Shows progress reports for one petition; :meth:`close` when it ends."""

    def __init__(self, petition_id: str, tty: bool | None = None) -> None:
        self.petition_id = petition_id
        self.tty = sys.stderr.isatty() if tty is None else tty
        self._bar: Any = None
        self._task: Any = None
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
        try:
            os.write(2, f"orcha: progress {line}\n".encode())
        except OSError:
            pass

    def _draw(self, value: float | None, target: float | None, unit: str) -> None:
        if self._bar is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            console = Console(stderr=True, no_color="NO_COLOR" in os.environ)
            self._bar = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                TextColumn("{task.fields[amount]}"), TimeElapsedColumn(),
                console=console, transient=True,
            )  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task(self.petition_id, total=None, amount="")
        self._bar.update(
            self._task,
            completed=value or 0,
            total=target if value is not None else None,
            amount=describe(value, target, unit),
        )

    def close(self) -> None:
        if self._bar is not None:
            bar, self._bar = self._bar, None
            try:
                bar.stop()
            except OSError:
                pass  # the terminal went away; nothing left to restore
        elif self._pending is not None:
            self._emit(self._pending)
            self._pending = None
