"""Where an attached client writes: the petition's output, its own notices, and one live
line (the progress bar, or why the petition waits) at the bottom of the terminal.

The live line is drawn on stderr, only when stderr is a terminal, and never shares a
line with output: before anything is written to the terminal (the petition's stdout or
stderr, when they are the terminal, or a notice) the line is erased, and it is drawn
again only once what was written ends a line. So output always lands on clean lines,
and a petition that leaves a line open (a prompt, ``printf 'x'``) keeps the live line
hidden until it ends that line. No thread draws: the client's loop calls :meth:`tick`
(a spinner and a clock move) and every change redraws in the same thread.
"""

from __future__ import annotations

import os

from orcha.text import printable

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from collections.abc import Callable

#: Erase from the cursor to the end of the line; hide and show the cursor.
_ERASE, _HIDE_CURSOR, _SHOW_CURSOR = "\x1b[K", "\x1b[?25l", "\x1b[?25h"


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to ``fd`` (BrokenPipeError if its reader has gone)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


class Screen:
    """The client's writes to fds 1 and 2, and the live line (see the module's doc).

    ``tty``: whether stderr is a terminal (default: ask); ``width``: its width in
    columns (default: ask, each time a line is drawn)."""

    def __init__(self, tty: bool | None = None, width: Callable[[], int] | None = None) -> None:
        self.tty = _isatty(2) if tty is None else tty
        # The descriptors that reach the terminal the live line is on (the same one, as
        # a shell sets them up; a redirected stdout does not disturb the live line).
        self._terminal = {fd for fd in (1, 2) if _isatty(fd)} | ({2} if self.tty else set())
        self._width = width
        self._render: Callable[[int], str] | None = None  # the live line, for a width
        self._shown = False  # the live line is on the terminal now
        self._midline = False  # what was last written to the terminal did not end a line
        self._cursor_hidden = False

    # -- the live line -------------------------------------------------------------------
    def live(self, render: Callable[[int], str] | None) -> None:
        """Show ``render(width)`` as the live line from now on (None: no live line)."""
        self._render = render if self.tty else None
        if self._render is None:
            self._erase()
        else:
            self._draw()

    @property
    def has_live(self) -> bool:
        return self._render is not None

    def tick(self) -> None:
        """Draw the live line again (its spinner and clock move)."""
        if self._render is not None:
            self._draw()

    def _columns(self) -> int:
        """The terminal's width: COLUMNS if set (as rich and shutil read it), else what
        the terminal says, else 80."""
        if self._width is not None:
            return self._width()
        try:
            columns = int(os.environ.get("COLUMNS", "0"))
        except ValueError:
            columns = 0
        if columns <= 0:
            try:
                columns = os.get_terminal_size(2).columns
            except OSError:
                columns = 0
        return columns if columns > 0 else 80

    def _draw(self) -> None:
        if self._render is None or self._midline:
            return
        # One column short of the width: a line that fills it would wrap on some
        # terminals, and "\r" would then go back to the wrapped part only.
        text = self._render(max(10, self._columns() - 1))
        lead = "" if self._cursor_hidden else _HIDE_CURSOR
        self._cursor_hidden = True
        self._to_terminal(f"{lead}\r{text}{_ERASE}")
        self._shown = True

    def _erase(self) -> None:
        if self._shown:
            self._to_terminal(f"\r{_ERASE}")
            self._shown = False

    def _to_terminal(self, text: str) -> None:
        try:
            write_all(2, text.encode())
        except OSError:
            self._render = None  # the terminal has gone: nothing to draw on

    # -- writes ----------------------------------------------------------------------------
    def output(self, fd: int, data: bytes | memoryview) -> None:
        """The petition's output to fd 1 or 2 (BrokenPipeError if its reader is gone)."""
        if not data:
            return
        if fd not in self._terminal:
            write_all(fd, data)
            return
        self._erase()
        write_all(fd, data)
        self._midline = data[-1:] != b"\n"
        self._draw()

    def notice(self, text: str) -> None:
        """One line of the client's own on stderr (``orcha: ...``), on a line of its own;
        control characters and bytes that were not UTF-8 shown escaped (it may quote a
        petition's argv or message)."""
        line = f"orcha: {printable(text)}\n"
        if self._midline and 2 in self._terminal:
            line = "\n" + line  # a notice never continues the petition's open line
        try:
            self._erase()
            write_all(2, line.encode())
        except OSError:
            return
        self._midline = False
        self._draw()

    def close(self) -> None:
        """Remove the live line and give the terminal its cursor back."""
        self._render = None
        self._erase()
        if self._cursor_hidden:
            self._cursor_hidden = False
            self._to_terminal(_SHOW_CURSOR)
