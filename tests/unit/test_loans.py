"""Loans: a parent blocked on its children lends them its reservation, so parents
waiting on children never deadlock the queue, even when parents fill every slot.

Pure logic, as in ``test_scheduler.py``: a fake clock and a fake host drive the
scheduler; nothing sleeps, no thread or process is started.
"""

from __future__ import annotations

from typing import Any

from orcha.service.job import Job
from orcha.states import State
from tests.unit.test_scheduler import GIB, FakeHost, World


def child(world: World, parent: Job, pid: str, **kwargs: Any) -> Job:
    """A child of ``parent`` submitted now."""
    job = world.job(pid, **kwargs)
    job.parent = parent
    world.sched.submit(job)
    return job


def test_parents_filling_every_slot_lend_them_to_their_children_one_at_a_time() -> None:
    w = World(capacity=2)
    a, b = w.submit("a"), w.submit("b")
    kids = {p.id: [child(w, p, f"{p.id}.{n}") for n in (1, 2, 3)] for p in (a, b)}
    other = w.submit("other")  # after the children: no parent, no loan
    assert w.started == ["a", "b"]  # every slot is taken, the children wait

    w.sched.lend(a)  # a blocks on its children: one of them starts in its share
    assert w.started == ["a", "b", "a.1"]
    assert w.sched.machines[0].used_slots == 2  # in a's share, not in a slot of its own
    w.sched.lend(b)
    assert w.started == ["a", "b", "a.1", "b.1"]

    # One at a time per loan: the next child of a starts when a.1 ends.
    w.finish(kids["a"][0])
    assert w.started[-1] == "a.2"
    w.finish(kids["a"][1], State.FAILED, 3)  # a child's failure is only its own
    assert w.started[-1] == "a.3"
    w.finish(kids["a"][2])
    assert other.state is State.QUEUED  # the loans went to children only
    w.sched.end_loan(a)
    w.finish(a)
    # a's slot is free for everyone, in queue order: b.2 came before "other".
    assert w.started[-1] == "b.2"
    b1, b2, b3 = kids["b"]
    w.finish(b1)
    assert w.started[-1] == "b.3"  # in b's loan, freed by b.1
    w.finish(b2)
    assert w.started[-1] == "other"
    w.finish(b3)
    w.sched.end_loan(b)
    assert w.sched.machines[0].used_slots == 2  # b and other, each in its own slot


def test_no_loan_while_the_parent_runs_and_after_it_resumes() -> None:
    w = World(capacity=1)
    p = w.submit("p")
    c1, c2 = child(w, p, "p.1"), child(w, p, "p.2")
    assert w.started == ["p"]
    w.sched.lend(p)
    assert w.started == ["p", "p.1"]
    w.sched.end_loan(p)  # p resumes: p.1 finishes in the loan, nothing else starts
    assert w.sched.lending(p) is False
    w.finish(c1)
    assert w.started == ["p", "p.1"] and c2.state is State.QUEUED
    assert w.sched.machines[0].used_slots == 1  # p.1's end freed nothing of p's
    w.sched.lend(p)
    assert w.started == ["p", "p.1", "p.2"]


def test_nested_lends_keep_the_loan_until_the_last_ends() -> None:
    w = World(capacity=1)
    p = w.submit("p")
    w.sched.lend(p)
    w.sched.lend(p)  # two threads of p blocked
    w.sched.end_loan(p)
    assert w.sched.lending(p)
    c = child(w, p, "p.1")
    assert w.started == ["p", "p.1"]
    w.sched.end_loan(p)
    assert not w.sched.lending(p)
    w.finish(c)
    assert w.sched.machines[0].used_slots == 1


def test_a_child_asking_more_than_its_parent_holds_waits_for_free_resources() -> None:
    w = World(capacity=5, host=FakeHost(cpus=5, available=8 * GIB))
    p = w.submit("p", cpus=2)
    q = w.submit("q", cpus=2)  # one CPU left free
    big = child(w, p, "p.1", cpus=3)
    small = child(w, p, "p.2", cpus=2, mem=GIB)  # p reserved no memory
    w.sched.lend(p)
    assert w.started == ["p", "q"]  # neither fits in p's share
    assert "needs 3 CPUs, 1 free" in w.why(big)
    small_fits = child(w, p, "p.3", cpus=2)
    assert w.started == ["p", "q", "p.3"]  # this one does
    w.finish(small_fits)
    w.finish(q)
    assert w.started[-1] == "p.1"  # in free resources, as usual
    assert small.state is State.QUEUED


def test_held_children_do_not_take_the_loan() -> None:
    w = World(capacity=1)
    p = w.submit("p")
    held = child(w, p, "p.1", group="batch")
    w.sched.set_paused(True, groups=["batch"])
    later = child(w, p, "p.2")
    w.sched.lend(p)
    assert w.started == ["p", "p.2"]  # p.1's group is paused: p.2 goes first
    w.finish(later)
    assert held.state is State.QUEUED
    w.sched.set_paused(False, groups=["batch"])
    assert w.started[-1] == "p.1"


def test_gpus_are_lent_too_and_a_parent_ending_first_leaves_the_child_its_share() -> None:
    w = World(capacity=2, gpus=("0", "1"))
    p = w.submit("p", gpus=2)
    other = w.submit("other", gpus=1)  # waits: p has both GPUs
    c = child(w, p, "p.1", gpus=1)
    w.sched.lend(p)
    assert w.started == ["p", "p.1"]
    assert c.gpu_ids == ("0",)  # the parent's first GPU
    w.sched.end_loan(p)
    w.finish(p)  # p ends before its child: p.1 keeps GPU 0 as its own
    assert w.started[-1] == "other"
    assert other.gpu_ids == ("1",)
    machine = w.sched.machines[0]
    assert machine.free_gpus == [] and machine.used_slots == 2
    w.finish(c)
    assert machine.free_gpus == ["0"] and machine.used_slots == 1
