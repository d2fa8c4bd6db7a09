"""Scheduler: admission order, conditions, slots, duplicate IDs, cancellation, draining."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from orcha.errors import DuplicateIdError
from orcha.interfaces import Petition
from orcha.protocol.outputs import OutputQueue
from orcha.service.job import Job
from orcha.service.scheduler import Scheduler
from orcha.states import State


def _always(_: Any) -> bool:
    return True


def _noop(cb: Any, petition: Any) -> None:
    pass


@dataclass(order=True)
class PrioPetition(Petition):
    """A petition whose priority is given at construction (set in __post_init__)."""

    prio: int = field(compare=False, default=0)

    def __post_init__(self) -> None:
        self.priority = self.prio


class Recorder:
    """The scheduler's ``start`` callback: records what it was asked to start, no threads."""

    def __init__(self) -> None:
        self.started: list[Job] = []

    def __call__(self, job: Job) -> None:
        assert job.state is State.RUNNING
        self.started.append(job)

    @property
    def ids(self) -> list[str]:
        return [job.id for job in self.started]


def make_job(
    pid: str | int,
    priority: int = 0,
    condition: Callable[[Any], bool] = _always,
    queue: Any = None,
) -> Job:
    petition = PrioPetition(
        id=pid,
        queue=queue if queue is not None else OutputQueue(),
        action=_noop,
        condition=condition,
        prio=priority,
    )
    return Job(petition, native=True, token_prefix="test")


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def sched(rec: Recorder) -> Scheduler:
    return Scheduler(rec)


class Gate:
    """A condition that holds only while ``open`` is True (and counts its calls)."""

    def __init__(self, open: bool = False) -> None:
        self.open = open
        self.calls = 0

    def __call__(self, _: Any) -> bool:
        self.calls += 1
        return self.open


def test_job_wraps_petition() -> None:
    job = make_job(7, priority=3)
    assert job.id == "7"
    assert job.priority == 3
    assert job.state is State.QUEUED
    assert job.token == f"test-{job.seq}"
    assert job.petition._orcha_job is job


def test_submit_with_true_condition_starts_at_once(sched: Scheduler, rec: Recorder) -> None:
    job = make_job("a")
    sched.submit(job)
    assert rec.started == [job]
    assert job.state is State.RUNNING
    assert job.started is not None
    assert sched.running_count == 1
    assert sched.queued_count == 0
    assert sched.get("a") is job
    assert sched.running() == [job]


def test_lower_priority_starts_first(sched: Scheduler, rec: Recorder) -> None:
    gate = Gate(open=False)
    jobs = [make_job(name, prio, gate) for name, prio in [("p5", 5), ("p1", 1), ("m3", -3)]]
    for job in jobs:
        sched.submit(job)
    assert rec.started == []
    assert sched.queued_count == 3
    assert [j.id for j in sched.jobs()] == ["m3", "p1", "p5"]
    gate.open = True
    sched.admit()
    assert rec.ids == ["m3", "p1", "p5"]


def test_equal_priorities_start_in_arrival_order(sched: Scheduler, rec: Recorder) -> None:
    gate = Gate(open=False)
    names = [f"j{i}" for i in range(10)]
    for name in names:
        sched.submit(make_job(name, 4, gate))
    gate.open = True
    sched.admit()
    assert rec.ids == names


def test_many_mixed_priorities_follow_priority_then_arrival(
    sched: Scheduler, rec: Recorder
) -> None:
    gate = Gate(open=False)
    rng = random.Random(1234)
    jobs = [make_job(f"n{i}", rng.choice([-2, 0, 0, 1, 5, 5, 9]), gate) for i in range(50)]
    for job in jobs:
        sched.submit(job)
    expected = sorted(jobs, key=lambda j: (j.priority, j.seq))
    # arrival order and seq order agree, and the sample really mixes priorities
    assert [j.seq for j in jobs] == sorted(j.seq for j in jobs)
    assert len({j.priority for j in jobs}) > 3
    assert sched.jobs() == expected
    gate.open = True
    sched.admit()
    assert rec.started == expected


def test_condition_false_blocks_head_and_those_behind(sched: Scheduler, rec: Recorder) -> None:
    head_gate = Gate(open=False)
    head = make_job("big", 0, head_gate)
    sched.submit(head)
    later = [make_job("small1", 1), make_job("small2", 0)]  # their conditions hold
    for job in later:
        sched.submit(job)
    assert rec.started == []  # strict order: nothing overtakes the blocked head
    assert all(j.state is State.QUEUED for j in [head, *later])
    assert head_gate.calls >= 1
    head_gate.open = True
    sched.admit()
    assert rec.ids == ["big", "small2", "small1"]


def test_admit_stops_at_first_blocked_job(sched: Scheduler, rec: Recorder) -> None:
    gate = Gate(open=False)
    sched.submit(make_job("first", 0))
    sched.submit(make_job("blocked", 1, gate))
    sched.submit(make_job("after", 2))
    assert rec.ids == ["first"]
    assert [j.id for j in sched.jobs()] == ["first", "blocked", "after"]


def test_max_running_condition_and_finished_frees_a_slot(sched: Scheduler, rec: Recorder) -> None:
    def room(_: Any) -> bool:
        return sched.running_count < 2

    jobs = [make_job(f"r{i}", 0, room) for i in range(5)]
    for job in jobs:
        sched.submit(job)
    assert rec.started == jobs[:2]
    assert sched.running_count == 2
    assert sched.queued_count == 3

    jobs[0].set_state(State.SUCCEEDED)
    sched.finished(jobs[0])
    assert rec.started == jobs[:3]  # the next one started at once
    assert sched.running_count == 2
    assert sched.get("r0") is None

    jobs[2].set_state(State.FAILED)
    sched.finished(jobs[2])
    jobs[1].set_state(State.CANCELLED)
    sched.finished(jobs[1])
    assert rec.started == jobs
    assert sched.running_count == 2
    assert sched.queued_count == 0


def test_duplicate_id_while_queued(sched: Scheduler, rec: Recorder) -> None:
    sched.submit(make_job("dup", 0, Gate(open=False)))
    with pytest.raises(DuplicateIdError) as info:
        sched.submit(make_job("dup"))
    assert "dup" in str(info.value)
    assert sched.queued_count == 1
    assert rec.started == []


def test_duplicate_id_while_running_then_accepted_after_finish(
    sched: Scheduler, rec: Recorder
) -> None:
    first = make_job("same")
    sched.submit(first)
    assert rec.started == [first]
    second = make_job("same")
    with pytest.raises(DuplicateIdError):
        sched.submit(second)
    assert second.state is State.QUEUED
    assert sched.get("same") is first

    first.set_state(State.SUCCEEDED)
    sched.finished(first)
    third = make_job("same")
    sched.submit(third)
    assert rec.started == [first, third]
    assert sched.get("same") is third


def test_int_and_str_ids_collide(sched: Scheduler) -> None:
    sched.submit(make_job(42, 0, Gate(open=False)))
    with pytest.raises(DuplicateIdError):
        sched.submit(make_job("42"))


def test_remove_queued_cancels_and_never_starts(sched: Scheduler, rec: Recorder) -> None:
    gate = Gate(open=False)
    a, b, c = make_job("a", 0, gate), make_job("b", 1, gate), make_job("c", 2, gate)
    for job in (a, b, c):
        sched.submit(job)
    assert sched.remove_queued(a) is True  # the head
    assert sched.remove_queued(c) is True  # one behind
    assert a.state is State.CANCELLED
    assert c.state is State.CANCELLED
    assert a.ended is not None
    assert sched.get("a") is None
    assert sched.queued_count == 1
    assert [j.id for j in sched.jobs()] == ["b"]
    gate.open = True
    sched.admit()
    assert rec.ids == ["b"]
    # removing twice is refused, and the ID is free again
    assert sched.remove_queued(a) is False
    again = make_job("a")
    sched.submit(again)
    assert rec.ids == ["b", "a"]


def test_remove_queued_head_lets_next_start(sched: Scheduler, rec: Recorder) -> None:
    head = make_job("head", 0, Gate(open=False))
    sched.submit(head)
    sched.submit(make_job("next", 1))
    assert rec.started == []
    assert sched.remove_queued(head) is True
    assert rec.ids == ["next"]


def test_remove_queued_refuses_running_job(sched: Scheduler, rec: Recorder) -> None:
    job = make_job("run")
    sched.submit(job)
    assert sched.remove_queued(job) is False
    assert job.state is State.RUNNING
    assert sched.running() == [job]
    assert sched.get("run") is job


def test_raising_condition_is_false_logged_once_and_recovers(
    sched: Scheduler, rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    state = {"raise": True}

    def flaky(_: Any) -> bool:
        if state["raise"]:
            raise RuntimeError("plugin bug")
        return True

    caplog.set_level(logging.ERROR, logger="orcha.service.scheduler")
    broken = make_job("broken", 0, flaky)
    sched.submit(broken)
    for _ in range(3):
        sched.admit()
    later = make_job("later", 1)
    sched.submit(later)  # admission does not crash; the broken head still blocks
    assert rec.started == []
    assert broken.state is State.QUEUED
    records = [r for r in caplog.records if r.name == "orcha.service.scheduler"]
    assert len(records) == 1
    assert "broken" in records[0].getMessage()
    assert records[0].exc_info is not None

    state["raise"] = False
    sched.submit(make_job("third", 2))
    assert rec.ids == ["broken", "later", "third"]
    assert len([r for r in caplog.records if r.name == "orcha.service.scheduler"]) == 1


def test_condition_calling_sys_exit_is_treated_as_false(
    sched: Scheduler, rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    # a plugin's sys.exit() in its predicate must not escape into the service's threads
    exits = {"on": True}

    def exiting(_: Any) -> bool:
        if exits["on"]:
            raise SystemExit(1)
        return True

    caplog.set_level(logging.ERROR, logger="orcha.service.scheduler")
    job = make_job("exiting", 0, exiting)
    sched.submit(job)
    sched.admit()
    assert job.state is State.QUEUED
    assert len([r for r in caplog.records if r.name == "orcha.service.scheduler"]) == 1
    exits["on"] = False
    sched.submit(make_job("next", 1))
    assert rec.ids == ["exiting", "next"]


def test_each_raising_job_is_logged_once(
    sched: Scheduler, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(_: Any) -> bool:
        raise ValueError("nope")

    caplog.set_level(logging.ERROR, logger="orcha.service.scheduler")
    first = make_job("x1", 0, boom)
    sched.submit(first)
    sched.admit()
    assert sched.remove_queued(first) is True
    sched.submit(make_job("x2", 0, boom))
    sched.admit()
    messages = [r.getMessage() for r in caplog.records if r.name == "orcha.service.scheduler"]
    assert len(messages) == 2
    assert "x1" in messages[0]
    assert "x2" in messages[1]


def test_drain_queued_stops_admission_and_returns_waiting_in_order(
    sched: Scheduler, rec: Recorder
) -> None:
    gate = Gate(open=False)
    running = make_job("running")
    sched.submit(running)
    waiting = [make_job("w3", 3, gate), make_job("w1", 1, gate), make_job("w1b", 1, gate)]
    for job in waiting:
        sched.submit(job)
    removed = make_job("gone", 0, gate)
    sched.submit(removed)
    sched.remove_queued(removed)

    drained = sched.drain_queued()
    assert [j.id for j in drained] == ["w1", "w1b", "w3"]
    assert sched.accepting is False
    assert sched.queued_count == 0
    assert sched.running() == [running]

    gate.open = True
    sched.admit()
    late = make_job("late")
    sched.submit(late)
    running.set_state(State.SUCCEEDED)
    sched.finished(running)
    assert rec.started == [running]
    assert late.state is State.QUEUED


def test_jobs_lists_running_first_then_queued(sched: Scheduler) -> None:
    gate = Gate(open=False)
    r = make_job("r", 9)
    sched.submit(r)
    q2 = make_job("q2", 2, gate)
    q1 = make_job("q1", 1, gate)
    sched.submit(q2)
    sched.submit(q1)
    assert sched.jobs() == [r, q1, q2]
