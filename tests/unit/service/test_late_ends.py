"""How an attempt of a petition run by the petition loop ends when something comes late:
a cancel once its process has exited on its own (its outcome stands), a start that
returns neither a process nor a code (it fails). On the world of test_petition_loop:
real ``shell`` petitions on a real LocalMachine, run by a real Runner."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orcha.errors import ExitCode
from orcha.kinds import Kind
from orcha.protocol.schedule import Schedule
from orcha.service.job import Job
from orcha.service.kinds import KindManager
from orcha.states import State
from orcha_plugins.shell import ShellKind
from tests.conftest import wait_for
from tests.unit.service.test_petition_loop import (
    DEADLINE,
    RecordingRunner,
    World,
    gone,
    read_to_end,
)


class NoneKind(Kind):
    """A kind whose start returns neither a process nor an exit code."""

    name = "none"

    def start(self, ctx: Any) -> Any:
        return None


class HookedManager(KindManager):
    """With a hook around each petition: its petitions are not the loop's, each runs in
    a thread of its own (Kind.run: start, then ctx.pump)."""

    def on_start(self, petition: Any) -> None:
        pass


@pytest.fixture(params=["loop", "thread", "ordered"])
def world(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[World]:
    """The petition loop's world; or with its petitions each in a thread of its own (a
    hook of the manager's), or captured ordered (--ordered: in a thread too)."""
    w = World(tmp_path)
    w.ordered = request.param == "ordered"  # type: ignore[attr-defined]
    manager = HookedManager if request.param == "thread" else KindManager
    w.manager = manager({k.name: k for k in (ShellKind(), NoneKind())})
    w.runner = RecordingRunner(w.manager, w.events)
    yield w
    w.close()


def test_a_start_returning_neither_a_process_nor_a_code_fails(world: World) -> None:
    """As a run that returns no int: not a success; the message says what start must
    return."""
    job = world.job("none", [], kind="none")
    world.start(job)
    _, _, end = read_to_end(job)
    assert (end.state, end.code) == (State.FAILED, int(ExitCode.FAILED))
    assert end.message == (
        "kind 'none': start returned None (NoneType); it must return the process it "
        "started (ctx.spawn) or an exit code, an int in 0-255"
    )


def _exited_holding_its_pipe(
    world: World,
    petition_id: str,
    fifo: Path,
    code: int,
    retries: int = 0,
    timeout: float | None = None,
) -> Job:
    """A petition whose main process exits with ``code`` at once, leaving a process that
    holds its output open (so its end is not taken yet) until ``fifo`` is written."""
    os.mkfifo(fifo)
    ordered = True if world.ordered else None  # type: ignore[attr-defined]
    schedule = Schedule(retries=retries, retry_delay=0.01, ordered=ordered, timeout=timeout)
    job = world.job(petition_id, f"(read word < {fifo}) & exit {code}", schedule=schedule)
    world.start(job)
    assert wait_for(lambda: world.events.pids.get(petition_id), timeout=DEADLINE)
    ((pid, _),) = world.events.pids[petition_id][:1]
    assert wait_for(lambda: gone(pid), timeout=DEADLINE)  # exited (maybe not reaped yet)
    return job


def _release(fifo: Path) -> None:
    """Let what the petition left running end (if it still runs: a cancel stops it)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:  # no reader: it was stopped
        assert e.errno == errno.ENXIO
        return
    os.write(fd, b"go\n")
    os.close(fd)


@pytest.mark.parametrize("code", [0, 3])
def test_a_cancel_after_the_process_exited_on_its_own_leaves_its_outcome(
    world: World, code: int
) -> None:
    """Its client goes away (or 'orcha cancel' comes) once the process has exited on its
    own, before its end is taken: the cancel stops nothing and is refused (the petition
    has ended); its record keeps what the process did (SUCCEEDED 0, FAILED 3), never
    CANCELLED with the process's own code."""
    fifo = world.tmp / "fifo"
    job = _exited_holding_its_pipe(world, "ended", fifo, code)
    if job.request_cancel("its client went away", by_client=True):  # as Service.cancel
        world.runner.cancel_running(job)
    _release(fifo)  # what it left running ends: its end is taken now
    _, _, end = read_to_end(job)
    assert (end.state, end.code, end.message) == (
        State.SUCCEEDED if code == 0 else State.FAILED,
        code,
        None,
    )
    assert not end.by_client and job.client_code() == code


def test_a_cancel_after_an_attempt_exited_stops_the_retry(world: World) -> None:
    """The attempt that exited was not the last: the cancel applies to what follows (no
    next attempt), as one during the retry delay does."""
    fifo = world.tmp / "fifo"
    job = _exited_holding_its_pipe(world, "retried", fifo, 3, retries=2)
    if job.request_cancel("cancelled with 'orcha cancel'", by_client=False):
        world.runner.cancel_running(job)
    _release(fifo)
    _, _, end = read_to_end(job)
    assert (end.state, job.attempt) == (State.CANCELLED, 1)
    assert end.message == "cancelled with 'orcha cancel'"


def test_a_timeout_after_the_process_exited_in_time_leaves_its_outcome(world: World) -> None:
    """Its --timeout runs out once its process has exited on its own (what it left
    running holds its output a moment longer): it finished in time; SUCCEEDED 0, not
    FAILED 124 "timed out"."""
    fifo = world.tmp / "fifo"
    job = _exited_holding_its_pipe(world, "in-time", fifo, 0, timeout=3600.0)
    world.runner._time_out(job)  # what the deadline thread calls when it runs out
    _release(fifo)
    _, _, end = read_to_end(job)
    assert (end.state, end.code, end.message) == (State.SUCCEEDED, 0, None)
