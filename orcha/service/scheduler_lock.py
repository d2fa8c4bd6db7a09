"""The scheduler's lock, which knows who holds it and since when.

Whatever holds it (a plugin predicate, a kind's ``start`` that blocks, a slow write to
the store) holds up admission, submissions and every request that needs the queue.
``orcha health`` must say so without waiting for it: it asks :meth:`SchedulerLock.stuck`,
which never blocks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from threading import get_ident
from typing import Any


class SchedulerLock:
    """A re-entrant lock (``threading.RLock``'s interface) that records which thread took
    it first and when (``clock``: ``time.monotonic`` unless a test gives a fake). It costs
    each outermost acquire one timestamp and one thread ident."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self._depth = 0  # changed by the holder only
        self._since: float | None = None
        self._holder: int | None = None  # its thread's ident

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if not self._lock.acquire(blocking, timeout):
            return False
        self._depth += 1
        if self._depth == 1:
            self._holder, self._since = get_ident(), self.clock()
        return True

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._since = self._holder = None
        self._lock.release()

    def __enter__(self) -> bool:
        self._lock.acquire()
        self._depth += 1
        if self._depth == 1:
            self._holder, self._since = get_ident(), self.clock()
        return True

    def __exit__(self, *exc: Any) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._since = self._holder = None
        self._lock.release()

    def stuck(self, longer_than: float) -> tuple[float, str] | None:
        """(seconds, thread name) if one thread has held the lock for more than
        ``longer_than`` seconds; else None. Without taking the lock (read twice, the
        holder may change between the reads: a stamp that changed is not stuck)."""
        since, holder = self._since, self._holder
        if since is None or holder is None or since != self._since:
            return None
        held = self.clock() - since
        if held <= longer_than:
            return None
        name = next((t.name for t in threading.enumerate() if t.ident == holder), None)
        return held, name or f"#{holder}"
