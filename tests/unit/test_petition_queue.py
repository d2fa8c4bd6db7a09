"""The priority queue: petitions ordered by their own comparison (priority, arrival,
aging), lazy removal, ordered walks that leave the heap as it was."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from orcha.interfaces import Petition
from orcha.protocol.outputs import DISCARD
from orcha.service.job import Job
from orcha.service.petition_queue import PetitionQueue, SortedIndex


def _noop(cb: Any, petition: Any) -> None:
    pass


@dataclass(order=True)
class Other(Petition):
    """Another petition class: dataclass comparison refuses mixed classes."""

    note: str = field(compare=False, default="")


def queued(
    pid: str, rank: tuple[float, int], cls: type[Petition] = Petition, priority: int = 0
) -> Job:
    """A job whose petition was queued with ``rank`` (as the scheduler sets it)."""
    petition = cls(id=pid, queue=DISCARD, action=_noop, condition=bool)
    petition.priority = priority
    petition.rank = rank
    return Job(petition, native=True, token_prefix="t", seq=rank[1])


def test_petitions_never_queued_compare_by_priority_and_queued_ones_by_rank() -> None:
    a = Petition(id="a", queue=DISCARD, action=_noop, condition=bool)
    b = Petition(id="b", queue=DISCARD, action=_noop, condition=bool)
    a.priority, b.priority = 5, 1
    assert b < a
    # queued: the rank (effective priority at arrival, arrival) decides, not priority
    a.rank, b.rank = (0.5, 1), (1.0, 2)
    assert a < b
    a.rank, b.rank = (1.0, 3), (1.0, 2)  # equal effective priority: arrival order
    assert b < a


def test_the_heap_pops_in_rank_order_whatever_the_push_order() -> None:
    rng = random.Random(5)
    jobs = [queued(f"j{i}", (float(rng.randint(-3, 3)), i)) for i in range(200)]
    q = PetitionQueue()
    for job in rng.sample(jobs, len(jobs)):
        q.push(job)
    expected = sorted(jobs, key=lambda j: (j.petition.rank[0], j.seq))
    assert list(q.in_order()) == expected
    assert list(q.in_order()) == expected  # walking changed nothing
    assert len(q) == 200


def test_aging_ranks_put_an_old_low_priority_petition_first() -> None:
    # rank = priority + submitted / aging (aging 60 s): priority 5 submitted 301 s
    # before a priority-0 one is ahead of it; 299 s before, behind it.
    old = queued("old", (5 + 1000 / 60, 1))
    newer = queued("newer", (0 + 1301 / 60, 2))
    soon = queued("soon", (0 + 1299 / 60, 3))
    q = PetitionQueue()
    for job in (newer, soon, old):
        q.push(job)
    assert [j.id for j in q.in_order()] == ["soon", "old", "newer"]


def test_petitions_of_different_classes_share_one_order() -> None:
    q = PetitionQueue()
    jobs = [queued("p", (2.0, 1)), queued("o", (1.0, 2), Other), queued("p2", (1.0, 3))]
    for job in jobs:
        q.push(job)
    assert [j.id for j in q.in_order()] == ["o", "p2", "p"]


def test_removal_is_lazy_and_compaction_keeps_the_order() -> None:
    jobs = [queued(f"j{i}", (float(i % 7), i)) for i in range(500)]
    q = PetitionQueue()
    for job in jobs:
        q.push(job)
    gone = set(range(0, 500, 3)) | set(range(0, 500, 5))
    for i in sorted(gone, reverse=True):
        q.remove(jobs[i])
        q.remove(jobs[i])  # twice: nothing more happens
    left = [j for j in jobs if j.seq not in gone]
    assert len(q) == len(left)
    assert list(q.in_order()) == sorted(left, key=lambda j: j.petition.rank)
    assert len(q._heap) < 500  # removed entries do not pile up
    assert jobs[1] in q and jobs[0] not in q


def test_a_job_pushed_twice_is_queued_once() -> None:
    q = PetitionQueue()
    job = queued("a", (0.0, 1))
    q.push(job)
    q.push(job)
    assert list(q.in_order()) == [job]


def test_sorted_index_walks_the_jobs_after_a_rank() -> None:
    index = SortedIndex()
    jobs = [queued(f"j{i}", (float(i // 2), i)) for i in range(10)]
    for job in reversed(jobs):
        index.push(job)
    assert list(index.after(jobs[3].petition.rank)) == jobs[4:]
    index.remove(jobs[5])
    index.remove(jobs[5])
    assert list(index.after(jobs[3].petition.rank)) == jobs[4:5] + jobs[6:]
    assert len(index) == 9
    index.clear()
    assert list(index.after((-1.0, 0))) == []


def test_the_heap_order_is_the_petitions_own_comparison() -> None:
    rng = random.Random(11)
    jobs = [queued(f"j{i}", (float(rng.randint(0, 4)), i), priority=9 - i) for i in range(60)]
    q = PetitionQueue()
    for job in rng.sample(jobs, len(jobs)):
        q.push(job)
    assert [j.petition for j in q.in_order()] == sorted(j.petition for j in jobs)


def test_a_job_replacing_its_entry_keeps_its_place_and_a_new_rank_leaves_no_stale_one() -> None:
    q, timed = PetitionQueue(), SortedIndex()
    a, b, c = queued("a", (1.0, 1)), queued("b", (2.0, 2)), queued("c", (3.0, 3))
    q.extend([c, a, b])  # many at once: one heapify
    timed.push(b)
    b2 = queued("b", (2.0, 2))  # b's Job, built from its compact entry
    q.replace(b2)
    timed.replace(b2)
    assert list(q.in_order()) == [a, b2, c] and list(timed.after((1.0, 1))) == [b2]
    q.replace(queued("x", (9.0, 9)))  # not queued: nothing happens
    assert len(q) == 3
    # Taken out, given a better rank, queued again: it comes once, at its new place.
    q.remove(c)
    c.petition.rank = (0.5, 3)
    q.push(c)
    assert list(q.in_order()) == [c, a, b2]
    q.remove(c)
    q.remove(a)
    assert list(q.in_order()) == [b2]
