"""Deadlines: the one thread that times out running attempts (``--timeout``)."""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orcha.service.job import Job

log = logging.getLogger("orcha.service.runner")


class Deadlines:
    """Calls ``expire(job)`` when a running attempt's ``--timeout`` is up.

    One thread for every petition with a timeout, sleeping until the earliest deadline
    (without a timeout when there is none).
    """

    def __init__(self, expire: Callable[[Job], None]) -> None:
        self._expire = expire
        self._heap: list[tuple[float, int, int, Job]] = []  # (when, seq, attempt, job)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, job: Job, seconds: float) -> None:
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
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                _, _, attempt, job = heapq.heappop(self._heap)
            if job.attempt == attempt:
                try:
                    self._expire(job)
                except Exception:
                    log.exception("petition %s: timing out failed", job.id)
