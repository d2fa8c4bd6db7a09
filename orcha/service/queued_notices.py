"""Why an attached petition waits, told to its client while it waits.

A client whose petition does not start at once shows that it waits and why (``orcha:
queued (...)``): the words ``orcha status`` shows, from :meth:`Scheduler.explain`. One
thread, started on the first such petition, looks every
:data:`~orcha.defaults.QUEUED_NOTICE_SECONDS` while any waits (a petition is first
looked at that long after its submission: one that starts sooner is never announced),
and puts a :class:`~orcha.service.job.Queued` item into the client's stream when the
reason is new. It is put under the scheduler's lock, while the petition is still
queued, so it always comes before the petition's ``started``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from orcha.defaults import QUEUED_NOTICE_SECONDS
from orcha.service.job import Queued
from orcha.states import State

if TYPE_CHECKING:
    from orcha.service.job import Job
    from orcha.service.scheduler import Scheduler

log = logging.getLogger("orcha.service.queued_notices")


class QueuedNotices:
    """The attached petitions still waiting, with what their clients were told."""

    def __init__(self, scheduler: Scheduler, interval: float = QUEUED_NOTICE_SECONDS) -> None:
        self.scheduler = scheduler
        self.interval = interval
        self._jobs: dict[int, tuple[Job, float, str | None]] = {}  # seq -> job, due, told
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, job: Job) -> None:
        """``job`` was just submitted attached and waits: tell its client why, if it
        still waits in a moment."""
        with self._cond:
            self._jobs[job.seq] = (job, time.monotonic() + self.interval, None)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="queued", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._jobs))
                due = min(d for _, d, _ in self._jobs.values())
            left = due - time.monotonic()
            if left > 0:
                time.sleep(left)
            try:
                self._look()
            except Exception:
                log.exception("telling clients why their petitions wait failed")
                time.sleep(self.interval)

    def _look(self) -> None:
        now = time.monotonic()
        with self._cond:
            jobs = dict(self._jobs)
        if not any(d <= now for _, d, _ in jobs.values()):
            return
        reasons = self.scheduler.explain()
        scheduler = self.scheduler
        changed: dict[int, tuple[Job, float, str | None]] = {}
        gone: list[int] = []
        with scheduler.lock:
            for seq, (job, due, told) in jobs.items():
                if job.state is not State.QUEUED or not scheduler.accepting:
                    gone.append(seq)
                    continue
                if due > now:
                    continue
                reason = reasons.get(seq)
                if reason and reason != told:
                    job.queue.put(Queued(reason), block=False)
                    told = reason
                changed[seq] = (job, now + self.interval, told)
        with self._cond:
            for seq in gone:
                self._jobs.pop(seq, None)
            for seq, entry in changed.items():
                if seq in self._jobs:
                    self._jobs[seq] = entry
