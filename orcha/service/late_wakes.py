"""Late wakes: items a client need not have at once reach it together.

A client waiting for many petitions (``orcha wait`` on an array) needs their ends, not
each one the moment it happens: waking its session for every end cost the service (and
the client) a thread switch, a request and an answer per petition. Such an end is queued
without waking the reader (``OutputQueue.put(..., wake=False)``); :class:`LateWakes`
wakes it at most ``delay`` seconds later, with whatever else was queued meanwhile. The
last end a client waits for is pushed as usual: a ``wait`` returns as soon as it can.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Protocol

from orcha.defaults import WAIT_BATCH_SECONDS

log = logging.getLogger("orcha.service")


class Wakeable(Protocol):
    def wake(self) -> None:
        """Make the reader see the items queued without waking it."""


class LateWakes:
    """Calls ``wake()`` of each queue given to :meth:`later` within ``delay`` seconds.

    One thread for all queues, started with the first; it waits without a timeout while
    nothing is due (an idle service does not wake for it)."""

    def __init__(self, delay: float = WAIT_BATCH_SECONDS) -> None:
        self.delay = delay
        self._due: deque[tuple[float, Wakeable]] = deque()  # in deadline order
        self._pending: set[int] = set()  # id() of the queues in _due
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def later(self, queue: Wakeable) -> None:
        """Wake ``queue`` within ``delay`` seconds (once, however often it is given
        before then)."""
        with self._cond:
            if id(queue) in self._pending:
                return
            self._pending.add(id(queue))
            self._due.append((time.monotonic() + self.delay, queue))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="late-wakes", daemon=True)
                self._thread.start()
            elif len(self._due) == 1:
                self._cond.notify()

    def _loop(self) -> None:
        due = self._due
        while True:
            with self._cond:
                while not due or due[0][0] > time.monotonic():
                    self._cond.wait(due[0][0] - time.monotonic() if due else None)
                now = time.monotonic()
                woken = []
                while due and due[0][0] <= now:
                    woken.append(due.popleft()[1])
                self._pending.difference_update(map(id, woken))
            for queue in woken:
                try:
                    queue.wake()
                except Exception:  # the thread must not die: later wakes depend on it
                    log.exception("waking a client's stream failed")


#: The one instance the service's streams use.
LATE_WAKES = LateWakes()
