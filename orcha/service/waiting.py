"""Waiting petitions that are not in the order yet, and changes to waiting petitions.

A petition submitted with ``--hold`` waits until ``orcha release``; one with ``--delay``
or ``--at`` until its start time, on the scheduler's clock. Like those waiting for
their dependencies, they stay out of the order the admission walk goes through (so a
thousand held petitions cost a walk nothing), parked: the held ones in a dict, the timed
ones in a heap of start times. The walk moves the due ones into the order first; the
daemon sleeps until the earliest start time (:meth:`WaitingControl.next_start`), so an
idle service has one timer at most and never polls.

``orcha edit`` and ``orcha release`` change a waiting petition here: out of the order,
changed, back in (its place follows its new priority), then admission.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING

from orcha.service.queued import set_rank
from orcha.states import State

if TYPE_CHECKING:
    from orcha.protocol.schedule import Schedule
    from orcha.service.job import Job
    from orcha.service.petition_queue import PetitionQueue, SortedIndex
    from orcha.service.queued import Waiting
    from orcha.service.scheduler_lock import SchedulerLock


class WaitingControl:
    """Mixed into :class:`~orcha.service.scheduler.Scheduler`, whose lock, clock, queue
    and admission it uses."""

    lock: SchedulerLock
    _clock: Callable[[], float]
    _queue: PetitionQueue
    _timed: SortedIndex
    _waiting: dict[int, Waiting]
    _parked: dict[int, Waiting]  # seq -> job held until 'orcha release'
    _timers: list[tuple[float, int]]  # heap of (start time, seq)

    def admit(self) -> None:
        raise NotImplementedError

    def order_key(self, job: Waiting) -> float:
        raise NotImplementedError

    def _enter_order(self, job: Waiting) -> None:
        raise NotImplementedError

    def _push(self, job: Waiting) -> None:
        raise NotImplementedError

    def _settle(self, job: Waiting, settle: bool = True) -> Job | None:
        raise NotImplementedError

    # -- parked jobs -----------------------------------------------------------------------
    def _unpark_all(self) -> None:
        """No job is parked (at start, and when the queue is drained)."""
        self._parked = {}
        self._timers = []

    def _park(self, job: Waiting) -> bool:
        """Keep ``job`` (dependencies met) out of the order if it is held or its start
        time has not come; whether it was."""
        schedule = job.schedule
        if schedule.hold:
            self._parked[job.seq] = job
            return True
        if schedule.begin is not None and schedule.begin > self._clock():
            heapq.heappush(self._timers, (schedule.begin, job.seq))
            return True
        return False

    def _timer_valid(self, entry: tuple[float, int]) -> bool:
        """Whether a timer still stands for its job (not started, cancelled or changed:
        timers are dropped lazily, when they come up). By record number: a compact
        entry's Job takes its place (:mod:`orcha.service.queued`)."""
        begin, seq = entry
        job = self._waiting.get(seq)
        return job is not None and job.schedule.begin == begin

    def _enter_due(self) -> None:
        """Jobs whose start time has come enter the order (the walk calls it first)."""
        now, timers = self._clock(), self._timers
        while timers and timers[0][0] <= now:
            entry = heapq.heappop(timers)
            job = self._waiting.get(entry[1])
            if job is not None and self._timer_valid(entry) and not job.schedule.hold:
                self._push(job)

    def next_start(self) -> float | None:
        """The earliest start time (on the scheduler's clock) a waiting job waits for,
        or None: when admission must look again though no event comes."""
        with self.lock:
            timers = self._timers
            while timers and not self._timer_valid(timers[0]):
                heapq.heappop(timers)
            return timers[0][0] if timers else None

    # -- changes to a waiting job ------------------------------------------------------------
    def release(self, job: Job) -> bool:
        """Let a waiting job start like any other: drop its ``--hold`` and its start time
        (``--delay``, ``--at``). False if it is not waiting any more."""
        return self.change(job, schedule=job.schedule.replace(hold=False, begin=None, delay=0.0))

    def change(
        self, job: Job, *, priority: int | None = None, schedule: Schedule | None = None
    ) -> bool:
        """Give a waiting job a new ``priority`` (its place in the order is that of a
        petition of this priority submitted when it was) and/or a new ``schedule``
        (checked by the caller), then start whatever may start. False (nothing changed)
        if it is not waiting any more."""
        with self.lock:
            if job.state is not State.QUEUED or self._waiting.get(job.seq) is not job:
                return False
            # Out of the order first: its rank and its bounded run are the index keys.
            self._queue.remove(job)
            self._timed.remove(job)
            self._parked.pop(job.seq, None)
            if priority is not None:
                job.petition.priority = priority
                set_rank(job, (self.order_key(job), job.seq))
            if schedule is not None:
                deps_changed = schedule.dependencies != job.schedule.dependencies
                job.schedule = schedule
                job.blocked_since = None  # what it waits for may have changed
                if deps_changed:
                    job.deps_ready = not schedule.dependencies
            if job.deps_ready:
                self._enter_order(job)
            else:
                self._settle(job)  # may fail it now, if a new dependency failed
            self.admit()
            return True
