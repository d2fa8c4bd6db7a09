"""Machines: the local machine over a fake host and fake process control; reservations."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from typing import Any

from orcha.interfaces import Petition
from orcha.protocol.outputs import DISCARD
from orcha.protocol.schedule import Schedule
from orcha.service.host import Host
from orcha.service.job import Job
from orcha.service.machines import LocalMachine
from orcha.states import State
from tests.unit.fake_machines import GIB


class FakeHost(Host):
    def __init__(self, cpus: int = 6, available: int = 10 * GIB) -> None:
        self.cpus, self.available = cpus, available

    def cpu_count(self) -> int:
        return self.cpus

    def total_memory(self) -> int:
        return 16 * GIB

    def available_memory(self) -> int:
        return self.available


class FakeProcs:
    """Stands in for ProcessControl: records what the machine asks of it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.cgroups: Any = None  # petitions in cgroups (a Cgroups) or not (None)

    def spawn(
        self,
        argv: Any,
        *,
        cwd: str,
        env: Any,
        pipe_size: int = 0,
        stdin: bool = False,
        ordered: bool = False,
    ) -> str:
        self.calls.append(("spawn", list(argv), cwd, dict(env), pipe_size))
        self.ordered = ordered
        return "proc"

    def signal_tree(self, roots: Iterable[int], token: str | None, sig: int) -> int:
        self.calls.append(("signal", sorted(roots), token, sig))
        return 1

    def watch(self, token: str, pid: int) -> None:
        pass  # the tracker's business (tests/unit/test_orphans.py)

    def stop_leftovers(self, roots: Iterable[int], token: str, grace: float) -> int:
        self.calls.append(("leftovers", sorted(roots), token, grace))
        return 3

    def limit_memory(self, token: str, limit: int, roots: Any, exceeded: Any) -> None:
        self.calls.append(("limit", token, limit, sorted(roots())))

    def finished(self, token: str) -> None:
        self.calls.append(("finished", token))

    def stop_tree(
        self, roots: Iterable[int], token: str | None, grace: float, force: bool = False
    ) -> int:
        self.calls.append(("stop", sorted(roots), token, grace, force))
        return 2

    def tree(self, roots: Iterable[int], token: str | None) -> dict[int, Any]:
        return {}


def _noop(cb: Any, petition: Any) -> None:
    pass


def running_job() -> Job:
    petition = Petition(id="p", queue=DISCARD, action=_noop, condition=bool)
    job = Job(petition, native=True, token_prefix="t")
    job.set_state(State.RUNNING)  # it gets its own PID set
    return job


def local(**kwargs: Any) -> tuple[LocalMachine, FakeHost, FakeProcs]:
    host, procs = FakeHost(), FakeProcs()
    return LocalMachine(host, procs, **kwargs), host, procs  # type: ignore[arg-type]


def test_capacity_comes_from_the_host_unless_given() -> None:
    machine, _, _ = local()
    assert machine.name == "local"
    assert machine.slots == 6  # the host's cores
    assert machine.total_memory() == 16 * GIB
    assert machine.available_memory() == 10 * GIB
    limit = {"n": 2}
    counted, _, _ = local(slots=lambda: limit["n"], gpus=("0", "1"), name="box")
    limit["n"] = 3
    assert (counted.name, counted.slots, counted.inventory) == ("box", 3, ("0", "1"))


def test_reservations_take_and_give_back_slots_memory_and_gpus() -> None:
    machine, host, _ = local(slots=4, gpus=("0", "1", "2"))
    machine.refresh()
    assert (machine.free_slots, machine.free_gpu_count) == (4, 3)
    assert machine.free_memory() == 10 * GIB
    a = machine.reserve(Schedule(cpus=3, mem=4 * GIB, gpus=2))
    b = machine.reserve(Schedule(gpus=1))
    assert (a, b) == (("0", "1"), ("2",))
    assert (machine.free_slots, machine.free_gpu_count) == (0, 0)
    assert machine.free_memory() == 6 * GIB  # during the walk: what it took is gone
    machine.release(Schedule(cpus=3, mem=4 * GIB, gpus=2), a)
    host.available = 9 * GIB
    machine.refresh()  # the next walk reads memory again
    assert machine.free_memory() == 9 * GIB
    assert machine.free_gpus == ["0", "1"]  # in inventory order


def test_a_snapshot_is_plain_data_of_the_free_resources() -> None:
    machine, _, _ = local(slots=4, gpus=("0",))
    machine.reserve(Schedule(cpus=1, mem=GIB))
    view = machine.snapshot(memory=True)
    assert (view.name, view.free_slots, view.free_gpu_count) == ("local", 3, 1)
    assert view.free_memory() == 9 * GIB
    assert machine.snapshot(memory=False).free_memory() == 0  # not read


def test_unreadable_memory_counts_as_none_free() -> None:
    class Broken(FakeHost):
        def available_memory(self) -> int:
            raise OSError("no /proc/meminfo")

    machine = LocalMachine(Broken(), FakeProcs())  # type: ignore[arg-type]
    assert machine.free_memory() == 0


def test_process_control_goes_to_the_jobs_own_processes() -> None:
    machine, _, procs = local()
    job = running_job()
    machine.adopt(job, 41)
    machine.adopt(job, 42)
    assert job.pids == {41, 42}
    assert machine.signal_tree(job, signal.SIGSTOP) == 1
    assert machine.stop_tree(job, 3.0, force=True) == 2
    assert machine.spawn(["true"], cwd="/", env={"A": "1"}, pipe_size=8) == "proc"
    assert procs.calls == [
        ("signal", [41, 42], job.token, signal.SIGSTOP),
        ("stop", [41, 42], job.token, 3.0, True),
        ("spawn", ["true"], "/", {"A": "1"}, 8),
    ]
    assert machine.measure_tree(job) == {"processes": 0.0, "cpu_seconds": 0.0, "rss": 0.0}


def test_sweeping_a_job_that_reported_no_process_does_nothing() -> None:
    machine, _, procs = local()
    machine.sweep(running_job(), 1.0)
    assert machine._sweeper is None and procs.calls == []


def test_recorded_processes_are_stopped_only_if_they_are_the_same_process() -> None:
    machine, _, procs = local()
    ticks = {10: 500, 11: 777}
    machine.start_ticks = ticks.get  # type: ignore[method-assign]
    # 10 is the same process; 11's PID was reused (other start time); 12 is gone
    assert machine.stop_recorded([[10, 500], [11, 600], [12, 1]], "tok", 2.0) == 2
    assert procs.calls == [("stop", [10], "tok", 2.0, False)]
    procs.calls.clear()
    assert machine.stop_recorded([[11, 600]], None, 2.0) == 0  # nothing left to find
    assert procs.calls == []


def test_processes_are_named_by_their_start_only_where_no_cgroup_holds_them() -> None:
    machine, _, procs = local()
    assert isinstance(machine.start_ticks(os.getpid()), int)  # for the record, after restart
    procs.cgroups = object()  # a restart kills what is in old cgroups: nothing to record
    assert machine.start_ticks(os.getpid()) is None


def test_leftovers_memory_limits_and_forgetting_go_to_the_jobs_processes() -> None:
    machine, _, procs = local()
    job = running_job()
    machine.adopt(job, 41)
    assert machine.stop_leftovers(job, 2.0) == 3
    machine.limit_memory(job, 10 << 20, lambda why: None)
    machine.forget(job)
    assert procs.calls == [
        ("leftovers", [41], job.token, 2.0),
        ("limit", job.token, 10 << 20, [41]),
        ("finished", job.token),
    ]


def test_a_petition_that_does_not_say_is_captured_as_the_machine_is_configured() -> None:
    machine, _, procs = local()
    machine.spawn(["true"], cwd="/", env={})
    assert procs.ordered is False  # pipes, unless ordered_output says otherwise
    machine.ordered_output = True
    machine.spawn(["true"], cwd="/", env={})
    assert procs.ordered is True
    machine.spawn(["true"], cwd="/", env={}, ordered=False)  # the petition's own word
    assert procs.ordered is False
