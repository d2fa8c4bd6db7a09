"""Predicates: each one's fit and its reason, on fake machines (no scheduler)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from orcha.interfaces import Petition
from orcha.protocol.outputs import DISCARD
from orcha.protocol.schedule import Schedule
from orcha.service import predicates as preds
from orcha.service.job import Job
from orcha.service.machines import MachineView
from orcha.states import State
from tests.unit.fake_machines import GIB, FakeMachine


def _noop(cb: Any, petition: Any) -> None:
    pass


def job(
    pid: str = "p", condition: Any = lambda _: True, native: bool = True, **schedule: Any
) -> Job:
    petition = Petition(id=pid, queue=DISCARD, action=_noop, condition=condition)
    return Job(petition, native=native, token_prefix="t", schedule=Schedule(**schedule))


def busy(slots: int = 4, used: int = 0, **kwargs: Any) -> FakeMachine:
    machine = FakeMachine("m", slots=slots, **kwargs)
    machine.used_slots = used
    return machine


# -- resources --------------------------------------------------------------------------------
def test_slots_fit_while_enough_are_free() -> None:
    assert preds.slots(job(cpus=2), busy(4, used=2)) is None
    assert preds.slots(job(cpus=1), busy(4, used=3)) is None


def test_slots_reasons_name_what_is_in_use_or_free() -> None:
    assert preds.slots(job(), busy(4, used=4)) == "waiting for a free slot (4/4 CPUs in use)"
    assert preds.slots(job(cpus=3), busy(4, used=2)) == "needs 3 CPUs, 2 free"
    # capacity lowered below what runs: never a negative count
    assert preds.slots(job(cpus=2), busy(1, used=3)) == "needs 2 CPUs, 0 free"


def test_gpus_fit_only_while_enough_distinct_ones_are_free() -> None:
    machine = busy(gpus=("0", "1"))
    assert preds.gpus(job(gpus=2), machine) is None
    machine.reserve(Schedule(gpus=1))
    assert preds.gpus(job(gpus=2), machine) == "needs 2 GPU(s), 1 free"
    assert preds.gpus(job(), machine) is None  # asked for none


def test_memory_counts_what_running_petitions_reserved() -> None:
    machine = busy(available=8 * GIB)
    assert preds.memory(job(mem=8 * GIB), machine) is None
    machine.reserve(Schedule(mem=6 * GIB))
    machine.refresh()
    assert preds.memory(job(mem=3 * GIB), machine) == "needs 3.0 GiB, 2.0 GiB free"
    assert preds.is_volatile(preds.memory)  # freed without telling orcha: rechecked
    assert not preds.is_volatile(preds.slots)


def test_memory_is_not_read_for_a_petition_that_asks_for_none() -> None:
    class Unreadable(FakeMachine):
        def available_memory(self) -> int:
            raise AssertionError("read")

    assert preds.memory(job(), Unreadable("m")) is None


def test_predicates_read_a_snapshot_as_they_read_a_machine() -> None:
    view = MachineView("m", slots=4, used_slots=3, free_gpu_count=0, memory=GIB)
    assert preds.slots(job(cpus=2), view) == "needs 2 CPUs, 1 free"
    assert preds.gpus(job(gpus=1), view) == "needs 1 GPU(s), 0 free"
    assert preds.memory(job(mem=2 * GIB), view) == "needs 2.0 GiB, 1.0 GiB free"


# -- conditions -------------------------------------------------------------------------------
def test_petition_condition_holds_fails_and_raises_as_not_now(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="orcha.service.scheduler")
    cond = preds.PetitionCondition()
    machine = busy()
    assert cond(job(condition=lambda _: True), machine) is None
    words = "waiting for a plugin's predicate to hold"
    assert cond(job(condition=lambda _: False), machine) == words

    def boom(_: Any) -> bool:
        raise RuntimeError("plugin bug")

    broken = job("broken", condition=boom)
    assert cond(broken, machine) is not None
    assert cond(broken, machine) is not None
    assert len(caplog.records) == 1  # logged once per petition
    cond.forget(broken)
    assert cond(broken, machine) is not None
    assert len(caplog.records) == 2  # once more after it left the queue


def test_legacy_condition_needs_a_free_slot_and_its_condition() -> None:
    legacy = preds.LegacyCondition(preds.PetitionCondition())
    words = "waiting for its condition to hold"
    assert legacy(job(native=False), busy(1)) is None
    assert legacy(job(native=False), busy(1, used=1)) == words
    assert legacy(job(native=False, condition=lambda _: False), busy(1)) == words


# -- holds --------------------------------------------------------------------------------------
def test_all_paused() -> None:
    holds = preds.Holds()
    all_paused = preds.AllPaused(holds)
    assert all_paused(job(), None) is None
    holds.paused_all = True
    assert all_paused(job(), None) == "all petitions are paused ('orcha resume --all')"


def test_paused_petition_or_group() -> None:
    holds = preds.Holds()
    paused = preds.Paused(holds)
    j = job("j7", group="build")
    assert paused(j, None) is None
    holds.paused_groups.add("build")
    assert paused(j, None) == "group build is paused ('orcha resume --group build')"
    j.paused = True
    assert paused(j, None) == "paused ('orcha resume j7')"


def test_group_full_counts_its_running_petitions() -> None:
    holds = preds.Holds()
    full = preds.GroupFull(holds)
    j = job(group="io")
    assert full(j, None) is None  # no limit
    holds.group_limits["io"] = 2
    holds.started("io")
    assert full(j, None) is None
    holds.started("io")
    assert full(j, None) == "group io full (2/2)"
    holds.ended("io")
    assert full(j, None) is None
    holds.ended("io")
    assert holds.group_running == {}  # no empty counters left behind


def test_dependencies_hold_while_live_then_pass_or_doom_by_how_they_ended() -> None:
    live: dict[str, Job] = {}
    records: dict[str, tuple[State, int | None]] = {}
    deps = preds.Dependencies(live, records.get)
    waiting = job(after=("a",))
    waiting.deps_ready = False
    live["a"] = job("a")
    assert deps(waiting, None) == "after a (queued)"
    del live["a"]
    assert deps(waiting, None) == "failing: dependency a is unknown (its record was cleaned)"
    records["a"] = (State.FAILED, 1)
    assert deps(waiting, None) == "failing: dependency a ended FAILED (code 1)"
    assert deps.check(waiting) == ("fail", "dependency a ended FAILED (code 1)")
    ended = job("a")
    ended.set_state(State.RUNNING)
    ended.set_state(State.SUCCEEDED)
    deps.remember(ended)  # its own end, looked up before the records
    assert deps(waiting, None) is None
    any_end = job(after_any=("a",))
    any_end.deps_ready = False
    records["a"] = (State.FAILED, 1)
    deps.recent.clear()
    assert deps(any_end, None) is None  # --after-any: any end will do
    assert deps(job(), None) is None  # no dependencies: not even asked


def test_ends_by_needs_a_bounded_run_within_the_deadline() -> None:
    assert preds.ends_by(Schedule(timeout=10), now=100, deadline=110)
    assert not preds.ends_by(Schedule(timeout=10), now=100, deadline=109)
    assert not preds.ends_by(Schedule(), now=100, deadline=1e9)  # no --timeout
    # every attempt counts
    assert not preds.ends_by(Schedule(timeout=10, retries=1), now=100, deadline=110)
