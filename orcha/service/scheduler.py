"""Admission: which queued petition starts next, and when.

Pure logic behind one lock, with no threads or processes of its own: the service calls
:meth:`Scheduler.admit` whenever something that could let a petition start has happened
(a submission, an end, a cancellation). Nothing polls.

Order: lowest ``priority`` first; equal priorities in arrival order. The head of the queue
blocks those behind it when its condition does not hold (strict order: a large petition
is never starved by smaller ones that arrive later).
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Callable

from orcha.errors import DuplicateIdError
from orcha.service.job import HeapEntry, Job
from orcha.states import State

log = logging.getLogger("orcha.service.scheduler")


class Scheduler:
    """The priority queue of waiting jobs and the set of running ones."""

    def __init__(self, start: Callable[[Job], None]) -> None:
        self._start = start
        self._heap: list[HeapEntry] = []
        self._live: dict[str, Job] = {}  # ID -> queued or running job
        self._running: dict[int, Job] = {}  # seq -> running job
        self._condition_errors: set[int] = set()
        self.lock = threading.RLock()
        self.accepting = True

    @property
    def running_count(self) -> int:
        return len(self._running)

    @property
    def queued_count(self) -> int:
        with self.lock:
            return sum(1 for e in self._heap if e.job.state is State.QUEUED)

    def jobs(self) -> list[Job]:
        """Every queued or running job, running first, then in admission order."""
        with self.lock:
            queued = sorted(e for e in self._heap if e.job.state is State.QUEUED)
            return list(self._running.values()) + [e.job for e in queued]

    def get(self, petition_id: str) -> Job | None:
        with self.lock:
            return self._live.get(petition_id)

    def submit(self, job: Job) -> None:
        """Queue ``job`` and start whatever may start. DuplicateIdError if its ID is live."""
        with self.lock:
            if job.id in self._live:
                raise DuplicateIdError(job.id)
            self._live[job.id] = job
            heapq.heappush(self._heap, HeapEntry(job.priority, job.seq, job))
            self.admit()

    def admit(self) -> None:
        """Start queued jobs, in order, while the one at the head may start."""
        with self.lock:
            while self._heap and self.accepting:
                head = self._heap[0].job
                if head.state is not State.QUEUED:  # cancelled while waiting
                    heapq.heappop(self._heap)
                    continue
                if not self._may_start(head):
                    return
                heapq.heappop(self._heap)
                head.set_state(State.RUNNING)
                self._running[head.seq] = head
                self._start(head)

    def _may_start(self, job: Job) -> bool:
        try:
            return bool(job.petition.condition(job.petition))
        except (Exception, SystemExit):
            # A broken predicate means "not now"; logged once per job so a plugin bug
            # neither floods the log nor takes the service down.
            if job.seq not in self._condition_errors:
                self._condition_errors.add(job.seq)
                log.exception("condition of petition %s raised; it keeps waiting", job.id)
            return False

    def positions(self) -> dict[int, int]:
        """Each waiting job's place in the queue (0 = next), by seq: one sort for all."""
        with self.lock:
            waiting = sorted(e for e in self._heap if e.job.state is State.QUEUED)
        return {entry.seq: place for place, entry in enumerate(waiting)}

    def why_waiting(self, place: int, describe_condition: str) -> str:
        """Why a waiting job at ``place`` in the queue has not started, in words."""
        if not self.accepting:
            return "the service is not starting petitions"
        if place:
            return f"behind {place} petition(s) of higher priority or earlier arrival"
        return describe_condition

    def remove_queued(self, job: Job, on_removed: Callable[[Job], None] | None = None) -> bool:
        """Take a waiting job out of the queue (it is marked CANCELLED); False if it started.

        ``on_removed`` runs while the job is still known by its ID, so whoever looks it up
        meanwhile finds it ended rather than not at all.
        """
        with self.lock:
            if job.state is not State.QUEUED:
                return False
            job.set_state(State.CANCELLED)
            if on_removed is not None:
                on_removed(job)
            self._forget(job)
            # The heap entry is dropped lazily by admit(); re-admit in case it was the head.
            self.admit()
            return True

    def finished(self, job: Job) -> None:
        """A running job ended: free its slot and start what may start."""
        with self.lock:
            self._running.pop(job.seq, None)
            self._forget(job)
            self.admit()

    def _forget(self, job: Job) -> None:
        if self._live.get(job.id) is job:
            del self._live[job.id]
        self._condition_errors.discard(job.seq)

    def forget(self, job: Job) -> None:
        """Drop a waiting job from the live IDs without ending it (kept for a restart)."""
        with self.lock:
            self._forget(job)

    def drain_queued(self) -> list[Job]:
        """Stop admitting and return every waiting job (for shutdown)."""
        with self.lock:
            self.accepting = False
            waiting = [e.job for e in sorted(self._heap) if e.job.state is State.QUEUED]
            self._heap.clear()
            return waiting

    def running(self) -> list[Job]:
        with self.lock:
            return list(self._running.values())
