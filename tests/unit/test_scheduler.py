"""Scheduler: order, aging, CPU/memory/GPU fit, backfill, conditions, groups, pauses,
dependencies, cancellation, draining.

Pure logic: a fake clock and a fake machine drive the scheduler; nothing sleeps, no thread
or process is started. The ``start`` callback only records what it was asked to start.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from orcha.errors import DuplicateIdError, ExitCode, PetitionError
from orcha.interfaces import Petition
from orcha.protocol.outputs import OutputQueue
from orcha.protocol.schedule import Schedule
from orcha.service.host import Host
from orcha.service.job import Job
from orcha.service.machines import LocalMachine
from orcha.service.scheduler import Scheduler
from orcha.states import State
from tests.unit.fake_machines import FakeMachine

GIB = 1 << 30
T0 = 1_000_000.0  # the fake clock's start: an arbitrary, epoch-like moment
LOGGER = "orcha.service.scheduler"
MACHINES_LOGGER = "orcha.service.machines"


# -- fakes and helpers --------------------------------------------------------------------------
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


class FakeClock:
    """The scheduler's clock: returns ``now`` until told to advance."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeHost(Host):
    """The machine: configurable cores, memory and GPUs; memory reads may fail."""

    def __init__(
        self,
        cpus: int = 8,
        total: int = 64 * GIB,
        available: int = 64 * GIB,
        gpus: tuple[str, ...] = (),
    ) -> None:
        self.cpus = cpus
        self.total = total
        self.available = available
        self.gpus = list(gpus)
        self.memory_broken = False
        self.memory_reads = 0

    def cpu_count(self) -> int:
        return self.cpus

    def total_memory(self) -> int:
        return self.total

    def available_memory(self) -> int:
        self.memory_reads += 1
        if self.memory_broken:
            raise OSError("cannot read /proc/meminfo")
        return self.available

    def discover_gpus(self) -> list[str]:
        return list(self.gpus)


class Recorder:
    """The scheduler's ``start`` callback: records each admitted job and the fake time."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.started: list[Job] = []
        self.times: dict[str, float] = {}

    def __call__(self, job: Job) -> None:
        assert job.state is State.RUNNING  # moved to RUNNING before start() is called
        self.started.append(job)
        self.times[job.id] = self.clock()

    @property
    def ids(self) -> list[str]:
        return [job.id for job in self.started]


class Gate:
    """A condition that holds only while ``open`` is True (and counts its calls)."""

    def __init__(self, open: bool = False) -> None:
        self.open = open
        self.calls = 0

    def __call__(self, _: Any) -> bool:
        self.calls += 1
        return self.open


class World:
    """A scheduler on a fake clock and a fake host, with its callbacks recorded."""

    def __init__(
        self,
        capacity: int | None = 4,
        gpus: tuple[str, ...] = (),
        aging: float = 0.0,
        backfill_bound: float = 0.0,
        host: FakeHost | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.host = host if host is not None else FakeHost(gpus=gpus)
        self.rec = Recorder(self.clock)
        self.failed: list[Job] = []
        #: How petitions that are neither queued nor running ended (the service's records).
        self.records: dict[str, tuple[State, int | None]] = {}
        self.sched = Scheduler(
            self.rec,
            capacity=capacity,
            host=self.host,
            gpus=gpus,
            clock=self.clock,
            aging=aging,
            backfill_bound=backfill_bound,
            ended=self.records.get,
            failed=self.failed.append,
        )

    def job(
        self,
        pid: str | int,
        priority: int = 0,
        *,
        condition: Callable[[Any], bool] = _always,
        native: bool = True,
        **schedule: Any,
    ) -> Job:
        """A job created now (fake time); ``schedule`` are Schedule's keyword arguments."""
        petition = PrioPetition(
            id=pid, queue=OutputQueue(), action=_noop, condition=condition, prio=priority
        )
        return Job(
            petition,
            native=native,
            token_prefix="t",
            schedule=Schedule(**schedule),
            created=self.clock(),
        )

    def submit(self, pid: str | int, priority: int = 0, **kwargs: Any) -> Job:
        job = self.job(pid, priority, **kwargs)
        self.sched.submit(job)
        return job

    def finish(self, job: Job, state: State = State.SUCCEEDED, code: int = 0) -> None:
        job.code = code
        job.set_state(state)
        self.sched.finished(job)

    def why(self, job: Job) -> str:
        return self.sched.explain()[job.seq]

    @property
    def started(self) -> list[str]:
        return self.rec.ids


def _records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER]


# -- basics -----------------------------------------------------------------------------------
def test_job_wraps_petition() -> None:
    w = World()
    job = w.job(7, priority=3, cpus=2)
    assert job.id == "7"
    assert job.priority == 3
    assert job.state is State.QUEUED
    assert job.token == f"t-{job.seq}"
    assert job.created == T0
    assert job.schedule == Schedule(cpus=2)
    assert job.petition.record is job


def test_submit_starts_a_fitting_job_at_once() -> None:
    w = World(capacity=4)
    job = w.submit("a", cpus=2)
    assert w.rec.started == [job]
    assert job.state is State.RUNNING
    assert w.sched.running_count == 1
    assert w.sched.queued_count == 0
    assert w.sched.used_cpus == 2
    assert w.sched.get("a") is job
    assert w.sched.running() == [job]


def test_capacity_defaults_to_the_hosts_cpu_count() -> None:
    w = World(capacity=None, host=FakeHost(cpus=3))
    assert w.sched.capacity == 3
    jobs = [w.submit(f"j{i}") for i in range(4)]
    assert w.started == ["j0", "j1", "j2"]
    assert jobs[3].state is State.QUEUED


def test_capacity_may_be_a_callable_read_at_each_admission() -> None:
    w = World()
    slots = {"n": 1}
    w.sched = Scheduler(w.rec, capacity=lambda: slots["n"], host=w.host, clock=w.clock)
    w.submit("a")
    b = w.submit("b")
    assert w.started == ["a"]
    slots["n"] = 2
    w.sched.admit()
    assert w.started == ["a", "b"]
    assert b.state is State.RUNNING


# -- order ------------------------------------------------------------------------------------
def test_lower_priority_starts_first() -> None:
    w = World(capacity=8)
    w.sched.set_paused(True, everything=True)  # a gate: everything queues first
    for name, prio in [("p5", 5), ("p1", 1), ("m3", -3)]:
        w.submit(name, prio)
    assert w.started == []
    assert [j.id for j in w.sched.waiting()] == ["m3", "p1", "p5"]
    w.sched.set_paused(False, everything=True)
    assert w.started == ["m3", "p1", "p5"]


def test_lower_priority_takes_the_next_free_slot() -> None:
    w = World(capacity=1)
    running = w.submit("running", 9)
    w.submit("late", 4)
    w.submit("urgent", 1)
    w.finish(running)
    assert w.started == ["running", "urgent"]


def test_equal_priorities_start_in_arrival_order() -> None:
    w = World(capacity=10)
    w.sched.set_paused(True, everything=True)
    names = [f"j{i}" for i in range(10)]
    for name in names:
        w.submit(name, 4)
    w.sched.set_paused(False, everything=True)
    assert w.started == names


def test_many_mixed_priorities_follow_priority_then_arrival() -> None:
    w = World(capacity=50)
    w.sched.set_paused(True, everything=True)
    rng = random.Random(1234)
    jobs = [w.submit(f"n{i}", rng.choice([-2, 0, 0, 1, 5, 5, 9])) for i in range(50)]
    assert len({j.priority for j in jobs}) > 3  # the sample really mixes priorities
    expected = sorted(jobs, key=lambda j: (j.priority, jobs.index(j)))
    assert w.sched.waiting() == expected
    w.sched.set_paused(False, everything=True)
    assert w.rec.started == expected


# -- aging --------------------------------------------------------------------------------------
def _aging_race(aging: float, apart: float) -> list[str]:
    """A priority-5 petition, then a priority-0 one ``apart`` seconds later, both waiting
    behind a running one on one slot: which order do they start in?"""
    w = World(capacity=1, aging=aging)
    running = w.submit("running")
    w.submit("old-low", 5)
    w.clock.advance(apart)
    w.submit("new-high", 0)
    w.finish(running)
    w.finish(w.rec.started[-1])
    return w.started[1:]


def test_aging_puts_old_low_priority_ahead_of_much_newer_high_priority() -> None:
    # 5 steps of 60 s: a priority-5 petition submitted 301 s earlier competes as 0 - 1/60
    assert _aging_race(aging=60, apart=301) == ["old-low", "new-high"]


def test_aging_keeps_high_priority_ahead_when_submitted_soon_enough_after() -> None:
    assert _aging_race(aging=60, apart=299) == ["new-high", "old-low"]


def test_without_aging_priority_is_strict_however_long_apart() -> None:
    assert _aging_race(aging=0, apart=1e6) == ["new-high", "old-low"]


def test_aging_keeps_arrival_order_among_equal_priorities() -> None:
    w = World(capacity=1, aging=60)
    running = w.submit("running")
    for i in range(5):
        w.clock.advance(7)
        w.submit(f"e{i}", 3)
    for _ in range(5):
        w.finish(w.rec.started[-1])
    assert w.started == ["running", "e0", "e1", "e2", "e3", "e4"]
    assert running.state is State.SUCCEEDED


def test_effective_priority_improves_as_the_clock_advances() -> None:
    w = World(capacity=1, aging=60)
    running = w.submit("running", 5)
    waiting = w.submit("waiting", 5)
    assert w.sched.effective_priority(waiting) == 5.0
    w.clock.advance(60)
    assert w.sched.effective_priority(waiting) == pytest.approx(4.0)
    w.clock.advance(240)
    assert w.sched.effective_priority(waiting) == pytest.approx(0.0)
    w.clock.advance(600)
    assert w.sched.effective_priority(waiting) == pytest.approx(-10.0)
    # only waiting petitions age: a running one competes with nothing
    assert w.sched.effective_priority(running) == 5.0


def test_effective_priority_is_the_priority_without_aging() -> None:
    w = World(capacity=1, aging=0)
    w.submit("running")
    waiting = w.submit("waiting", 5)
    w.clock.advance(10_000)
    assert w.sched.effective_priority(waiting) == 5.0


def _stream_of_urgent(aging: float, rounds: int) -> tuple[World, Job, int | None]:
    """One slot; a priority-5 petition waits while, every 10 s, a priority-0 one arrives
    and the running one ends. Returns the round in which the priority-5 one started."""
    w = World(capacity=1, aging=aging)
    w.submit("urgent-0")
    low = w.submit("low", 5)
    for i in range(1, rounds + 1):
        w.clock.advance(10)
        w.submit(f"urgent-{i}")
        w.finish(w.rec.started[-1])
        if low.state is State.RUNNING:
            return w, low, i
    return w, low, None


def test_aging_keeps_a_stream_of_higher_priority_from_starving_a_low_one() -> None:
    w, low, started_in = _stream_of_urgent(aging=60, rounds=1000)
    # priority 5 with 60 s per step: it overtakes newcomers after about 5 x 60 s
    assert started_in is not None
    assert 29 <= started_in <= 31
    assert w.rec.times["low"] - low.created == pytest.approx(10 * started_in)


def test_without_aging_a_stream_of_higher_priority_starves_a_low_one() -> None:
    # why aging exists: with strict priority the low one never gets the slot
    w, low, started_in = _stream_of_urgent(aging=0, rounds=1000)
    assert started_in is None
    assert low.state is State.QUEUED
    assert len(w.rec.started) == 1001
    assert "low" not in w.started


# -- CPU slots ----------------------------------------------------------------------------------
def test_jobs_start_while_their_cpus_fit() -> None:
    w = World(capacity=4)
    w.submit("a", cpus=2)
    w.submit("b", cpus=2)
    c = w.submit("c", cpus=1)
    assert w.started == ["a", "b"]
    assert w.sched.used_cpus == 4
    assert c.state is State.QUEUED
    assert w.why(c) == "waiting for a free slot (4/4 CPUs in use)"


def test_explain_a_job_needing_more_cpus_than_free() -> None:
    w = World(capacity=4)
    w.submit("a", cpus=2)
    w.submit("b", cpus=1)
    c = w.submit("c", cpus=3)
    assert w.started == ["a", "b"]
    assert w.why(c) == "needs 3 CPUs, 1 free"


def test_finishing_a_job_frees_its_cpus() -> None:
    w = World(capacity=4)
    a = w.submit("a", cpus=2)
    w.submit("b", cpus=1)
    c = w.submit("c", cpus=3)
    w.finish(a)
    assert w.started == ["a", "b", "c"]
    assert c.state is State.RUNNING
    assert w.sched.used_cpus == 4
    assert w.sched.running_count == 2


def test_every_end_state_frees_the_slot() -> None:
    w = World(capacity=1)
    jobs = [w.submit(f"r{i}") for i in range(4)]
    for job, end in zip(jobs[:3], [State.SUCCEEDED, State.FAILED, State.CANCELLED], strict=True):
        w.finish(job, end, 0 if end is State.SUCCEEDED else 1)
    assert w.rec.started == jobs
    assert w.sched.used_cpus == 1
    assert w.sched.get("r0") is None


# -- feasibility ----------------------------------------------------------------------------------
def test_check_feasible_refuses_more_cpus_than_capacity() -> None:
    w = World(capacity=4)
    with pytest.raises(PetitionError) as info:
        w.sched.check_feasible(Schedule(cpus=5))
    assert info.value.exit_code is ExitCode.REFUSED
    assert "asks for 5 CPUs but this service has 4" in str(info.value)


def test_check_feasible_refuses_more_gpus_than_the_inventory() -> None:
    w = World(gpus=("0", "1"))
    with pytest.raises(PetitionError) as info:
        w.sched.check_feasible(Schedule(gpus=3))
    assert info.value.exit_code is ExitCode.REFUSED
    assert "asks for 3 GPU(s) but this service has 2 (0, 1;" in str(info.value)


def test_check_feasible_refuses_gpus_when_there_are_none() -> None:
    w = World()
    with pytest.raises(PetitionError) as info:
        w.sched.check_feasible(Schedule(gpus=1))
    assert "has 0 (none;" in str(info.value)


def test_check_feasible_refuses_more_memory_than_the_host_has() -> None:
    w = World(host=FakeHost(total=16 * GIB))
    with pytest.raises(PetitionError) as info:
        w.sched.check_feasible(Schedule(mem=17 * GIB))
    assert info.value.exit_code is ExitCode.REFUSED
    assert "asks for 17.0 GiB of memory but this host has 16.0 GiB" in str(info.value)


def test_check_feasible_accepts_requests_that_fit_exactly() -> None:
    w = World(capacity=4, gpus=("0", "1"), host=FakeHost(total=16 * GIB))
    w.sched.check_feasible(Schedule(cpus=4, gpus=2, mem=16 * GIB))
    w.sched.check_feasible(Schedule())


# -- memory -----------------------------------------------------------------------------------
def test_memory_is_reserved_and_a_job_that_does_not_fit_waits() -> None:
    w = World(host=FakeHost(available=8 * GIB))
    first = w.submit("first", mem=6 * GIB)
    second = w.submit("second", mem=4 * GIB)
    assert w.rec.started == [first]
    assert second.state is State.QUEUED
    # what running petitions reserved is subtracted from what the host reports available
    assert w.why(second) == "needs 4.0 GiB, 2.0 GiB free"


def test_needs_recheck_only_while_a_job_waits_for_memory() -> None:
    w = World(host=FakeHost(available=8 * GIB))
    first = w.submit("first", mem=6 * GIB)
    assert w.sched.needs_recheck is False
    w.submit("second", mem=4 * GIB)
    assert w.sched.needs_recheck is True
    w.finish(first)
    assert w.started == ["first", "second"]
    assert w.sched.needs_recheck is False


def test_memory_freed_outside_orcha_is_noticed_on_admit() -> None:
    w = World(host=FakeHost(available=8 * GIB))
    w.submit("first", mem=6 * GIB)
    second = w.submit("second", mem=4 * GIB)
    w.host.available = 12 * GIB
    assert second.state is State.QUEUED  # nothing told the scheduler yet
    w.sched.admit()
    assert second.state is State.RUNNING
    assert w.sched.needs_recheck is False


def test_jobs_without_memory_requests_never_read_memory() -> None:
    w = World()
    w.submit("a")
    w.submit("b", cpus=2)
    assert w.host.memory_reads == 0


def test_unreadable_memory_makes_memory_jobs_wait_without_crashing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger=MACHINES_LOGGER)
    w = World(host=FakeHost(available=8 * GIB))
    w.host.memory_broken = True
    plain = w.submit("plain")
    hungry = w.submit("hungry", mem=1 * GIB)
    w.sched.admit()
    assert w.rec.started == [plain]
    assert hungry.state is State.QUEUED
    assert w.sched.needs_recheck is True
    assert w.why(hungry) == "needs 1.0 GiB, 0.0 GiB free"
    logged = [r for r in caplog.records if r.name == MACHINES_LOGGER]
    assert any("available memory" in r.getMessage() for r in logged)
    w.host.memory_broken = False
    w.sched.admit()
    assert hungry.state is State.RUNNING


# -- GPUs ---------------------------------------------------------------------------------------
def test_gpu_jobs_get_distinct_lowest_free_indices() -> None:
    w = World(gpus=("0", "1", "2"))
    a = w.submit("a", gpus=1)
    b = w.submit("b", gpus=2)
    none = w.submit("none")
    assert a.gpu_ids == ("0",)
    assert b.gpu_ids == ("1", "2")
    assert none.gpu_ids == ()


def test_freed_gpus_are_reused_lowest_first() -> None:
    w = World(gpus=("0", "1", "2"))
    a = w.submit("a", gpus=2)
    b = w.submit("b", gpus=1)
    assert (a.gpu_ids, b.gpu_ids) == (("0", "1"), ("2",))
    w.finish(a)
    c = w.submit("c", gpus=1)
    d = w.submit("d", gpus=1)
    assert c.gpu_ids == ("0",)
    assert d.gpu_ids == ("1",)
    w.finish(b)
    w.finish(c)
    e = w.submit("e", gpus=2)
    assert e.gpu_ids == ("0", "2")


def test_gpu_job_waits_when_not_enough_gpus_are_free() -> None:
    w = World(gpus=("0", "1", "2"))
    a = w.submit("a", gpus=2)
    b = w.submit("b", gpus=2)
    assert w.rec.started == [a]
    assert w.why(b) == "needs 2 GPU(s), 1 free"
    w.finish(a)
    assert b.state is State.RUNNING
    assert b.gpu_ids == ("0", "1")


# -- backfill ------------------------------------------------------------------------------------
def _blocked_big(backfill_bound: float = 300) -> tuple[World, Job, Job]:
    """Capacity 4, one petition running (1 CPU), and ``big`` (4 CPUs) blocked behind it."""
    w = World(capacity=4, backfill_bound=backfill_bound)
    small = w.submit("small")
    big = w.submit("big", cpus=4)
    assert big.state is State.QUEUED
    assert big.blocked_since == T0
    return w, small, big


def test_blocked_job_holds_back_later_jobs_without_a_timeout() -> None:
    w, _, big = _blocked_big()
    later = w.submit("later")
    assert later.state is State.QUEUED
    assert w.started == ["small"]
    assert w.why(big) == "needs 4 CPUs, 3 free"
    assert w.why(later).startswith("behind big, which waits for resources")


def test_later_job_with_a_short_timeout_passes_a_blocked_job() -> None:
    w, _, _ = _blocked_big()
    quick = w.submit("quick", timeout=100)
    assert quick.state is State.RUNNING
    assert w.started == ["small", "quick"]


def test_later_job_with_a_timeout_beyond_the_bound_does_not_pass() -> None:
    w, _, big = _blocked_big()
    slow = w.submit("slow", timeout=400)
    assert slow.state is State.QUEUED
    assert w.why(slow).startswith(f"behind {big.id}")


def test_a_timeout_ending_exactly_at_the_bound_passes() -> None:
    w, _, big = _blocked_big()
    w.clock.advance(200)  # now + 100 == blocked_since + 300
    quick = w.submit("quick", timeout=100)
    assert quick.state is State.RUNNING
    assert big.blocked_since == T0


def test_short_timeout_no_longer_passes_once_the_window_closes() -> None:
    w, _, _ = _blocked_big()
    w.clock.advance(201)  # now + 100 > blocked_since + 300
    quick = w.submit("quick", timeout=100)
    assert quick.state is State.QUEUED
    assert w.why(quick).startswith("behind big")


def test_backfill_bound_zero_lets_nothing_pass() -> None:
    w, _, _ = _blocked_big(backfill_bound=0)
    tiny = w.submit("tiny", timeout=0.001)
    assert tiny.state is State.QUEUED
    assert w.started == ["small"]


def test_blocked_job_starts_once_what_it_waits_for_ends() -> None:
    w, small, big = _blocked_big()
    later = w.submit("later")
    w.finish(small)
    assert big.state is State.RUNNING
    assert w.started == ["small", "big"]
    assert later.state is State.QUEUED
    assert w.why(later) == "waiting for a free slot (4/4 CPUs in use)"


def test_second_blocked_job_counts_the_ones_ahead_of_it() -> None:
    w, _, big = _blocked_big()
    w.submit("also-big", cpus=4)
    also = w.sched.get("also-big")
    assert also is not None
    assert w.why(big) == "needs 4 CPUs, 3 free"
    assert w.why(also) == "needs 4 CPUs, 3 free; 1 ahead of it"


def test_held_job_does_not_block_later_ones() -> None:
    # a paused petition is skipped, not blocked: no backfill rule applies behind it
    w = World(capacity=4, backfill_bound=0)
    held = w.job("held", cpus=4)
    w.sched.set_paused(True, jobs=[held])
    w.sched.submit(held)
    later = w.submit("later")
    assert later.state is State.RUNNING
    assert held.blocked_since is None


def test_a_stream_of_short_jobs_cannot_delay_a_blocked_one_beyond_the_bound() -> None:
    w, long_one, big = _blocked_big(backfill_bound=300)
    smalls: list[Job] = []
    for i in range(100):
        w.clock.advance(20)
        if w.clock.now == T0 + 40:
            w.finish(long_one)
        # the short ones end when their timeout stops them, at the latest
        for job in smalls:
            if job.state is State.RUNNING and w.rec.times[job.id] + 60 <= w.clock.now:
                w.finish(job)
        smalls += [w.submit(f"s{i}a", timeout=60), w.submit(f"s{i}b", timeout=60)]
        if big.state is State.RUNNING:
            break
    started_small = [j for j in smalls if j.id in w.rec.times and j.id != "big"]
    assert len(started_small) >= 6  # backfill did let short petitions through
    assert w.rec.times["big"] <= T0 + 300
    # every small one that passed started within the window and has ended
    passed = [j for j in started_small if w.rec.times[j.id] < w.rec.times["big"]]
    assert passed
    assert all(w.rec.times[j.id] + 60 <= T0 + 300 for j in passed)
    assert all(j.state is State.SUCCEEDED for j in passed)


def test_a_job_with_retries_passes_only_if_all_its_attempts_end_within_the_bound() -> None:
    w, _, _ = _blocked_big(backfill_bound=300)
    # up to 6 attempts of 100 s each: it may hold its slot 600 s > 300 s
    retrying = w.submit("retrying", timeout=100, retries=5)
    assert retrying.state is State.QUEUED


# -- passing a blocked job that waits for what one does not take ------------------------------
def _waiting_for_a_gpu(capacity: int = 4) -> tuple[World, Job, Job]:
    """One GPU held by ``g1``; ``g5`` (1 CPU, 1 GPU) blocked for it; backfill bound 0."""
    w = World(capacity=capacity, gpus=("0",))
    g1 = w.submit("g1", gpus=1)
    g5 = w.submit("g5", gpus=1)
    assert w.why(g5) == "needs 1 GPU(s), 0 free"
    return w, g1, g5


def test_a_cpu_only_job_without_a_timeout_passes_one_that_waits_for_gpus() -> None:
    w, g1, g5 = _waiting_for_a_gpu()
    cpu = w.submit("cpu")
    assert cpu.state is State.RUNNING
    # it left g5 its CPU slot: g5 starts the moment the GPU is free, as without it
    w.finish(g1)
    assert g5.state is State.RUNNING
    assert w.started == ["g1", "cpu", "g5"]


def test_passers_never_take_the_blocked_jobs_own_slot() -> None:
    w, g1, g5 = _waiting_for_a_gpu(capacity=4)
    cpus = [w.submit(f"c{i}") for i in range(4)]
    # 3 slots were free: 2 passers, 1 slot kept for g5
    assert [c.state for c in cpus] == [State.RUNNING] * 2 + [State.QUEUED] * 2
    assert w.why(cpus[2]).startswith("behind g5, which waits for resources (only a petition")
    w.finish(g1)
    assert g5.state is State.RUNNING  # at once: nothing it needs was taken


def test_a_job_that_takes_what_the_blocked_one_waits_for_does_not_pass() -> None:
    w, _, _ = _waiting_for_a_gpu()
    other = w.submit("other-gpu", gpus=1)
    assert other.state is State.QUEUED
    assert w.why(other) == "needs 1 GPU(s), 0 free; 1 ahead of it"
    two = w.submit("two-cpus", cpus=3)  # 3 free, but g5 needs one of them
    assert two.state is State.QUEUED
    assert w.why(two).startswith("behind g5")


def test_on_two_slots_a_cpu_job_waits_rather_than_take_the_gpu_jobs_slot() -> None:
    w, g1, _ = _waiting_for_a_gpu(capacity=2)
    cpu = w.submit("cpu")
    assert cpu.state is State.QUEUED
    assert w.why(cpu).startswith("behind g5, which waits for resources")
    w.finish(g1)
    assert w.started == ["g1", "g5", "cpu"]  # g5 first, in its slot


def test_passing_a_job_blocked_for_memory_with_a_job_that_needs_none() -> None:
    w = World(capacity=4, host=FakeHost(total=8 * GIB, available=1 * GIB))
    big = w.submit("big", mem=4 << 30)
    takes_mem = w.submit("takes-mem", mem=1 << 20)
    no_mem = w.submit("no-mem")
    assert big.state is State.QUEUED and takes_mem.state is State.QUEUED
    assert no_mem.state is State.RUNNING


def test_a_passer_leaves_the_blocked_jobs_group_a_slot() -> None:
    w = World(capacity=4, gpus=("0",))
    w.sched.set_group_limit("train", 2)
    w.submit("g1", gpus=1, group="train")
    w.submit("g5", gpus=1, group="train")  # group 1/2: one slot left, for g5
    same = w.submit("same-group", group="train")
    other = w.submit("other-group")
    assert same.state is State.QUEUED
    assert other.state is State.RUNNING


def test_passers_leave_room_for_every_blocked_job_ahead_of_them() -> None:
    w = World(capacity=6, gpus=("0",))
    w.submit("g1", gpus=1)
    w.submit("g5", gpus=1)
    w.submit("wide", gpus=1, cpus=3)  # also blocked on the GPU, needs 3 CPUs
    small = [w.submit(f"s{i}") for i in range(3)]
    # 5 slots free; each passer must leave 3 (wide's need): 2 pass
    assert [j.state for j in small] == [State.RUNNING] * 2 + [State.QUEUED]


def test_an_original_api_job_blocks_as_its_look_ahead_did() -> None:
    w = World(capacity=4)
    w.submit("legacy", condition=Gate(open=False), native=False)
    behind = w.submit("behind")
    assert behind.state is State.QUEUED


def test_the_walk_looks_a_bounded_number_of_jobs_behind_a_blocked_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orcha.service import backfill, explain

    monkeypatch.setattr(backfill, "BACKFILL_LOOKAHEAD", 3)
    monkeypatch.setattr(explain, "BACKFILL_LOOKAHEAD", 3)
    w, _, _ = _waiting_for_a_gpu(capacity=8)
    gpu_jobs = [w.submit(f"g{i}x", gpus=1) for i in range(3)]  # blocked: looked at
    cpu = w.submit("cpu")  # the fourth behind g5: not looked at
    assert cpu.state is State.QUEUED
    assert w.why(cpu).startswith("behind g5")
    w.sched.admit()
    assert cpu.state is State.QUEUED
    assert all(j.state is State.QUEUED for j in gpu_jobs)


# -- original-API conditions (native=False) ----------------------------------------------------
def test_original_api_false_condition_blocks_those_behind() -> None:
    w = World(capacity=4)
    gate = Gate(open=False)
    legacy = w.submit("legacy", condition=gate, native=False)
    behind = w.submit("behind")
    assert w.started == []
    assert gate.calls >= 1
    assert w.why(legacy) == "waiting for its condition to hold"
    assert w.why(behind).startswith("behind legacy")
    assert w.sched.needs_recheck is True


def test_original_api_true_condition_starts_in_order() -> None:
    w = World(capacity=4)
    gate = Gate(open=False)
    w.submit("legacy", condition=gate, native=False)
    w.submit("behind")
    gate.open = True
    w.sched.admit()
    assert w.started == ["legacy", "behind"]


def test_original_api_condition_is_asked_only_with_a_free_slot() -> None:
    w = World(capacity=1)
    running = w.submit("running")
    legacy = w.submit("legacy", native=False)  # its condition holds, but no slot is free
    assert legacy.state is State.QUEUED
    w.finish(running)
    assert legacy.state is State.RUNNING
    assert w.sched.used_cpus == 1


def test_original_api_raising_condition_is_false_logged_once_and_service_keeps_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)
    state = {"raise": True}

    def flaky(_: Any) -> bool:
        if state["raise"]:
            raise RuntimeError("plugin bug")
        return True

    w = World(capacity=4)
    broken = w.submit("broken", condition=flaky, native=False)
    for _ in range(3):
        w.sched.admit()
    w.sched.explain()
    assert broken.state is State.QUEUED
    records = _records(caplog)
    assert len(records) == 1
    assert "broken" in records[0].getMessage()
    assert records[0].exc_info is not None
    # the service keeps working: a petition ahead of it in order still starts
    w.submit("urgent", -1)
    assert w.started == ["urgent"]
    state["raise"] = False
    w.sched.admit()
    assert w.started == ["urgent", "broken"]
    assert len(_records(caplog)) == 1


def test_condition_calling_sys_exit_counts_as_false(caplog: pytest.LogCaptureFixture) -> None:
    # a plugin's sys.exit() in its condition must not escape into the service's threads
    caplog.set_level(logging.ERROR, logger=LOGGER)
    exits = {"on": True}

    def exiting(_: Any) -> bool:
        if exits["on"]:
            raise SystemExit(1)
        return True

    w = World(capacity=4)
    job = w.submit("exiting", condition=exiting, native=False)
    w.sched.admit()
    assert job.state is State.QUEUED
    assert len(_records(caplog)) == 1
    exits["on"] = False
    w.sched.admit()
    assert job.state is State.RUNNING


# -- plugin predicates of native petitions ------------------------------------------------------
def test_native_false_predicate_skips_only_that_job() -> None:
    w = World(capacity=4)
    gate = Gate(open=False)
    picky = w.submit("picky", condition=gate)
    behind = w.submit("behind")
    assert picky.state is State.QUEUED
    assert behind.state is State.RUNNING
    assert picky.blocked_since is None  # skipped, not blocked
    assert w.sched.needs_recheck is True
    assert w.why(picky) == "waiting for a plugin's predicate to hold"


def test_native_predicate_that_becomes_true_starts_on_admit() -> None:
    w = World(capacity=4)
    gate = Gate(open=False)
    picky = w.submit("picky", condition=gate)
    gate.open = True
    w.sched.admit()
    assert picky.state is State.RUNNING
    assert w.sched.needs_recheck is False


def test_native_predicate_is_asked_only_once_resources_fit() -> None:
    w = World(capacity=1)
    w.submit("running")
    gate = Gate(open=True)
    w.submit("picky", condition=gate)
    w.sched.admit()
    assert gate.calls == 0


def test_native_raising_predicate_is_logged_once_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)

    def boom(_: Any) -> bool:
        raise ValueError("nope")

    w = World(capacity=4)
    broken = w.submit("broken", condition=boom)
    behind = w.submit("behind")
    for _ in range(3):
        w.sched.admit()
    assert broken.state is State.QUEUED
    assert behind.state is State.RUNNING
    assert w.why(broken) == "waiting for a plugin's predicate to hold"
    records = _records(caplog)
    assert len(records) == 1
    assert "broken" in records[0].getMessage()


def test_each_raising_job_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)

    def boom(_: Any) -> bool:
        raise ValueError("nope")

    w = World(capacity=4)
    first = w.submit("x1", condition=boom)
    w.sched.admit()
    assert w.sched.remove_queued(first) is True
    w.submit("x2", condition=boom)
    w.sched.admit()
    messages = [r.getMessage() for r in _records(caplog)]
    assert len(messages) == 2
    assert "x1" in messages[0]
    assert "x2" in messages[1]


# -- groups ---------------------------------------------------------------------------------------
def test_group_limit_holds_a_second_job_of_a_full_group() -> None:
    w = World(capacity=4)
    w.sched.set_group_limit("build", 1)
    b1 = w.submit("b1", group="build")
    b2 = w.submit("b2", group="build")
    assert w.rec.started == [b1]
    assert w.why(b2) == "group build full (1/1)"
    w.finish(b1)
    assert b2.state is State.RUNNING


def test_a_full_group_does_not_hold_other_groups() -> None:
    w = World(capacity=4, backfill_bound=0)
    w.sched.set_group_limit("build", 1)
    w.submit("b1", group="build")
    b2 = w.submit("b2", group="build")
    w.submit("other", group="test")
    w.submit("plain")
    assert w.started == ["b1", "other", "plain"]
    assert b2.blocked_since is None  # held, not blocked


def test_removing_a_group_limit_admits_at_once() -> None:
    w = World(capacity=4)
    w.sched.set_group_limit("build", 1)
    w.submit("b1", group="build")
    b2 = w.submit("b2", group="build")
    w.sched.set_group_limit("build", None)
    assert b2.state is State.RUNNING
    assert w.sched.group_limits() == {}


def test_raising_a_group_limit_admits_at_once() -> None:
    w = World(capacity=4)
    w.sched.set_group_limit("build", 1)
    w.submit("b1", group="build")
    b2 = w.submit("b2", group="build")
    w.sched.set_group_limit("build", 2)
    assert b2.state is State.RUNNING
    assert w.sched.group_limits() == {"build": 2}


def test_groups_lists_limits_counts_and_pauses() -> None:
    w = World(capacity=4)
    w.sched.set_group_limit("build", 1)
    w.sched.set_paused(True, groups=["docs"])
    w.submit("b1", group="build")
    w.submit("b2", group="build")
    w.submit("plain")
    w.submit("d1", group="docs")
    assert w.sched.groups() == [
        {"name": "build", "max_running": 1, "running": 1, "queued": 1, "paused": False},
        {"name": "default", "max_running": None, "running": 1, "queued": 0, "paused": False},
        {"name": "docs", "max_running": None, "running": 0, "queued": 1, "paused": True},
    ]


def test_groups_always_lists_the_default_group() -> None:
    w = World()
    assert w.sched.groups() == [
        {"name": "default", "max_running": None, "running": 0, "queued": 0, "paused": False}
    ]


# -- pause and resume -----------------------------------------------------------------------------
def test_pausing_one_job_holds_only_it() -> None:
    w = World(capacity=1)
    running = w.submit("running")
    j = w.submit("j")
    k = w.submit("k")
    w.sched.set_paused(True, jobs=[j])
    assert w.why(j) == "paused ('orcha resume j')"
    w.finish(running)
    assert w.started == ["running", "k"]
    w.finish(k)
    assert j.state is State.QUEUED
    assert w.sched.running_count == 0


def test_resuming_a_job_admits_it_at_once() -> None:
    w = World(capacity=4)
    j = w.job("j")
    w.sched.set_paused(True, jobs=[j])
    w.sched.submit(j)
    assert j.state is State.QUEUED
    w.sched.set_paused(False, jobs=[j])
    assert j.state is State.RUNNING


def test_pausing_a_group_holds_its_jobs_only() -> None:
    w = World(capacity=4)
    w.sched.set_paused(True, groups=["g"])
    g1 = w.submit("g1", group="g")
    other = w.submit("other")
    assert w.rec.started == [other]
    assert w.why(g1) == "group g is paused ('orcha resume --group g')"
    assert w.sched.paused_groups() == {"g"}
    w.sched.set_paused(False, groups=["g"])
    assert g1.state is State.RUNNING
    assert w.sched.paused_groups() == set()


def test_pausing_everything_holds_all() -> None:
    w = World(capacity=4)
    w.sched.set_paused(True, everything=True)
    jobs = [w.submit("a"), w.submit("b", group="g")]
    assert w.started == []
    explained = w.sched.explain()
    paused = "all petitions are paused ('orcha resume --all')"
    assert [explained[j.seq] for j in jobs] == [paused, paused]
    assert all(g["paused"] for g in w.sched.groups())
    assert w.sched.needs_recheck is False


def test_resuming_everything_admits_at_once_and_clears_other_pauses() -> None:
    w = World(capacity=4)
    j = w.job("j")
    w.sched.set_paused(True, jobs=[j], groups=["g"], everything=True)
    w.sched.submit(j)
    g1 = w.submit("g1", group="g")
    w.sched.set_paused(False, everything=True)
    assert w.started == ["j", "g1"]
    assert g1.state is State.RUNNING
    assert w.sched.paused_groups() == set()
    assert w.sched.paused_all is False


# -- dependencies ---------------------------------------------------------------------------------
def test_after_waits_while_the_dependency_is_queued() -> None:
    w = World(capacity=1)
    w.submit("running")
    a = w.submit("a")
    dep = w.submit("dep", after=("a",))
    assert a.state is State.QUEUED
    assert w.why(dep) == "after a (queued)"


def test_after_waits_while_the_dependency_runs() -> None:
    w = World(capacity=4)
    w.submit("a")
    dep = w.submit("dep", after=("a",))
    assert dep.state is State.QUEUED
    assert w.why(dep) == "after a (running)"
    assert dep.blocked_since is None  # held, not blocked: it holds nothing back
    assert w.submit("free").state is State.RUNNING


def test_after_starts_once_the_dependency_succeeded() -> None:
    w = World(capacity=4)
    a = w.submit("a")
    dep = w.submit("dep", after=("a",))
    w.finish(a)
    assert dep.state is State.RUNNING
    assert w.failed == []


def test_after_a_failed_dependency_fails_the_dependent() -> None:
    w = World(capacity=4)
    a = w.submit("a")
    dep = w.submit("dep", after=("a",))
    w.finish(a, State.FAILED, 3)
    assert dep.state is State.FAILED
    assert dep.code == ExitCode.DEPENDENCY_FAILED == 210
    assert dep.message == "dependency a ended FAILED (code 3)"
    assert w.failed == [dep]
    assert "dep" not in w.started
    assert w.sched.get("dep") is None
    assert w.sched.queued_count == 0


def test_after_a_cancelled_dependency_fails_the_dependent() -> None:
    w = World(capacity=4)
    a = w.submit("a")
    dep = w.submit("dep", after=("a",))
    w.finish(a, State.CANCELLED, 207)
    assert dep.state is State.FAILED
    assert dep.message == "dependency a ended CANCELLED (code 207)"
    assert w.failed == [dep]


def test_a_failed_dependency_cascades_to_dependents_of_dependents() -> None:
    w = World(capacity=4)
    a = w.submit("a")
    b = w.submit("b", after=("a",))
    c = w.submit("c", after=("b",))
    assert w.why(c) == "after b (queued)"
    w.finish(a, State.FAILED, 3)
    assert (b.state, c.state) == (State.FAILED, State.FAILED)
    assert b.message == "dependency a ended FAILED (code 3)"
    assert c.message == "dependency b ended FAILED (code 210)"
    assert w.failed == [b, c]


def test_after_any_starts_once_the_dependency_ended_however() -> None:
    w = World(capacity=4)
    a = w.submit("a")
    dep = w.submit("dep", after_any=("a",))
    assert w.why(dep) == "after a (running)"
    w.finish(a, State.FAILED, 3)
    assert dep.state is State.RUNNING
    assert w.failed == []


def test_dependency_that_is_not_live_is_looked_up_in_the_records() -> None:
    w = World(capacity=4)
    w.records["old"] = (State.SUCCEEDED, 0)
    dep = w.submit("dep", after=("old",))
    assert dep.state is State.RUNNING


def test_dependency_that_failed_in_the_records_fails_the_dependent() -> None:
    w = World(capacity=4)
    w.records["old"] = (State.INTERRUPTED, None)
    dep = w.submit("dep", after=("old",))
    assert dep.state is State.FAILED
    assert dep.message == "dependency old ended INTERRUPTED"
    assert w.failed == [dep]


def test_unknown_dependency_fails_the_dependent() -> None:
    w = World(capacity=4)
    dep = w.submit("dep", after=("ghost",))
    assert dep.state is State.FAILED
    assert dep.code == ExitCode.DEPENDENCY_FAILED
    assert dep.message == "dependency ghost is unknown (its record was cleaned)"
    assert w.failed == [dep]


def test_a_live_dependency_wins_over_an_older_record() -> None:
    w = World(capacity=4)
    w.records["a"] = (State.FAILED, 1)  # an earlier petition with the same ID
    w.submit("a")
    dep = w.submit("dep", after=("a",))
    assert dep.state is State.QUEUED
    assert w.why(dep) == "after a (running)"


def test_a_raising_failed_callback_is_logged_and_admission_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)
    w = World(capacity=4)

    def broken(_: Job) -> None:
        raise RuntimeError("reporting failed")

    w.sched = Scheduler(w.rec, capacity=4, host=w.host, clock=w.clock, failed=broken)
    dep = w.submit("dep", after=("ghost",))
    assert dep.state is State.FAILED
    assert w.submit("next").state is State.RUNNING
    assert any("reporting the failure" in r.getMessage() for r in _records(caplog))


def test_dependent_fails_at_once_even_while_every_cpu_is_busy() -> None:
    w = World(capacity=1)
    w.submit("running")
    a = w.submit("a")
    dep = w.submit("dep", after=("a",))
    assert w.sched.remove_queued(a) is True
    assert dep.state is State.FAILED


# -- cancellation and duplicate IDs ---------------------------------------------------------------
def test_remove_queued_cancels_a_waiting_job_that_never_starts() -> None:
    w = World(capacity=1)
    running = w.submit("running")
    a = w.submit("a")
    b = w.submit("b")
    removed: list[str] = []
    assert w.sched.remove_queued(a, on_removed=lambda j: removed.append(j.id)) is True
    assert removed == ["a"]
    assert a.state is State.CANCELLED
    assert w.sched.get("a") is None
    assert w.sched.waiting() == [b]
    w.finish(running)
    assert w.started == ["running", "b"]
    assert w.sched.remove_queued(a) is False  # once only


def test_remove_queued_fails_a_dependent() -> None:
    w = World(capacity=4)
    a = w.job("a")
    w.sched.set_paused(True, jobs=[a])
    w.sched.submit(a)
    dep = w.submit("dep", after=("a",))
    assert w.sched.remove_queued(a) is True
    assert dep.state is State.FAILED
    assert dep.code == ExitCode.DEPENDENCY_FAILED
    assert dep.message == "dependency a ended CANCELLED"
    assert w.failed == [dep]


def test_remove_queued_refuses_a_running_job() -> None:
    w = World(capacity=4)
    job = w.submit("run")
    assert w.sched.remove_queued(job) is False
    assert job.state is State.RUNNING
    assert w.sched.get("run") is job


def test_removing_a_blocked_job_lets_those_behind_start() -> None:
    w, _, big = _blocked_big()
    later = w.submit("later")
    assert w.sched.remove_queued(big) is True
    assert later.state is State.RUNNING


def test_duplicate_id_while_queued_is_refused() -> None:
    w = World(capacity=1)
    w.submit("running")
    w.submit("dup")
    with pytest.raises(DuplicateIdError) as info:
        w.submit("dup")
    assert "dup" in str(info.value)
    assert info.value.exit_code is ExitCode.DUPLICATE
    assert w.sched.queued_count == 1


def test_duplicate_id_while_running_then_accepted_after_it_ends() -> None:
    w = World(capacity=4)
    first = w.submit("same")
    second = w.job("same")
    with pytest.raises(DuplicateIdError):
        w.sched.submit(second)
    assert second.state is State.QUEUED
    assert w.sched.get("same") is first
    w.finish(first)
    third = w.submit("same")
    assert w.rec.started == [first, third]
    assert w.sched.get("same") is third


def test_int_and_str_ids_collide() -> None:
    w = World(capacity=4)
    w.submit(42)
    with pytest.raises(DuplicateIdError):
        w.submit("42")


# -- draining, accepting, listings ----------------------------------------------------------------
def test_drain_queued_returns_waiting_jobs_in_order_and_stops_admission() -> None:
    w = World(capacity=1)
    running = w.submit("running")
    w.submit("w3", 3)
    w.submit("w1", 1)
    w.submit("w1b", 1)
    gone = w.submit("gone", 0)
    w.sched.remove_queued(gone)
    drained = w.sched.drain_queued()
    assert [j.id for j in drained] == ["w1", "w1b", "w3"]
    assert all(j.state is State.QUEUED for j in drained)
    assert w.sched.accepting is False
    assert w.sched.queued_count == 0
    assert w.sched.running() == [running]
    late = w.submit("late")
    w.finish(running)
    assert w.rec.started == [running]
    assert late.state is State.QUEUED


def test_not_accepting_explains_that_nothing_starts() -> None:
    w = World(capacity=4)
    w.sched.accepting = False
    jobs = [w.submit("a"), w.submit("b", after=("ghost",))]
    assert w.started == []
    assert all(j.state is State.QUEUED for j in jobs)
    explained = w.sched.explain()
    assert [explained[j.seq] for j in jobs] == ["the service is not starting petitions"] * 2
    w.sched.accepting = True
    w.sched.admit()
    assert w.started == ["a"]


def test_jobs_lists_running_first_then_waiting_in_order() -> None:
    w = World(capacity=2)
    r1 = w.submit("r1", 9)
    r2 = w.submit("r2", 7)
    q2 = w.submit("q2", 2)
    q1 = w.submit("q1", 1)
    q1b = w.submit("q1b", 1)
    assert w.sched.running() == [r1, r2]
    assert w.sched.waiting() == [q1, q1b, q2]
    assert w.sched.jobs() == [r1, r2, q1, q1b, q2]
    assert (w.sched.running_count, w.sched.queued_count) == (2, 3)


def test_forget_drops_the_id_but_keeps_the_job_waiting() -> None:
    w = World(capacity=1)
    w.submit("running")
    kept = w.submit("kept")
    w.sched.forget(kept)
    assert w.sched.get("kept") is None
    assert kept.state is State.QUEUED
    assert w.sched.waiting() == [kept]


# -- aging, end to end on the fake clock (was a wall-clock integration test) ---------------------
def test_an_old_low_priority_petition_overtakes_newer_higher_priority_ones() -> None:
    # One slot, aging one priority step per second waited.
    w = World(capacity=1, aging=1.0)
    blocker = w.submit("blocker")
    old = w.submit("old", 5)
    first = w.sched.effective_priority(old)
    w.clock.advance(1.5)
    later = w.sched.effective_priority(old)
    assert first == 5.0 and later == pytest.approx(3.5)  # what status shows, improving
    w.submit("new-4", 4)  # arrives when old competes as 3.5: old is ahead of it
    w.submit("new-3", 3)  # better than 3.5: ahead of old
    w.clock.advance(10)
    w.submit("new-0", 0)  # old competes as -6.5 by now: ahead of it too
    assert [j.id for j in w.sched.waiting()] == ["new-3", "old", "new-4", "new-0"]
    assert w.sched.effective_priority(old) == pytest.approx(-6.5)
    w.finish(blocker)
    for _ in range(4):
        w.finish(w.rec.started[-1])
    assert w.started == ["blocker", "new-3", "old", "new-4", "new-0"]


# -- machines ---------------------------------------------------------------------------------
def _on(*machines: FakeMachine, **kwargs: Any) -> tuple[World, Scheduler]:
    """A World whose scheduler admits onto ``machines``."""
    w = World()
    w.sched = Scheduler(w.rec, machines=list(machines), clock=w.clock, **kwargs)
    return w, w.sched


def test_by_default_one_local_machine_of_the_host_and_jobs_record_it() -> None:
    w = World(capacity=2, gpus=("0", "1"))
    (machine,) = w.sched.machines
    assert isinstance(machine, LocalMachine)
    assert machine.name == "local" and machine.host is w.host
    assert (machine.slots, machine.inventory) == (2, ("0", "1"))
    job = w.submit("a", cpus=2, gpus=1)
    assert job.machine is machine
    assert (machine.used_slots, machine.free_gpus) == (2, ["1"])
    w.finish(job)
    assert job.machine is machine  # still named once it ended (for its record)
    assert (machine.used_slots, machine.free_gpus) == (0, ["0", "1"])


def test_a_petition_goes_to_the_machine_that_has_room_for_it() -> None:
    small, big = FakeMachine("small", slots=1), FakeMachine("big", slots=2)
    w, sched = _on(small, big)
    one = w.submit("one")
    two = w.submit("two", cpus=2)
    assert (one.machine, two.machine) == (small, big)
    assert (small.used_slots, big.used_slots) == (1, 2)
    assert (sched.capacity, sched.used_cpus) == (3, 3)


def test_two_machines_share_one_global_order_each_with_its_own_capacity() -> None:
    a, b = FakeMachine("a", slots=1), FakeMachine("b", slots=2)
    w, sched = _on(a, b)
    sched.set_paused(True, everything=True)
    w.submit("low", 5)
    w.submit("wide", 1, cpus=2)
    w.submit("high", 0)
    w.submit("mid", 3)
    sched.set_paused(False, everything=True)
    # Global priority: high first (onto a, the first with room); wide needs 2 CPUs: only
    # b has them. mid then fits nowhere, and neither does low behind it.
    assert w.started == ["high", "wide"]
    assert [j.machine.name for j in w.rec.started if j.machine] == ["a", "b"]
    assert sched.explain()[sched.get("mid").seq] == (  # type: ignore[union-attr]
        "a: waiting for a free slot (1/1 CPUs in use); b: waiting for a free slot (2/2 CPUs in use)"
    )
    w.finish(w.rec.started[1])  # wide ends: b has 2 free; mid then low, in order
    assert w.started == ["high", "wide", "mid", "low"]
    assert [j.machine for j in w.rec.started[2:]] == [b, b]


def test_a_request_no_single_machine_can_meet_is_refused() -> None:
    _, sched = _on(FakeMachine("a", slots=2), FakeMachine("b", slots=3, gpus=("0",)))
    sched.check_feasible(Schedule(cpus=3))
    sched.check_feasible(Schedule(cpus=2, gpus=1))
    with pytest.raises(PetitionError, match="largest machine of this service has 3"):
        sched.check_feasible(Schedule(cpus=4))
    _, apart = _on(FakeMachine("a", slots=3), FakeMachine("b", slots=1, gpus=("0",)))
    apart.check_feasible(Schedule(cpus=3))
    apart.check_feasible(Schedule(gpus=1))
    with pytest.raises(PetitionError, match="no machine of this service has 3 CPUs, 1 GPU"):
        apart.check_feasible(Schedule(cpus=3, gpus=1))


def test_plugin_predicates_of_the_machine_shape_are_asked_per_machine() -> None:
    a, b = FakeMachine("a", slots=1), FakeMachine("b", slots=1)

    def not_on_a(job: Job, machine: Any) -> str | None:
        return "not on a" if machine.name == "a" else None

    w, sched = _on(a, b, predicates=[not_on_a])
    first = w.submit("first")
    second = w.submit("second")
    assert first.machine is b
    assert second.state is State.QUEUED
    assert sched.needs_recheck is True  # a predicate said no: asked again later
    assert sched.explain()[second.seq] == "not on a"  # the words of the one that said no
    w.finish(first)
    assert second.machine is b
