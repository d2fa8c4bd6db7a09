"""The priority queue: waiting jobs in their petitions' order, as a binary heap.

Jobs are ordered as their petitions compare (:class:`orcha.interfaces.Petition`): by the
rank the scheduler sets at enqueue (effective priority at arrival, then arrival
sequence), which comes first in a petition's comparison and is unique once queued. So
the heap holds the ranks themselves, ``(key, seq)`` tuples: the same order, compared
in C rather than through ``__lt__`` calls (that halved a refill with 100,000 queued),
and the petition is looked up by its record number (a rank's last item), so a compact
entry (:mod:`orcha.service.queued`) can be replaced by its Job in place
(:meth:`PetitionQueue.replace`). It never needs
re-sorting. Removal is lazy: a removed job stays in the heap, skipped, until it reaches
the top or until removed jobs are half the heap (then it is rebuilt), so removing costs
O(1) amortised. :meth:`PetitionQueue.in_order` walks the heap in order without changing
it, costing what it looks at (O(k log k) for the first k jobs), not the length of the
queue.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from orcha.service.queued import rank_of

if TYPE_CHECKING:
    from orcha.service.queued import Waiting

#: Removed jobs tolerated in the heap before it is rebuilt (and at least half of it).
_COMPACT_AT = 64


class PetitionQueue:
    """Jobs by their petitions' order. Not thread-safe: the scheduler's lock guards it."""

    def __init__(self) -> None:
        self._heap: list[tuple[Any, ...]] = []  # the ranks, (key, seq)
        self._members: dict[int, Waiting] = {}  # seq -> job, for the jobs really in the queue
        self._removed = 0  # entries of the heap that are no longer members

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, job: Waiting) -> bool:
        return self._members.get(job.seq) is job

    def push(self, job: Waiting) -> None:
        """Queue ``job`` (its petition's rank must be set)."""
        if self._members.get(job.seq) is job:
            return
        self._members[job.seq] = job
        heapq.heappush(self._heap, rank_of(job))

    def extend(self, jobs: list[Waiting]) -> None:
        """Queue many (their ranks set): one heapify when they outnumber the queue."""
        if len(jobs) < len(self._heap):
            for job in jobs:
                self.push(job)
            return
        members = self._members
        for job in jobs:
            if members.get(job.seq) is not job:
                members[job.seq] = job
                self._heap.append(rank_of(job))
        heapq.heapify(self._heap)

    def replace(self, job: Waiting) -> None:
        """``job`` stands for the queued petition of its record number from now on (a
        compact entry's Job); nothing happens if that petition is not queued."""
        if job.seq in self._members:
            self._members[job.seq] = job

    def remove(self, job: Waiting) -> None:
        """Take ``job`` out (lazily); nothing happens if it is not queued."""
        if self._members.get(job.seq) is not job:
            return
        del self._members[job.seq]
        self._removed += 1
        heap, members = self._heap, self._members
        # A heap entry stands while its seq is queued with that very rank (a petition
        # taken out and queued again with a new rank leaves its old entry behind).
        while heap and not _stands(heap[0], members):
            heapq.heappop(heap)
            self._removed -= 1
        if self._removed > _COMPACT_AT and self._removed * 2 > len(heap):
            self._heap = [e for e in heap if _stands(e, members)]
            heapq.heapify(self._heap)
            self._removed = 0

    def clear(self) -> None:
        self._heap.clear()
        self._members.clear()
        self._removed = 0

    def in_order(self) -> Iterator[Waiting]:
        """Every queued job, first to last, produced lazily. The queue must not change
        while the iteration is in progress (collect, then remove; a job may be
        :meth:`replace`d)."""
        heap, members = self._heap, self._members
        if not heap:
            return
        # A second heap of the candidates for "next": the children of what was produced.
        frontier: list[tuple[tuple[Any, ...], int]] = [(heap[0], 0)]
        n = len(heap)
        pop, push = heapq.heappop, heapq.heappush
        while frontier:
            i = pop(frontier)[1]
            rank = heap[i]
            job = members.get(rank[-1])
            if job is not None and rank_of(job) == rank:
                yield job
            child = 2 * i + 1
            if child < n:
                push(frontier, (heap[child], child))
                child += 1
                if child < n:
                    push(frontier, (heap[child], child))


class SortedIndex:
    """Some queued jobs (the scheduler's: those with a bounded run) as a list sorted by
    rank, for walks that may go through all of them behind a given job: a sorted list is
    walked at list speed from a bisected start, where a heap costs a pop per job looked
    at. Inserting costs a bisection and a memmove."""

    def __init__(self) -> None:
        self._ranks: list[tuple[Any, ...]] = []
        self._jobs: dict[tuple[Any, ...], Waiting] = {}  # rank -> job

    def __len__(self) -> int:
        return len(self._ranks)

    def push(self, job: Waiting) -> None:
        rank = rank_of(job)
        if rank in self._jobs:
            return
        self._jobs[rank] = job
        bisect.insort(self._ranks, rank)

    def replace(self, job: Waiting) -> None:
        """As :meth:`PetitionQueue.replace`."""
        rank = rank_of(job)
        if rank in self._jobs:
            self._jobs[rank] = job

    def remove(self, job: Waiting) -> None:
        rank = rank_of(job)
        if self._jobs.get(rank) is not job:
            return
        del self._jobs[rank]
        i = bisect.bisect_left(self._ranks, rank)
        del self._ranks[i]

    def clear(self) -> None:
        self._ranks.clear()
        self._jobs.clear()

    def after(self, rank: tuple[Any, ...]) -> Iterator[Waiting]:
        """The jobs ranked after ``rank``, in order. The index must not change while the
        iteration is in progress."""
        ranks, jobs = self._ranks, self._jobs
        for i in range(bisect.bisect_right(ranks, rank), len(ranks)):
            yield jobs[ranks[i]]


def first_in_order(jobs: Iterable[Waiting], first: int | None = None) -> list[Waiting]:
    """The ``first`` N of ``jobs`` in their petitions' order (all if None): a partial
    selection, cheaper than sorting a long queue to look at its head."""
    if first is None:
        return sorted(jobs, key=rank_of)
    return heapq.nsmallest(first, jobs, key=rank_of)


def _stands(rank: tuple[Any, ...], members: dict[int, Waiting]) -> bool:
    job = members.get(rank[-1])
    return job is not None and rank_of(job) == rank
