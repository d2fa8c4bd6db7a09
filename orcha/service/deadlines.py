"""Deadlines: the one thread that times out running attempts (``--timeout``)."""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from orcha.defaults import MAX_DURATION_SECONDS
from orcha.units import capped_wait

if TYPE_CHECKING:
    from orcha.service.job import Job

log = logging.getLogger("orcha.service.runner")


class Deadlines:
    """Calls ``expire(job)`` when a running attempt's ``--timeout`` is up.

    One thread for every petition with a timeout, sleeping until the earliest deadline
    (without a timeout when there is none; a day at most, then again). Nothing one entry
    does ends the thread: every other petition's timeout depends on it.
    """

    def __init__(self, expire: Callable[[Job], None]) -> None:
        self._expire = expire
        self._heap: list[tuple[float, int, int, Job]] = []  # (when, seq, attempt, job)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, job: Job, seconds: float) -> None:
        """Time out ``job``'s current attempt in ``seconds`` (at most the longest duration
        orcha takes: a longer one is cut to it, and logged)."""
        if not seconds <= MAX_DURATION_SECONDS:  # checked by Schedule; a bug must not overflow
            log.error("petition %s: timeout %r cut to %gs", job.id, seconds, MAX_DURATION_SECONDS)
            seconds = MAX_DURATION_SECONDS
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + seconds, job.seq, job.attempt, job))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()

    def remove(self, job: Job) -> None:
        with self._cond:
            self._heap = [e for e in self._heap if e[1] != job.seq]
            heapq.heapify(self._heap)

    def _loop(self) -> None:
        while True:
            try:
                self._next()
            except Exception:  # never seen; if it were, the other deadlines still hold
                log.exception("deadlines: a round failed")

    def _next(self) -> None:
        """Wait for the earliest deadline and time its attempt out."""
        with self._cond:
            while not self._heap or self._heap[0][0] > time.monotonic():
                left = self._heap[0][0] - time.monotonic() if self._heap else None
                self._cond.wait(None if left is None else capped_wait(left))
            _, _, attempt, job = heapq.heappop(self._heap)
        if job.attempt == attempt:
            try:
                self._expire(job)
            except Exception:
                log.exception("petition %s: timing out failed", job.id)
