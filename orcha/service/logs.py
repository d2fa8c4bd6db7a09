"""A petition's output log: every byte it wrote, in order, with the stream it went to.

The file is a sequence of frames: one stream byte (``o`` stdout, ``e`` stderr), a 4-byte
big-endian length, then the data. Writes are flushed at once, so ``orcha logs`` and
``orcha follow`` see output while the petition runs. Past the cap one last stderr frame
says so, and later output is no longer kept (attached clients still receive it).

A write that fails (disk full, a read-only or missing folder) never reaches the petition
or its clients: the log keeps what was written before, is marked incomplete with the
reason (``truncated``; the record's ``log_truncated``), and later output is not kept.
"""

from __future__ import annotations

import errno
import os
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

from orcha.protocol.messages import STDERR

_FRAME = struct.Struct("!BI")


class PetitionLog:
    """Appends one petition's output to its log file.

    ``on_truncated(reason)`` is called once, if a write fails (under the log's lock: it
    must not block or write to this log)."""

    def __init__(
        self, path: str, cap: int, on_truncated: Callable[[str], None] | None = None
    ) -> None:
        self.path = path
        self.cap = cap
        self.written = 0  # bytes of output kept
        self.size = 0  # bytes in the file (frames included): where a reader catches up
        self.capped = False
        self.closed = False
        self.truncated: str | None = None  # why later output is not kept (a write failed)
        self._on_truncated = on_truncated
        self._lock = threading.Lock()
        self._fd: int | None = None  # opened on the first output: a silent petition has none

    def write(self, stream: int, data: bytes) -> None:
        """Keep ``data``; never raises (a failure truncates the log, see above)."""
        with self._lock:
            if self.capped or self.closed or self.truncated is not None:
                return
            try:
                self._write(stream, data)
            except OSError as e:
                why = e.strerror or str(e)
                self._truncate(f"{why} (output after byte {self.written} not kept)")

    def _truncate(self, reason: str) -> None:
        self.truncated = reason
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        if self._on_truncated is not None:
            try:
                self._on_truncated(reason)
            except Exception:  # a report must not fail the petition's output
                pass

    def _write(self, stream: int, data: bytes) -> None:
        if self._fd is None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            self._fd = os.open(self.path, flags, 0o600)
        room = self.cap - self.written
        if len(data) > room:
            if room > 0:
                self._frame(stream, data[:room])
            self._frame(
                STDERR,
                f"orcha: the output log is capped at {self.cap} bytes; later output "
                "was not kept\n".encode(),
                output=False,
            )
            self.capped = True
            return
        self._frame(stream, data)

    def _frame(self, stream: int, data: bytes, output: bool = True) -> None:
        assert self._fd is not None
        header = _FRAME.pack(stream, len(data))
        size = len(header) + len(data)
        done = os.writev(self._fd, (header, data))  # O_APPEND: one write; data not copied
        if done < size:
            # The disk filled up within the frame: readers stop at a partial frame.
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if output:
            self.written += len(data)
        self.size += size

    def close(self) -> None:
        with self._lock:
            self.closed = True
            if self._fd is not None:
                try:
                    os.close(self._fd)
                except OSError:
                    pass  # a delayed write error: nothing more to keep anyway
                self._fd = None


def read_log(path: str, end: int | None = None, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """The (stream, data) frames of a log file from byte ``start`` (a frame boundary:
    ``PetitionLog.size`` at some point) up to byte ``end`` (all if None); stops at the end
    of what has been written so far."""
    if not path or not os.path.exists(path):
        return
    with open(path, "rb") as f:
        f.seek(start)
        while end is None or f.tell() < end:
            header = f.read(_FRAME.size)
            if len(header) < _FRAME.size:
                return
            stream, size = _FRAME.unpack(header)
            data = f.read(size)
            if len(data) < size:
                return
            yield stream, data


def last_lines(frames: list[Any], n: int) -> list[Any]:
    """The frames holding the last ``n`` lines of output (a final newline ends the last
    line rather than starting an empty one)."""
    if n == 0:
        return []
    out: list[Any] = []
    for i in range(len(frames) - 1, -1, -1):
        stream, data = frames[i]
        pos = len(data) - 1 if (i == len(frames) - 1 and data.endswith(b"\n")) else len(data)
        while (pos := data.rfind(b"\n", 0, pos)) >= 0:
            n -= 1
            if n == 0:
                out.append((stream, data[pos + 1 :]))
                return out[::-1]
        out.append((stream, data))
    return out[::-1]
