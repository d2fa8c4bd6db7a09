"""The pump (orcha.service.pumping.Pump): a real child's stdout and stderr on their way to
its petition, driven blocking (run) or step by step as the petition loop drives it, with
a fake clock wherever the drain after an exit (DRAIN_SECONDS) matters."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from orcha.defaults import DRAIN_SECONDS
from orcha.protocol.messages import STDERR, STDOUT
from orcha.protocol.outputs import DISCARD
from orcha.service.procs import ProcessControl, open_pidfd
from orcha.service.pumping import EXIT_POLL_SECONDS, Pump
from tests.conftest import wait_for
from tests.unit.service.harness import FakeClock

#: Longest a test waits for a child to do something before it fails.
DEADLINE = 10.0

#: 3 MiB that are not all alike: a lost, repeated or reordered chunk shows.
BIG = bytes(range(256)) * (3 * 4096)


class FakeJob:
    """What a pump needs of a job: ``emit`` (recorded) and its client's ``queue``."""

    def __init__(self, queue: Any = DISCARD) -> None:
        self.queue = queue
        self.emitted: list[tuple[int, bytes]] = []

    def emit(self, stream: int, data: bytes) -> None:
        self.emitted.append((stream, data))

    def stream(self, which: int) -> bytes:
        return b"".join(data for stream, data in self.emitted if stream == which)


class FakeMachine:
    """Reaps as the local machine does, without the accounting."""

    def __init__(self) -> None:
        self.reaped: list[int] = []

    def reap(self, job: Any, proc: subprocess.Popen[bytes]) -> int:
        self.reaped.append(proc.pid)
        return proc.wait()


class FakeQueue:
    """An output queue whose fullness the test sets."""

    def __init__(self, full: bool) -> None:
        self.full = full

    def would_block(self) -> bool:
        return self.full


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Children a test starts (each in its own process group), killed with whatever they
    started and reaped at its end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def spawn(
    children: list[subprocess.Popen[bytes]], script: str, stdin: int = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    """``sh -c script`` with piped stdout and stderr, in a new session (so its whole group
    can be killed)."""
    proc = subprocess.Popen(
        ["sh", "-c", script], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    children.append(proc)
    return proc


def gone(proc: psutil.Process) -> bool:
    """Whether ``proc`` has ended (a zombie left for its new parent to reap counts)."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_exited(pump: Pump) -> None:
    """Until the pump's pidfd says its process has exited (without reaping it)."""
    assert pump.pidfd is not None
    readable, _, _ = select.select([pump.pidfd], [], [], DEADLINE)
    assert readable, "the child did not exit"


def read_until_closed(pump: Pump) -> None:
    """Read every pipe of ``pump`` as the loop would, until each is closed."""
    while pump.channels:
        readable, _, _ = select.select(list(pump.channels), [], [], DEADLINE)
        assert readable, "the child's pipes stayed open"
        for fd in readable:
            pump.read(fd)


def test_open_pidfd_gives_a_descriptor_for_a_live_process_and_none_for_a_missing_one(
    children: list[subprocess.Popen[bytes]],
) -> None:
    proc = spawn(children, "exit 0")
    fd = open_pidfd(proc.pid)
    assert fd is not None
    try:
        assert select.select([fd], [], [], DEADLINE)[0] == [fd]  # readable once it exits
    finally:
        os.close(fd)
    assert open_pidfd(1 << 30) is None  # beyond any pid_max: no such process


def test_run_emits_every_byte_of_both_streams_and_returns_the_exit_code(
    children: list[subprocess.Popen[bytes]],
) -> None:
    """More than a pipe holds, so the child waits for the pump while it writes."""
    proc = spawn(
        children,
        f"{sys.executable} -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 12288)'"
        "; echo 'the end' >&2; exit 7",
    )
    job, machine = FakeJob(), FakeMachine()
    pump = Pump(job, proc, machine)  # type: ignore[arg-type]
    assert pump.channels == {proc.stdout.fileno(): STDOUT, proc.stderr.fileno(): STDERR}  # type: ignore[union-attr]
    assert pump.run() == 7
    assert job.stream(STDOUT) == BIG
    assert job.stream(STDERR) == b"the end\n"
    assert machine.reaped == [proc.pid] and proc.returncode == 7
    assert pump.done and pump.pidfd is None
    assert proc.stdout.closed and proc.stderr.closed  # type: ignore[union-attr]


def test_run_gives_128_plus_the_signal_that_killed_the_child(
    children: list[subprocess.Popen[bytes]],
) -> None:
    proc = spawn(children, "exec sleep 30")
    pump = Pump(FakeJob(), proc, FakeMachine())  # type: ignore[arg-type]
    proc.send_signal(signal.SIGTERM)
    assert pump.run() == 128 + signal.SIGTERM


def test_without_a_pidfd_run_notices_the_exit_by_polling(
    children: list[subprocess.Popen[bytes]],
) -> None:
    """Another host's process (``remote``) has no pidfd here: its exit is polled for."""
    proc = spawn(children, "echo hi; exit 4")
    proc.remote = True  # type: ignore[attr-defined]
    job = FakeJob()
    pump = Pump(job, proc, FakeMachine())  # type: ignore[arg-type]
    assert pump.pidfd is None and pump.due_in() == EXIT_POLL_SECONDS
    assert pump.run() == 4
    assert job.stream(STDOUT) == b"hi\n"


def test_a_grandchild_holding_the_pipes_ends_the_pump_after_the_drain(
    children: list[subprocess.Popen[bytes]],
) -> None:
    """The child exits and leaves a process that holds its pipes open: the pump takes
    what the pipes hold DRAIN_SECONDS after the exit, not before, and is done."""
    proc = spawn(children, "echo before; echo late >&2; sleep 30 & echo $!; exit 0")
    clock = FakeClock()
    job = FakeJob()
    pump = Pump(job, proc, FakeMachine(), clock=clock)  # type: ignore[arg-type]
    grandchild: psutil.Process | None = None
    try:
        wait_exited(pump)
        pump.exited()
        assert not pump.done and pump.due_in() == DRAIN_SECONDS
        pump.tick()
        assert not pump.done and len(pump.channels) == 2 and job.emitted == []
        clock.advance(DRAIN_SECONDS / 2)
        pump.exited()  # a second look at the pidfd does not push the deadline back
        assert pump.due_in() == DRAIN_SECONDS / 2
        clock.advance(DRAIN_SECONDS / 2)
        assert pump.due_in() == 0.0
        pump.tick()
        assert pump.done and not pump.channels
        before, pid = job.stream(STDOUT).decode().splitlines()
        grandchild = psutil.Process(int(pid))
        assert before == "before" and job.stream(STDERR) == b"late\n"
        assert grandchild.is_running()  # what held the pipes open, still there
        assert pump.close() == 0
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the grandchild is in the child's group
        if grandchild is not None:
            assert wait_for(lambda: gone(grandchild))


def test_not_done_while_its_pipes_are_closed_but_the_process_runs(
    children: list[subprocess.Popen[bytes]],
) -> None:
    proc = spawn(children, "echo bye; exec >&- 2>&-; read line; exit $line", stdin=subprocess.PIPE)
    job = FakeJob()
    pump = Pump(job, proc, FakeMachine(), clock=FakeClock())  # type: ignore[arg-type]
    read_until_closed(pump)
    assert job.emitted == [(STDOUT, b"bye\n")]
    pump.tick()
    assert not pump.done and pump.due_in() is None  # only its pidfd can move it on
    assert proc.poll() is None
    proc.stdin.write(b"5\n")  # type: ignore[union-attr]
    proc.stdin.close()  # type: ignore[union-attr]
    wait_exited(pump)
    assert not pump.done  # until the pidfd is seen
    pump.exited()
    assert pump.done
    assert pump.close() == 5


def test_stalled_follows_the_client_queue_and_a_queue_without_a_bound_never_stalls(
    children: list[subprocess.Popen[bytes]],
) -> None:
    proc = spawn(children, "exit 0")
    queue = FakeQueue(full=True)
    pump = Pump(FakeJob(queue), proc, FakeMachine())  # type: ignore[arg-type]
    assert pump.stalled()
    queue.full = False
    assert not pump.stalled()
    discarding = Pump(FakeJob(DISCARD), proc, FakeMachine())  # type: ignore[arg-type]
    assert not hasattr(DISCARD, "would_block") and not discarding.stalled()
    assert pump.run() == 0
    discarding.abandon()


def test_abandon_closes_the_pidfd_and_pipes_without_waiting_for_the_process(
    children: list[subprocess.Popen[bytes]],
) -> None:
    proc = spawn(children, "exec sleep 30")
    pump = Pump(FakeJob(), proc, FakeMachine())  # type: ignore[arg-type]
    pidfd = pump.pidfd
    assert pidfd is not None
    pump.abandon()
    assert pump.pidfd is None and not pump.channels
    with pytest.raises(OSError):
        os.fstat(pidfd)  # closed (the test runs in one thread: not reused meanwhile)
    assert proc.stdout.closed and proc.stderr.closed  # type: ignore[union-attr]
    assert proc.poll() is None  # not waited for, not stopped: the lifecycle stops it
    assert psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE


def test_an_ordered_capture_is_refused() -> None:
    """Its stdout is a socket: ServiceContext.pump reads it, not a Pump."""
    procs = ProcessControl()
    proc = procs.spawn(["true"], cwd="/", env={"PATH": os.defpath}, ordered=True)
    try:
        with pytest.raises(ValueError, match="ordered capture"):
            Pump(FakeJob(), proc, FakeMachine())  # type: ignore[arg-type]
    finally:
        proc.wait()
        for sock in (proc.stdout, proc.stderr):
            if sock is not None:
                sock.close()


class FailingJob(FakeJob):
    """Its output cannot be emitted (a full disk, say)."""

    def emit(self, stream: int, data: bytes) -> None:
        raise OSError(28, "No space left on device")


def test_run_abandons_the_pump_when_emitting_fails(
    children: list[subprocess.Popen[bytes]],
) -> None:
    """Nothing of it is left open (the thread's caller fails the petition, and the
    lifecycle stops the process)."""
    proc = spawn(children, "echo hi; exec sleep 30")
    pump = Pump(FailingJob(), proc, FakeMachine())  # type: ignore[arg-type]
    pidfd = pump.pidfd
    assert pidfd is not None
    with pytest.raises(OSError, match="No space left"):
        pump.run()
    assert pump.pidfd is None and not pump.channels
    with pytest.raises(OSError):
        os.fstat(pidfd)
    assert proc.stdout.closed and proc.stderr.closed  # type: ignore[union-attr]
    assert proc.poll() is None  # not waited for: it still runs


def test_a_drain_is_due_once_its_time_has_come_and_pipes_are_left(
    children: list[subprocess.Popen[bytes]],
) -> None:
    """What the loop looks at before a tick that would emit (and so could wait for a
    client that is behind)."""
    clock = FakeClock()
    proc = spawn(children, "echo late; exec sleep 30")
    pump = Pump(FakeJob(), proc, FakeMachine(), clock=clock)  # type: ignore[arg-type]
    try:
        assert not pump.drain_due()  # not exited
        pump.exited()
        assert not pump.drain_due()
        clock.advance(DRAIN_SECONDS)
        assert pump.drain_due()
        pump.tick()
        assert not pump.drain_due() and pump.done  # drained: no pipe left
    finally:
        pump.abandon()
