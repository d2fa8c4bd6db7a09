"""Backfill: which later petitions may start ahead of one that is blocked.

A petition whose resources fit on no machine is *blocked*. A later one that fits may
start ahead of it (*pass* it) by one of two rules, each of which keeps the blocked one
from starving (docs/scheduling.rst, "Backfill", says it for users):

* **It cannot delay it at all** (:func:`~orcha.service.predicates.leaves_room`): it
  takes none of the resources a blocked petition ahead of it waits for, and leaves
  each of them what it needs of the others (CPU slots, memory, GPUs, a slot of its
  group). So a blocked petition starts the moment what it waits for is freed, exactly
  as if nothing had passed it. A CPU-only petition passes one that waits for GPUs, as
  long as a CPU slot stays free for it. With several machines it holds machine by
  machine: a blocked petition is kept room only on the machines it could ever run on
  (:class:`~orcha.service.predicates.Kept`), so a CPU-only petition fills a worker
  without GPUs freely.
* **It cannot delay it by more than the backfill bound**
  (:func:`~orcha.service.predicates.ends_by`): it has a ``--timeout``, and all its
  attempts end within ``backfill_bound`` of when the blocked one was first found
  blocked.

The first rule needs to look at any petition behind the blocked one, so it looks at
most :data:`~orcha.defaults.BACKFILL_LOOKAHEAD` of them per walk, and only while some
machine has a CPU slot to spare beyond what the blocked ones need; the second looks
only at petitions with a timeout (an index of them), as far as the queue goes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from orcha.defaults import BACKFILL_LOOKAHEAD
from orcha.service import predicates as preds
from orcha.service.queued import rank_of
from orcha.states import State

if TYPE_CHECKING:
    from orcha.service.job import Job
    from orcha.service.machines import Machine
    from orcha.service.petition_queue import SortedIndex
    from orcha.service.queued import Waiting


class BackfillControl:
    """Mixed into :class:`~orcha.service.scheduler.Scheduler`: the second phase of its
    admission walk (under its lock)."""

    machines: list[Machine]
    backfill_bound: float
    _timed: SortedIndex
    _state: preds.Holds

    def _held(self, job: Waiting) -> bool:
        raise NotImplementedError

    def _fitting(self, job: Waiting) -> list[Machine]:
        raise NotImplementedError

    def _choose(self, job: Job, fitting: list[Machine]) -> Machine | None:
        raise NotImplementedError

    def _take(self, job: Job, machine: Machine) -> None:
        raise NotImplementedError

    def _room(self) -> bool:
        raise NotImplementedError

    def job(self, found: Waiting) -> Job:
        raise NotImplementedError

    def _backfill(self, blocked: Waiting, behind: Iterator[Waiting], now: float) -> list[Job]:
        """Start, by the rules above, what may pass ``blocked`` (the first job that fits
        nowhere); ``behind``: the jobs after it, in order. Returns the jobs taken."""
        started: list[Job] = []
        if blocked.blocked_since is None:
            blocked.blocked_since = now
        deadline = blocked.blocked_since + self.backfill_bound
        # What the blocked jobs ahead need: a passer must leave it to them.
        kept: preds.Kept | None = None
        if blocked.native:
            kept = preds.Kept(self.machines)
            kept.add(blocked)
        last = blocked
        room = self._room()
        looked = 0
        while kept is not None and room and looked < BACKFILL_LOOKAHEAD and self._spare(kept):
            job = next(behind, None)
            if job is None:
                return started  # the whole queue was looked at
            last = job
            if self._held(job):
                continue
            looked += 1
            fitting = self._fitting(job)
            if not fitting:
                deadline = self._blocked_too(job, now, deadline)
                if not job.native:
                    kept = None  # the original API's look_ahead: nothing passes it
                    break
                kept.add(job)
                continue
            harmless = [m for m in fitting if preds.leaves_room(job, m, kept, self._state)]
            if not harmless and not preds.ends_by(job.schedule, now, deadline):
                continue
            job = self.job(job)  # it may start: a compact entry becomes its Job
            chosen = self._choose(job, harmless or fitting)
            if chosen is not None:
                self._take(job, chosen)
                started.append(job)
                room = self._room()
        # Then only the jobs with a bounded run, after the last one looked at.
        for job in self._timed.after(rank_of(last)):
            if not room or now >= deadline:
                break
            if job.state is not State.QUEUED or self._held(job):
                continue
            fitting = self._fitting(job)
            if not fitting:
                deadline = self._blocked_too(job, now, deadline)
                continue
            if not preds.ends_by(job.schedule, now, deadline):
                continue  # would delay a blocked job by more than the bound
            job = self.job(job)
            chosen = self._choose(job, fitting)
            if chosen is not None:
                self._take(job, chosen)
                started.append(job)
                room = self._room()
        return started

    def _blocked_too(self, job: Waiting, now: float, deadline: float) -> float:
        """``job``, behind the first blocked one, fits nowhere either: the deadline
        passers must end by protects it too."""
        if job.blocked_since is None:
            job.blocked_since = now
        return min(deadline, job.blocked_since + self.backfill_bound)

    def _spare(self, kept: preds.Kept) -> bool:
        """Whether some machine has a CPU slot beyond what the blocked jobs need there
        (every petition takes one, so without one nothing passes by the first rule)."""
        return any(m.free_slots > kept.on(m)[0] for m in self.machines)
