"""A petition's stdin, fed by its attached client (``orcha run`` with piped input).

The client sends its input with the ``stdin`` operation, in chunks; the service keeps
them in a :class:`StdinFeed`, and one thread per fed petition writes them into the stdin
pipe of the first process the petition spawns. Flow control is by credit: the feed
reports how many bytes the petition has taken so far (``{"event": "stdin", "read": N}``
on the client's output stream), and the client never sends more than
:data:`~orcha.defaults.STDIN_WINDOW_BYTES` beyond that. So the service holds at most one
window per petition, however large the input and however slowly the petition reads, and
a petition that never reads its stdin only stops its client from reading more input:
the client still gets its output and its end.

When the client's input ends, the pipe is closed (the petition reads EOF). When the
petition closes its end of the pipe (or its process exits), the feed reports it
(``{"event": "stdin", "closed": true}``) and the client stops reading its input. Later
processes of the petition (a retry's, a second ``ctx.spawn``) get /dev/null.
"""

from __future__ import annotations

import logging
import os
import selectors
import threading
from collections import deque
from collections.abc import Callable
from typing import IO

log = logging.getLogger("orcha.service.stdin")

#: Why a queued petition whose client sends its stdin is cancelled when the service
#: stops (or was found queued at the next start): its input lives in that client, which
#: the stop disconnects, so it could only run later on an empty stdin, a wrong result.
LOST_AT_STOP = (
    "the service is stopping before it started, and its stdin comes from its client, "
    "which the stop disconnects: it is not run without its input; submit it again"
)
LOST_AT_RESTART = (
    "its stdin came from its client, which the restart disconnected: it is not run "
    "without its input; submit it again"
)


class StdinFeed:
    """What an attached client has sent for its petition's stdin and not yet written.

    ``report(read, closed)`` is called (from the writer thread, under the feed's lock)
    each time the petition has taken more, and once if it stops taking any; never after
    :meth:`close`.
    """

    def __init__(self, limit: int, report: Callable[[int, bool], None]) -> None:
        self.limit = limit
        self._report = report
        self._lock = threading.Lock()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0  # bytes received and not yet written
        self.read = 0  # bytes the petition has taken
        self.eof = False  # the client's input has ended
        self.closed = False  # nothing more is written (the petition ended or stopped reading)
        self.used = False  # given to a process already
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def put(self, data: bytes, eof: bool = False) -> int:
        """Keep ``data`` for the petition (and, with ``eof``, close its stdin once it has
        read it); how many bytes are buffered now. Dropped if the petition no longer
        reads. ValueError if the client sends beyond its window or after its EOF."""
        with self._lock:
            if self.closed:
                return 0
            if self.eof and (data or not eof):
                raise ValueError("the petition's stdin was closed by its client already")
            if self._buffered + len(data) > self.limit:
                raise ValueError(
                    f"more stdin than the window allows ({self.limit} bytes ahead of "
                    "what the petition has read)"
                )
            if data:
                self._chunks.append(bytes(data))
                self._buffered += len(data)
            self.eof = self.eof or eof
            self._wake()
            return self._buffered

    @property
    def waiting(self) -> bool:
        """Whether its input is still for a process to come (none has started yet)."""
        return not self.used and not self.closed

    def attach(self, pipe: IO[bytes]) -> None:
        """Feed ``pipe``, a process's stdin, from a thread of its own (it closes it)."""
        with self._lock:
            self.used = True
            if self.closed:
                pipe.close()
                return
            self._thread = threading.Thread(
                target=self._feed, args=(pipe,), name="stdin", daemon=True
            )
        os.set_blocking(pipe.fileno(), False)
        self._thread.start()

    def close(self) -> None:
        """The petition has ended: write nothing more, report nothing more."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._chunks.clear()
            self._buffered = 0
            if self._thread is not None:
                self._wake()  # the writer thread closes the pipe and the wake descriptors
            else:
                self._close_wake()

    # The wake descriptors are written and closed under the lock only: a descriptor
    # number closed by one thread may be another file's by the time a second one writes.
    def _wake(self) -> None:
        if self._wake_w < 0:
            return
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # awake already

    def _close_wake(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _next(self) -> tuple[bytes | None, bool]:
        """(the chunk to write, or None; whether to stop)."""
        with self._lock:
            if self.closed:
                return None, True
            if self._chunks:
                return self._chunks[0], False
            return None, self.eof

    def _taken(self, n: int, whole: bool) -> None:
        with self._lock:
            if self.closed:
                return
            if whole:
                self._chunks.popleft()
            else:
                self._chunks[0] = self._chunks[0][n:]
            self._buffered -= n
            self.read += n
            self._report(self.read, False)

    def _feed(self, pipe: IO[bytes]) -> None:
        fd = pipe.fileno()
        stopped = False  # the petition closed its stdin
        sel = selectors.DefaultSelector()
        wake = self._wake_r  # closed by this thread only, at its end
        sel.register(wake, selectors.EVENT_READ)
        try:
            while True:
                chunk, stop = self._next()
                if stop:
                    break
                if chunk is not None:
                    try:
                        n = os.write(fd, chunk)
                    except BlockingIOError:
                        n = 0
                    except OSError:  # EPIPE: it closed its stdin (or exited)
                        stopped = True
                        break
                    if n:
                        self._taken(n, n == len(chunk))
                        continue
                    sel.register(fd, selectors.EVENT_WRITE)
                    sel.select()
                    sel.unregister(fd)
                else:
                    sel.select()
                try:
                    while os.read(wake, 512):
                        pass
                except (BlockingIOError, OSError):
                    pass
        except Exception:
            log.exception("feeding a petition's stdin failed")
        finally:
            sel.close()
            try:
                pipe.close()
            except OSError:
                pass  # it went away; nothing left to flush
            with self._lock:
                if stopped and not self.closed:
                    self._report(self.read, True)
                self.closed = True
                self._chunks.clear()
                self._buffered = 0
                self._close_wake()
