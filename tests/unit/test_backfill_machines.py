"""Backfill across machines: a blocked petition is kept room only on the machines it
could ever run on (orcha.service.predicates.Kept), so passers fill the others freely,
and it still starts the moment what it waits for is freed where it can run.

In process: a scheduler on two fake machines and a fake clock; nothing sleeps.
"""

from __future__ import annotations

from typing import Any

from orcha.protocol.schedule import Schedule
from orcha.service.machines import MachineView
from orcha.service.scheduler import Scheduler
from orcha.states import State
from tests.unit.fake_machines import GIB, FakeMachine
from tests.unit.test_scheduler import World


def _on(*machines: FakeMachine) -> World:
    """A World whose scheduler admits onto ``machines`` (no timeouts: only the rule that
    a passer cannot delay a blocked petition at all lets anything pass)."""
    w = World()
    w.sched = Scheduler(w.rec, machines=list(machines), clock=w.clock, backfill_bound=0)
    return w


def _cpu_and_gpu_machines() -> tuple[World, FakeMachine, FakeMachine]:
    """``cpu`` (2 slots, no GPU) and ``gpu`` (2 slots, GPU 0 taken by ``g1``); ``g2``
    waits for the GPU (it can only ever run on ``gpu``)."""
    cpu, gpu = FakeMachine("cpu", slots=2), FakeMachine("gpu", slots=2, gpus=("0",))
    w = _on(cpu, gpu)
    g1 = w.submit("g1", gpus=1)
    g2 = w.submit("g2", gpus=1)
    assert (g1.machine, g2.state) == (gpu, State.QUEUED)
    return w, cpu, gpu


def test_cpu_only_petitions_fill_a_machine_the_gpu_petition_can_never_run_on() -> None:
    w, cpu, gpu = _cpu_and_gpu_machines()
    passers = [w.submit(f"c{i}") for i in range(3)]
    # Both of cpu's slots (the rule used to keep one there for g2, which has no GPU
    # there); gpu's last slot stays g2's.
    assert [p.machine for p in passers[:2]] == [cpu, cpu]
    assert passers[2].state is State.QUEUED
    assert w.why(passers[2]).startswith("behind g2, which waits for resources")
    # No starvation: g2 starts the moment the GPU is freed, in the slot left for it.
    w.finish(w.sched.get("g1"))  # type: ignore[arg-type]
    assert w.started[-2:] == ["g2", "c2"]  # then c2, in g1's slot
    assert w.sched.get("g2").machine is gpu  # type: ignore[union-attr]


def test_a_blocked_petition_pinned_with_on_is_kept_room_only_on_its_machine() -> None:
    a, b = FakeMachine("a", slots=2), FakeMachine("b", slots=2)
    w = _on(a, b)
    first = w.submit("first")  # on a (1 of 2 slots)
    pinned = w.submit("pinned", cpus=2, on="a")
    assert (first.machine, pinned.state) == (a, State.QUEUED)
    passers = [w.submit(f"p{i}") for i in range(3)]
    # b: both slots (pinned never runs there); a: its free slot stays pinned's
    assert [p.machine for p in passers[:2]] == [b, b]
    assert passers[2].state is State.QUEUED
    w.finish(first)
    assert pinned.machine is a  # at once: nothing it waits for was taken


def test_memory_passers_fill_a_machine_too_small_for_the_blocked_petition() -> None:
    small = FakeMachine("small", slots=4, total=4 * GIB, available=4 * GIB)
    big = FakeMachine("big", slots=4, total=64 * GIB, available=8 * GIB)
    w = _on(small, big)
    huge = w.submit("huge", mem=32 * GIB)  # only big could ever hold it
    assert huge.state is State.QUEUED
    on_small = w.submit("on-small", mem=3 * GIB)
    on_big = w.submit("on-big", mem=5 * GIB)  # only fits big: takes what huge waits for
    assert on_small.machine is small
    assert on_big.state is State.QUEUED
    assert w.why(on_big).startswith("behind huge, which waits for resources")


def test_a_blocked_petition_that_fits_both_machines_is_kept_room_on_both() -> None:
    a, b = FakeMachine("a", slots=2), FakeMachine("b", slots=2)
    w = _on(a, b)
    busy = [w.submit("a1", on="a"), w.submit("b1", on="b")]  # one slot used on each
    wide = w.submit("wide", cpus=2)
    assert wide.state is State.QUEUED
    small = w.submit("small")
    # one free slot on each, and wide could take either machine once its other slot
    # is freed: taking one would delay it, so nothing passes
    assert small.state is State.QUEUED
    w.finish(busy[1])
    assert wide.machine is b


def test_ever_fits_reads_whole_capacity_of_machines_and_of_views() -> None:
    m = FakeMachine("m", slots=2, gpus=("0",), total=8 * GIB)
    m.reserve(Schedule(cpus=2, gpus=1))  # used up: still "ever" fits
    assert m.ever_fits(Schedule(cpus=2, gpus=1, mem=8 * GIB))
    assert not m.ever_fits(Schedule(cpus=3))
    assert not m.ever_fits(Schedule(gpus=2))
    assert not m.ever_fits(Schedule(mem=9 * GIB))

    def broken() -> Any:
        raise OSError("cannot read /proc/meminfo")

    m.total_memory = broken  # type: ignore[method-assign]
    assert m.ever_fits(Schedule(mem=1 << 40))  # unreadable: room is kept
    view = m.snapshot(memory=True)
    assert (view.gpu_total, view.memory_total) == (1, None)
    assert not view.ever_fits(Schedule(gpus=2)) and view.ever_fits(Schedule(mem=1 << 40))
    old = MachineView("old", 2, 0, 0, 0)  # made without the totals: both unknown
    assert old.ever_fits(Schedule(cpus=2, gpus=4)) and not old.ever_fits(Schedule(cpus=3))
