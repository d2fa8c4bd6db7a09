"""The scheduler's side of compact queue entries (:mod:`orcha.service.queued`): queuing
many at once, looking waiting petitions up with or without building their Jobs, and
building one in its entry's place.

Mixed into :class:`~orcha.service.scheduler.Scheduler`. Which calls build a Job:
:meth:`QueuedControl.get` (a petition asked for by ID, to act on it), :meth:`job`,
:meth:`jobs` and :meth:`waiting` (every one: for acting on all), the admission walk (a
petition about to start, or to fail). Which do not: :meth:`peek`, :meth:`views`,
:meth:`waiting_views`, :meth:`held`, :meth:`built` (for reading and listing, and
waiting by record number), explaining why petitions wait.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from orcha.defaults import PREDICATE_STUCK_SECONDS
from orcha.errors import DuplicateIdError
from orcha.service.explain import explain
from orcha.service.petition_queue import first_in_order
from orcha.service.queued import Queued, rank_of

if TYPE_CHECKING:
    from orcha.service.explain import Rules
    from orcha.service.job import Job
    from orcha.service.machines import Machine
    from orcha.service.petition_queue import PetitionQueue, SortedIndex
    from orcha.service.predicates import Dependencies, Holds
    from orcha.service.queued import Waiting
    from orcha.service.scheduler_lock import SchedulerLock


class QueuedControl:
    """Mixed into :class:`~orcha.service.scheduler.Scheduler`, whose lock and waiting
    petitions it uses."""

    lock: SchedulerLock
    accepting: bool
    aging: float
    _clock: Callable[[], float]
    _live: dict[str, Waiting]
    _waiting: dict[int, Waiting]
    _running: dict[int, Job]
    _queue: PetitionQueue
    _timed: SortedIndex
    _parked: dict[int, Waiting]
    machines: list[Machine]
    backfill_bound: float
    _rules: Rules
    _state: Holds
    _deps: Dependencies

    def admit(self) -> None:
        raise NotImplementedError

    def _insert(self, job: Waiting) -> None:
        raise NotImplementedError

    def settle_dependencies(self) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def holding(self, settle: bool = False) -> Iterator[None]:
        """Start nothing inside (the caller holds the lock), then admit (``settle``:
        :meth:`settle_dependencies`, which also admits, for petitions queued inside).
        What a change made inside allows starts only once the caller has saved it (a
        petition it starts may crash the service; the next start must find the change),
        and many petitions queued inside are admitted once, not once each."""
        with self.lock:
            accepting, self.accepting = self.accepting, False
            try:
                yield
            finally:
                self.accepting = accepting  # as found: False if the service is stopping
                if settle:
                    self.settle_dependencies()
                else:
                    self.admit()

    # -- queuing -------------------------------------------------------------------------
    def submit_queued(self, entries: list[Queued], taken: list[Queued] | None = None) -> None:
        """Queue compact entries and start whatever may start. An entry whose ID is
        live already is put in ``taken`` and not queued; without ``taken``,
        DuplicateIdError, with none of them queued (the caller reserved the IDs)."""
        with self.lock:
            live = self._live
            if taken is None:
                for entry in entries:
                    if entry.id in live:
                        raise DuplicateIdError(entry.id)
            ready: list[Waiting] = []
            timed: list[Waiting] = []
            now, waiting, aging = self._clock(), self._waiting, self.aging
            for entry in entries:
                if entry.id in live:
                    assert taken is not None
                    taken.append(entry)
                    continue
                live[entry.id] = entry
                schedule = entry.schedule
                if not entry.deps_ready or schedule.hold or (schedule.begin or 0) > now:
                    self._insert(entry)  # it waits out of the order (see Scheduler._insert)
                    continue
                # As Scheduler._insert does, for many: its rank, then into the order.
                priority = entry.priority
                entry.rank = (priority + entry.created / aging if aging > 0 else float(priority),
                              entry.seq)  # fmt: skip
                waiting[entry.seq] = entry
                ready.append(entry)
                if schedule.longest_run is not None:
                    timed.append(entry)
            self._queue.extend(ready)
            for bounded in timed:
                self._timed.push(bounded)
            self.admit()

    # -- looking up --------------------------------------------------------------------------
    def get(self, petition_id: str) -> Job | None:
        """The waiting or running petition ``petition_id``, as its Job (built if it
        was queued compactly), or None."""
        with self.lock:
            found = self._live.get(petition_id)
            return None if found is None else self.job(found)

    def peek(self, petition_id: str) -> Waiting | None:
        """The waiting or running petition ``petition_id`` as it is held (a compact
        entry is not built): for reading only. Without the lock: one dict read is atomic,
        and a status must not wait for admission (a plugin predicate that blocks holds
        the lock)."""
        return self._live.get(petition_id)

    def array_waits(self, name: str) -> tuple[str, ...]:
        """The IDs of the members of array ``name`` not ended yet, which its
        dependants wait for (none if ``name`` names no array)."""
        with self.lock:
            return self._deps.arrays.members_waited_for(name)

    def array_queued(self, name: str) -> None:
        """Array ``name`` was just queued: an earlier petition of that name that ended
        is no longer what ``--after NAME`` means (the newest wins)."""
        with self.lock:
            self._deps.recent.pop(name, None)
            self._deps.arrays.queued(name)

    def peek_each(self, petition_ids: Iterable[str]) -> list[Waiting | None]:
        """:meth:`peek` for each of ``petition_ids``, in order (a listing's page looks up
        thousands)."""
        get = self._live.get
        return [get(petition_id) for petition_id in petition_ids]

    def get_seq(self, seq: int) -> Job | None:
        """The waiting or running petition of record ``seq``, as its Job, or None."""
        with self.lock:
            found = self._running.get(seq) or self._waiting.get(seq)
            return None if found is None else self.job(found)

    def held(self, seq: int) -> Waiting | None:
        """The waiting or running petition of record ``seq`` as it is held (a compact
        entry is not built), or None: for reading only."""
        with self.lock:
            return self._running.get(seq) or self._waiting.get(seq)

    def built(self, seq: int) -> Job | None:
        """The Job of the waiting or running petition of record ``seq`` if it has one
        (a compact entry not built yet has none: none is built), else None."""
        with self.lock:
            found = self._running.get(seq) or self._waiting.get(seq)
        if type(found) is Queued:
            return found.built
        return found  # type: ignore[return-value]

    def views(self) -> list[Waiting]:
        """Every waiting or running petition as it is held (running first, then
        waiting in order): for reading only."""
        with self.lock:
            return [*self._running.values(), *self.waiting_views()]

    def waiting_views(self) -> list[Waiting]:
        """Every waiting petition in order, as it is held: for reading only."""
        with self.lock:
            return sorted(self._waiting.values(), key=rank_of)

    def jobs(self) -> list[Job]:
        """Every waiting or running job: running first, then waiting in order (every
        compact entry is built: to act on them all)."""
        with self.lock:
            return [self.job(j) for j in self.views()]

    def waiting(self) -> list[Job]:
        """Every waiting job in order (those waiting for dependencies included; every
        compact entry is built)."""
        with self.lock:
            return [self.job(j) for j in self.waiting_views()]

    # -- building ------------------------------------------------------------------------------
    def job(self, found: Waiting) -> Job:
        """The Job of a waiting or running petition: ``found`` itself, or the Job its
        compact entry is built into, which takes the entry's place for good. An entry
        read before (a view) gives the Job it became since, whatever it did meanwhile
        (started, ended): never a second Job of one petition."""
        if type(found) is not Queued:
            return found  # type: ignore[return-value]
        with self.lock:
            if found.built is not None:
                return found.built
            job = found.built = found.source.build(found)
            if self._waiting.get(found.seq) is not found:
                return job  # dropped at a stop: its record keeps it, as it was
            self._waiting[job.seq] = job
            if self._live.get(job.id) is found:
                self._live[job.id] = job
            if found.seq in self._parked:
                self._parked[found.seq] = job
            self._queue.replace(job)
            self._timed.replace(job)
            return job

    def explain(self, first: int | None = None) -> dict[int, str]:
        """For each waiting job (by seq; the ``first`` N in order if given), why it has not
        started, in words: those of the predicate that said no, or why backfill waits.

        Copies what it needs under the lock and words it outside, so a status request
        over a long queue does not hold up admission; none (no reasons) if the lock is
        held longer than a scheduler that is not stuck holds it (PREDICATE_STUCK_SECONDS).
        """
        if not self.lock.acquire(timeout=PREDICATE_STUCK_SECONDS):
            return {}  # stuck (a plugin predicate that blocks: 'orcha health' names it)
        try:
            jobs = first_in_order(self._waiting.values(), first)
            if not self.accepting:
                return {job.seq: "the service is not starting petitions" for job in jobs}
            memory = any(j.schedule.mem for j in jobs)
            views = [m.snapshot(memory) for m in self.machines]
            holds = {job.seq: self._rules.hold_reason(job) for job in jobs}
            groups = self._state.copy()
        finally:
            self.lock.release()
        return explain(jobs, holds, views, self._rules, self._clock(), self.backfill_bound, groups)
