"""OutputQueue: the shared queue that carries a petition's output to its client.

It lives in the service. The service's own code puts into it directly; clients of the
original Orcha API reach it through a ``multiprocessing.managers`` proxy
(``ClientManager.manager.Queue()``); orcha's session threads wait on :meth:`fileno`
together with their client's socket, so one thread serves a client with no polling.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from typing import Any

__all__ = ["DISCARD", "OutputQueue"]


def _size(item: Any) -> int:
    """Bytes an item holds against the cap: text, binary, or the data of an output chunk
    (orcha's ``(stream, data)`` and the followed ``(stream, handle, data)``); 0 for
    everything else (events, exit codes, progress)."""
    if isinstance(item, (bytes, bytearray, memoryview, str)):
        return len(item)
    if isinstance(item, tuple) and item and isinstance(item[-1], (bytes, bytearray, memoryview)):
        return len(item[-1])
    return 0


class OutputQueue:
    """A FIFO with the interface of :class:`queue.Queue` plus :meth:`drain` and :meth:`fileno`.

    With ``max_bytes`` > 0, :meth:`put` blocks while the queue holds more than
    ``max_bytes`` of text, binary items and output chunks, so a slow reader slows the
    writer instead of growing the service's memory: one queue never holds more than
    ``max_bytes`` plus one item. What it holds includes the batch :meth:`lend` last
    handed out, until its reader is done with it (:meth:`release`, or its next read): a
    session writing a batch to a slow client holds it meanwhile. After :meth:`discard`,
    puts are dropped and never block. After :meth:`stop_waiting` (its petition is being
    stopped), puts never block either: output beyond ``max_bytes`` is dropped (its
    petition's log keeps it), everything else is still queued.

    ``OutputQueue.peak_bytes``: the most any bounded queue has held (for tests and
    ``info``).
    """

    peak_bytes = 0

    def __init__(self, max_bytes: int = 0) -> None:
        self._items: deque[Any] = deque()
        self._bytes = 0  # held by the items queued
        self._lent = 0  # held by the batch last drained, until it is released
        self._max_bytes = max_bytes
        self._cond = threading.Condition()
        self._discarded = False
        self._waits = True  # a put of output beyond the bound waits (see stop_waiting)
        self._closed = False
        self._efd: int | None = None
        self._signalled = False  # the descriptor of fileno() is readable

    # -- writer side -------------------------------------------------------------------
    def put(
        self, item: Any, block: bool = True, timeout: float | None = None, *, wake: bool = True
    ) -> None:
        """Queue ``item``. Without ``wake`` it does not make :meth:`fileno` readable: a
        reader selecting on it takes it with what comes next, or after :meth:`wake`
        (blocking :meth:`get` callers are woken either way)."""
        size = _size(item)
        with self._cond:
            if self._max_bytes and size and block:
                deadline = None if timeout is None else time.monotonic() + timeout
                while self._bytes + self._lent > self._max_bytes and not self._discarded:
                    if not self._waits:
                        return  # its petition is being stopped: its log has this
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise queue.Full
                    self._cond.wait(left)
            if self._discarded:
                return
            self._items.append(item)
            self._bytes += size
            if self._max_bytes and self._bytes + self._lent > OutputQueue.peak_bytes:
                OutputQueue.peak_bytes = self._bytes + self._lent
            self._cond.notify_all()
            if wake and not self._signalled and self._efd is not None:
                os.eventfd_write(self._efd, 1)
                self._signalled = True

    def wake(self) -> None:
        """Make :meth:`fileno` readable if items are waiting (those put without ``wake``)."""
        with self._cond:
            if self._items and not self._signalled and self._efd is not None:
                os.eventfd_write(self._efd, 1)
                self._signalled = True

    def put_nowait(self, item: Any) -> None:
        self.put(item, block=False)

    def would_block(self) -> bool:
        """Whether a :meth:`put` of output would wait now (the queue is at its bound and
        its reader has not taken it)."""
        with self._cond:
            if not self._max_bytes or self._discarded or not self._waits:
                return False
            return self._bytes + self._lent > self._max_bytes

    def offer(self, item: Any) -> bool:
        """Queue ``item`` unless that would hold more than ``max_bytes`` (an item is
        always taken by an empty queue, so the queue never refuses for ever); never
        blocks. False if refused: the reader has fallen behind."""
        size = _size(item)
        with self._cond:
            if self._discarded:
                return True  # nobody reads: as good as delivered
            if self._max_bytes and self._items and self._bytes + size > self._max_bytes:
                return False
        self.put(item, block=False)
        return True

    # -- reader side -------------------------------------------------------------------
    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        with self._cond:
            if not block:
                if not self._items:
                    raise queue.Empty
            elif not self._cond.wait_for(lambda: bool(self._items), timeout):
                raise queue.Empty
            item = self._items.popleft()
            self._bytes -= _size(item)
            self._lent = 0  # a reader back for more is done with the batch before
            if not self._items:
                self._reset_fd()
            self._cond.notify_all()
            return item

    def get_nowait(self) -> Any:
        return self.get(block=False)

    def get_batch(self, timeout: float | None = None) -> list[Any]:
        """Every item queued, waiting until there is at least one (``timeout`` seconds at
        most: then an empty list). One round trip reads what many :meth:`get` calls would."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._items), timeout):
                return []
        return self.drain()

    def drain(self) -> list[Any]:
        """Every item queued now, without blocking (clears the readiness of :meth:`fileno`)."""
        return self.lend(hold=False)

    def lend(self, hold: bool = True) -> list[Any]:
        """What :meth:`drain` returns; with ``hold``, its bytes still count against
        ``max_bytes`` until :meth:`release` or the next read (a session writing them to a
        slow client holds them meanwhile)."""
        with self._cond:
            self._reset_fd()
            items = list(self._items)
            self._items.clear()
            self._lent, self._bytes = (self._bytes if hold else 0), 0
            self._cond.notify_all()
            return items

    def release(self) -> None:
        """The reader is done with the batch :meth:`lend` last handed out (it has been
        written to its client): its bytes no longer count."""
        with self._cond:
            if self._lent:
                self._lent = 0
                self._cond.notify_all()

    @property
    def held(self) -> int:
        """Bytes held now: queued, and handed out but not released."""
        with self._cond:
            return self._bytes + self._lent

    #: A session answers ``get_batch`` without blocking: it waits for :meth:`fileno`,
    #: then takes.
    take = drain

    def _reset_fd(self) -> None:
        # Caller holds the lock: the queue is (about to be) empty, so not readable.
        if self._efd is not None and self._signalled:
            self._signalled = False
            try:
                os.eventfd_read(self._efd)
            except BlockingIOError:
                pass

    def fileno(self) -> int:
        """A descriptor that is readable while items are waiting (created on first use).

        ValueError once the queue is closed: a closed queue never creates another
        descriptor (nobody would close it)."""
        with self._cond:
            if self._closed:
                raise ValueError("the output queue is closed")
            if self._efd is None:
                self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
                if self._items:
                    os.eventfd_write(self._efd, 1)
                    self._signalled = True
            return self._efd

    def stop_waiting(self, stop: bool = True) -> None:
        """Its petition is being stopped (cancelled, timed out, or the service stops):
        from now on no put waits for the reader, and a put waiting now returns. Output
        beyond ``max_bytes`` is dropped rather than queued (the bound holds; the
        petition's log keeps every byte); events, its end among them, are still queued.

        Without it a client that stopped reading (``orcha run ... | less``, never
        scrolled) would keep the thread pumping its petition waiting for ever: the
        petition could never end, its ID and slot never be freed, the service never
        stop. ``stop`` False: puts wait again (its next attempt runs)."""
        with self._cond:
            self._waits = not stop
            self._cond.notify_all()

    def discard(self) -> None:
        """Nobody will read any more: drop what is queued and every later put."""
        with self._cond:
            self._discarded = True
            self._items.clear()
            self._bytes = self._lent = 0
            self._cond.notify_all()

    def close(self) -> None:
        """Release the descriptor of :meth:`fileno` for good (puts are dropped from now)."""
        self.discard()
        with self._cond:
            self._closed = True
            if self._efd is not None:
                os.close(self._efd)
                self._efd = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called: nothing more will ever be read."""
        return self._closed

    def qsize(self) -> int:
        with self._cond:
            return len(self._items)

    def empty(self) -> bool:
        return self.qsize() == 0

    def full(self) -> bool:
        return False


class _Discard:
    """Where the output of a petition no client streams goes (it is still logged): one
    shared object rather than an OutputQueue per detached petition."""

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        pass

    def put_nowait(self, item: Any) -> None:
        pass

    def close(self) -> None:
        pass


DISCARD = _Discard()
