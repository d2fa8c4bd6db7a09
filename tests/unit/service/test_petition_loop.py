"""The petition loop (orcha.service.petition_loop) and the runner's side of it
(orcha.service.runner.Runner: start, loopable, begin, pumped, resume, the lifecycle):
real ``shell`` petitions on a real LocalMachine, run by a real Runner, with fake service
events (which record the thread each thing happened in) and a process control whose
``left_running`` the test sets (an emptied cgroup says False; without one it is True)."""

from __future__ import annotations

import errno
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from orcha.errors import ExitCode, NotSavedError
from orcha.kinds import Kind
from orcha.protocol.messages import STDOUT, SubmitRequest
from orcha.protocol.outputs import OutputQueue
from orcha.protocol.schedule import Schedule
from orcha.service import petition_loop
from orcha.service.job import End, Job, Started
from orcha.service.kinds import KindManager
from orcha.service.machines import LocalMachine, Machine
from orcha.service.manager import Manager
from orcha.service.petition_loop import ACTION, BLOCKING, PetitionLoop, Step
from orcha.service.procs import ProcessControl
from orcha.service.pumping import Pump
from orcha.service.runner import Runner
from orcha.states import State
from orcha_plugins.shell import ShellKind
from tests.conftest import wait_for

#: Longest a test waits for a petition before it fails.
DEADLINE = 10.0
LOOP = "petition-loop"
ENV = {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"}

#: 3 MiB that are not all alike: a lost, repeated or reordered chunk shows.
BIG = bytes(range(256)) * (3 * 4096)
WRITE_BIG = f"import sys; sys.stdout.buffer.write(bytes(range(256)) * {3 * 4096})"


def here() -> str:
    return threading.current_thread().name


class Events:
    """The service's side of the runner (RunnerEvents): which processes each petition
    reported and in which thread, and in which thread each ended."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.pids: dict[str, list[tuple[int, str]]] = {}
        self.ended: dict[str, str] = {}
        self.failing = False  # saving is known to be failing
        # Petition ID -> what its start's commit waits for (as a full disk makes it).
        self.commit_waits: dict[str, threading.Event] = {}
        self.started_in: dict[str, str] = {}
        # Petition IDs whose start's first try fails (saving has just begun to fail).
        self.first_try_fails: set[str] = set()

    def job_started(self, job: Job, wait: bool = True) -> None:
        if not wait and job.id in self.first_try_fails:
            raise NotSavedError("disk full", "it did not run")
        self.started_in[job.id] = here()
        waits = self.commit_waits.get(job.id)
        if waits is not None:
            assert waits.wait(DEADLINE)

    def saving_fails(self) -> bool:
        return self.failing

    def job_pid(self, job: Job, pid: int) -> None:
        with self._cond:
            self.pids.setdefault(job.id, []).append((pid, here()))

    def job_ended(self, job: Job) -> None:
        with self._cond:
            self.ended[job.id] = here()
            self._cond.notify_all()

    def job_attempt(self, job: Job) -> None:
        pass

    def job_timed_out(self, job: Job) -> None:
        pass

    def wake(self) -> None:
        pass

    def wait_ended(self, petition_id: str) -> str:
        """The thread petition ``petition_id`` ended in, once it has."""
        with self._cond:
            assert self._cond.wait_for(lambda: petition_id in self.ended, DEADLINE)
            return self.ended[petition_id]


class Procs(ProcessControl):
    """The local process control, except what it says is left of a petition once its
    main process has exited: nothing (as an emptied cgroup says), or, with
    ``leftovers``, maybe something (as without cgroups: then it is stopped)."""

    def __init__(self, leftovers: bool) -> None:
        super().__init__()
        self.leftovers = leftovers

    def left_running(self, token: str) -> bool:
        return self.leftovers

    def contained(self, token: str, roots: Any) -> bool:
        return not self.leftovers  # no sweep after the end, as with a cgroup


class RecordingRunner(Runner):
    """The runner, recording what the loop hands over to a thread and what it pumped."""

    def __init__(self, manager: Manager, events: Events) -> None:
        super().__init__(manager, events, grace=1.0)
        self.resumed: list[tuple[str, str, Pump | None]] = []
        self.pumped_in: list[tuple[str, str]] = []

    def resume(self, job: Job, steps: Iterator[Step], pump: Pump | None = None) -> None:
        self.resumed.append((job.id, here(), pump))
        super().resume(job, steps, pump)

    def pumped(self, job: Job, close: Any) -> None:
        self.pumped_in.append((job.id, here()))
        super().pumped(job, close)


class BrokenKind(Kind):
    """A kind whose start raises: its petition fails, not the loop."""

    name = "broken"

    def start(self, ctx: Any) -> Any:
        raise RuntimeError("no way to start")


class HangingKind(Kind):
    """A kind whose start does not return until the test lets it (a plugin's start that
    waits on a hung mount, say); then it fails."""

    name = "hanging"

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def start(self, ctx: Any) -> Any:
        self.entered.set()
        self.release.wait(DEADLINE)
        return int(ExitCode.FAILED)


class RunKind(ShellKind):
    """A kind that defines run() itself: its own thread runs it."""

    name = "run-itself"

    def run(self, ctx: Any) -> int:
        return super().run(ctx)


class FailingQueue(OutputQueue):
    """A client queue that cannot take output (as a log on a full disk cannot)."""

    def put(
        self, item: Any, block: bool = True, timeout: float | None = None, *, wake: bool = True
    ) -> None:
        if isinstance(item, tuple):
            raise OSError(errno.ENOSPC, "No space left on device")
        super().put(item, block, timeout, wake=wake)


@dataclass
class World:
    """A runner over the shell kind (and two test kinds) on the local machine."""

    tmp: Path
    leftovers: bool = False
    events: Events = field(default_factory=Events)
    jobs: list[Job] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hanging = HangingKind()
        kinds = (ShellKind(), BrokenKind(), RunKind(), self.hanging)
        self.manager = KindManager({k.name: k for k in kinds})

        self.procs = Procs(self.leftovers)
        self.machine = LocalMachine(procs=self.procs, slots=8)
        self.runner = RecordingRunner(self.manager, self.events)

    def job(
        self,
        petition_id: str,
        script: str | list[str],
        kind: str = "shell",
        queue: OutputQueue | None = None,
        schedule: Schedule | None = None,
        native: bool = True,
        machine: Machine | None = None,
    ) -> Job:
        """An admitted petition running ``sh -c script`` (or ``argv``)."""
        argv = ["sh", "-c", script] if isinstance(script, str) else script
        params = {"argv": argv} if kind not in ("broken", "hanging") else {}
        request = SubmitRequest(kind, petition_id, params, None, str(self.tmp), ENV)
        petition = self.manager.petition_from_request(request, queue or OutputQueue())
        token = f"test-loop-{os.getpid()}"  # unique per test process: a search finds ours
        job = Job(petition, native=native, token_prefix=token, kind=kind, schedule=schedule)
        job.machine = machine or self.machine
        job.set_state(State.RUNNING)  # admitted, as by the scheduler
        self.jobs.append(job)
        return job

    def start(self, *jobs: Job) -> None:
        for job in jobs:
            self.runner.start(job)

    def threads(self, petition_id: str) -> list[str]:
        """The threads each of the petition's processes was started in."""
        return [thread for _, thread in self.events.pids.get(petition_id, [])]

    def close(self) -> None:
        """Kill what a failed test left of its petitions (every process of theirs carries
        their token), and reap what of it was ours."""
        for job in self.jobs:
            self.procs.stop_tree([], job.token, 0.0, force=True)
        for pids in self.events.pids.values():
            for pid, _ in pids:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass  # reaped already (by its pump)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


@pytest.fixture
def sloppy(tmp_path: Path) -> Iterator[World]:
    """As ``world``, where what a petition leaves running is looked for and stopped."""
    w = World(tmp_path, leftovers=True)
    yield w
    w.close()


def read_to_end(job: Job) -> tuple[bytes, bytes, End]:
    """Everything the petition's client receives: stdout, stderr, and its End."""
    out: list[bytes] = []
    err: list[bytes] = []
    while True:
        item = job.queue.get(timeout=DEADLINE)
        if isinstance(item, End):
            return b"".join(out), b"".join(err), item
        if isinstance(item, tuple):
            stream, data = item
            (out if stream == STDOUT else err).append(data)
        else:
            assert isinstance(item, Started)


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie not reaped yet counts)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def job_stopped(job: Job, pid: int) -> bool:
    """Whether the lifecycle stopped the process it could no longer pump."""
    return job.leftovers == 1 and wait_for(lambda: gone(pid))


def test_loopable_petitions_run_together_in_the_loop_thread(world: World) -> None:
    """One waits on a FIFO until a later one writes it: the loop waits for neither. Each
    one's output and exit code arrive; all of it happens in the loop's thread."""
    fifo = world.tmp / "fifo"
    os.mkfifo(fifo)
    waiter = world.job("waiter", f"echo waiting; read word < {fifo}; echo got $word; exit 3")
    others = [world.job(f"p{i}", f"echo out {i}; echo err {i} >&2; exit {i}") for i in range(6)]
    feeder = world.job("feeder", f"echo go > {fifo}")
    world.start(waiter, *others, feeder)

    out, err, end = read_to_end(waiter)
    assert (out, err, end.code, end.state) == (b"waiting\ngot go\n", b"", 3, State.FAILED)
    assert waiter.code == 3
    for i, job in enumerate(others):
        out, err, end = read_to_end(job)
        assert (out, err) == (f"out {i}\n".encode(), f"err {i}\n".encode())
        assert end.code == job.code == i
        assert end.state is (State.SUCCEEDED if i == 0 else State.FAILED)
    assert read_to_end(feeder)[2].state is State.SUCCEEDED
    for job in (waiter, *others, feeder):
        assert world.threads(job.id) == [LOOP]  # started there (Kind.start)...
        assert world.events.wait_ended(job.id) == LOOP  # ...and ended there
    assert world.runner.resumed == []  # nothing waited: no thread was needed


def test_an_action_that_does_not_start_goes_on_with_its_lifecycle(world: World) -> None:
    """Kind.start returns a code (command not found) or raises: no process to pump; the
    petition fails with that code, in the loop."""
    missing = world.job("missing", [str(world.tmp / "no-such-command")])
    broken = world.job("broken", [], kind="broken")
    world.start(missing, broken)
    _, _, end = read_to_end(missing)
    assert end.code == int(ExitCode.NOT_FOUND) and "command not found" in (end.message or "")
    _, _, end = read_to_end(broken)
    assert end.code == int(ExitCode.FAILED) and end.state is State.FAILED
    assert "RuntimeError: no way to start" in (end.message or "")
    assert world.events.wait_ended("missing") == world.events.wait_ended("broken") == LOOP


def test_a_start_that_does_not_return_shows_as_the_loop_stuck_on_its_petition(
    world: World,
) -> None:
    """'orcha health' asks the loop what it has been busy with (its clock, a fake here):
    a kind's start that has not returned for more than 3 s names its petition."""
    ticks = SimpleNamespace(now=100.0)
    loop = world.runner.loop
    loop.clock = lambda: ticks.now
    hung = world.job("hung", [], kind="hanging")
    world.start(hung)
    assert world.hanging.entered.wait(DEADLINE)
    try:
        ticks.now += 3.0
        assert loop.stuck(3.0) is None  # 3 s: not yet
        ticks.now += 1.5
        assert loop.stuck(3.0) == (4.5, hung)
    finally:
        world.hanging.release.set()
    assert world.events.wait_ended("hung") == LOOP
    assert wait_for(lambda: loop.stuck(3.0) is None)  # once the loop is done with it


def test_a_blocking_step_is_handed_to_a_thread_that_goes_on_from_it() -> None:
    """The loop runs a lifecycle up to BLOCKING (through an ACTION that did not start)
    and hands the same iterator to the runner's resume; the rest runs where that says."""
    trail: list[tuple[str, str]] = []
    resumed = threading.Event()

    class Fake:
        def __init__(self) -> None:
            self.handed: list[tuple[Any, Iterator[Step], Pump | None]] = []

        def begin(self, job: Any) -> None:
            trail.append(("begin", here()))
            return None  # the action ended at once

        def resume(self, job: Any, steps: Iterator[Step], pump: Pump | None = None) -> None:
            trail.append(("resume", here()))
            self.handed.append((job, steps, pump))
            resumed.set()

    def lifecycle() -> Iterator[Step]:
        trail.append(("before", here()))
        yield ACTION
        trail.append(("acted", here()))
        yield BLOCKING
        trail.append(("after", here()))

    runner = Fake()
    job = SimpleNamespace(id="fake", placed=None)
    steps = lifecycle()
    PetitionLoop(runner).add(job, steps)  # type: ignore[arg-type]
    assert resumed.wait(DEADLINE)
    assert trail == [("before", LOOP), ("begin", LOOP), ("acted", LOOP), ("resume", LOOP)]
    ((handed_job, handed_steps, pump),) = runner.handed
    assert handed_job is job and handed_steps is steps and pump is None
    assert list(handed_steps) == [] and trail[-1] == ("after", here())


def test_a_retry_delay_hands_the_petition_to_a_pool_thread_for_its_next_attempt(
    world: World,
) -> None:
    job = world.job(
        "retried", 'echo "attempt $ORCHA_ATTEMPT"; exit $((ORCHA_ATTEMPT == 1 ? 3 : 0))',
        schedule=Schedule(retries=1, retry_delay=0.01),
    )  # fmt: skip
    world.start(job)
    out, err, end = read_to_end(job)
    assert out == b"attempt 1\nattempt 2\n"
    assert err == b"orcha: attempt 1 of 2 failed (exit code 3); retrying in 0.01s\n"
    assert (end.state, end.code, job.attempt) == (State.SUCCEEDED, 0, 2)
    first, second = world.threads("retried")
    assert first == LOOP and second.startswith("petition-") and second != LOOP
    assert [(i, t) for i, t, _ in world.runner.resumed] == [("retried", LOOP)]
    assert world.events.wait_ended("retried") == second


def test_what_a_petition_left_running_is_stopped_from_a_pool_thread(sloppy: World) -> None:
    """Stopping leftovers waits (TERM, grace, KILL): not in the loop."""
    job = sloppy.job("sloppy", "sleep 30 >/dev/null 2>&1 & echo $!")
    sloppy.start(job)
    out, _, end = read_to_end(job)
    assert end.state is State.SUCCEEDED and job.leftovers == 1
    assert wait_for(lambda: gone(int(out)))
    assert sloppy.threads("sloppy") == [LOOP]
    ended_in = sloppy.events.wait_ended("sloppy")
    assert ended_in.startswith("petition-") and ended_in != LOOP
    assert sloppy.runner.resumed == [("sloppy", LOOP, None)]


def test_a_stalled_client_gets_its_petition_pumped_by_a_thread_and_loses_nothing(
    world: World,
) -> None:
    """The client takes nothing until the loop has handed the pumping over: a thread
    then waits for it, and every byte arrives, once."""
    job = world.job("stalled", [sys.executable, "-c", WRITE_BIG], queue=OutputQueue(max_bytes=1))
    world.start(job)
    assert wait_for(lambda: world.runner.resumed, timeout=DEADLINE)
    ((petition, thread, pump),) = world.runner.resumed
    assert (petition, thread) == ("stalled", LOOP) and isinstance(pump, Pump)
    assert job.queue.would_block()  # what the loop saw
    out, err, end = read_to_end(job)
    assert out == BIG and err == b""
    assert (end.state, end.code) == (State.SUCCEEDED, 0)
    ended_in = world.events.wait_ended("stalled")
    assert ended_in.startswith("petition-") and ended_in != LOOP
    assert world.runner.pumped_in == [("stalled", ended_in)]


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_a_petition_whose_client_stopped_reading_can_be_stopped(world: World, how: str) -> None:
    """A client that takes nothing (``orcha run ... | less``, never scrolled) does not
    keep its petition from being cancelled or timed out: the thread pumping it, waiting
    for the client, is released, the process is reaped and the petition ends (its ID
    and slot freed); its client still gets its end."""
    schedule = Schedule(timeout=0.5) if how == "timeout" else None
    job = world.job("stuck", ["yes"], queue=OutputQueue(max_bytes=1), schedule=schedule)
    world.start(job)
    assert wait_for(lambda: world.runner.resumed, timeout=DEADLINE)  # handed to a thread
    ((pid, _),) = world.events.pids["stuck"]
    if how == "cancel":
        assert job.request_cancel("cancelled", by_client=False)
        world.runner.cancel_running(job)
    assert world.events.wait_ended("stuck")
    assert gone(pid) and not psutil.pid_exists(pid)  # reaped, not a zombie
    assert job.released is True
    items = job.queue.drain()
    assert isinstance(items[-1], End)
    assert items[-1].state is (State.CANCELLED if how == "cancel" else State.FAILED)


def test_while_saving_fails_a_start_waits_for_its_commit_in_a_thread_not_the_loop(
    world: World,
) -> None:
    """A start whose commit may wait (saving is failing: a full disk, a locked
    database) waits in a pool thread: the other petitions of the loop stream and end
    meanwhile. While saving works, starts stay in the loop (no thread per petition)."""
    world.start(first := world.job("first", "echo one"))
    assert world.events.wait_ended("first") == LOOP
    assert world.events.started_in["first"] == LOOP
    assert read_to_end(first)[0] == b"one\n"
    world.events.failing = True
    _a_slow_commit_holds_up_no_other(world)


def test_a_start_whose_first_try_to_be_saved_fails_retries_in_a_thread_not_the_loop(
    world: World,
) -> None:
    """Saving has just begun to fail, and nobody knows yet: the loop tries the start's
    commit once, then hands its retries (which may wait for seconds) to a pool thread;
    the loop's other petitions stream and end meanwhile."""
    world.events.first_try_fails.add("slow")
    assert _a_slow_commit_holds_up_no_other(world) == LOOP


def _a_slow_commit_holds_up_no_other(world: World) -> str:
    """Start "slow", whose start's commit waits until released, and "quick": quick
    streams and ends meanwhile, slow's commit waits in a pool thread, and slow runs once
    released. Returns the thread quick ended in."""
    world.events.commit_waits["slow"] = commit = threading.Event()
    slow, quick = world.job("slow", "echo slow"), world.job("quick", "echo quick")
    world.start(slow, quick)
    try:
        quick_ended_in = world.events.wait_ended("quick")  # not held up by slow's commit
        assert read_to_end(quick)[0] == b"quick\n"
        assert "slow" not in world.events.ended
    finally:
        commit.set()
    world.events.wait_ended("slow")
    assert world.events.started_in["slow"].startswith("petition-")
    assert read_to_end(slow)[0] == b"slow\n"
    return quick_ended_in


def test_a_failure_while_pumping_fails_that_petition_and_the_loop_runs_on(
    sloppy: World,
) -> None:
    """Its output cannot be emitted: its action fails (as an exception in Kind.run
    would), what it left running is stopped, and the loop goes on pumping the others,
    the one already running and one started after."""
    fifo = sloppy.tmp / "fifo"
    os.mkfifo(fifo)
    steady = sloppy.job("steady", f"read word < {fifo}; echo got $word")
    doomed = sloppy.job("doomed", "echo doomed; exec sleep 30", queue=FailingQueue())
    sloppy.start(steady, doomed)
    _, _, end = read_to_end(doomed)
    assert (end.state, end.code) == (State.FAILED, int(ExitCode.FAILED))
    assert end.message == "petition doomed failed: OSError: [Errno 28] No space left on device"
    assert ("doomed", LOOP) in sloppy.runner.pumped_in  # failed through Runner.pumped
    ((pid, _),) = sloppy.events.pids["doomed"]
    assert job_stopped(doomed, pid)

    feeder = sloppy.job("feeder", f"echo go > {fifo}")
    sloppy.start(feeder)
    assert read_to_end(steady)[:2] == (b"got go\n", b"")
    assert read_to_end(feeder)[2].state is State.SUCCEEDED
    assert sloppy.threads("steady") == sloppy.threads("feeder") == [LOOP]


def test_a_process_that_cannot_be_pumped_fails_its_petition_and_is_stopped(
    sloppy: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its pump cannot be made: the action fails, the lifecycle goes on to its end (it
    is not left RUNNING) and stops the process, and the loop runs the next one."""

    def refuse(*args: Any, **kwargs: Any) -> Pump:
        raise ValueError("no pump for this one")

    monkeypatch.setattr(petition_loop, "Pump", refuse)
    doomed = sloppy.job("doomed", "exec sleep 30")
    sloppy.start(doomed)
    _, _, end = read_to_end(doomed)
    assert (end.state, end.code) == (State.FAILED, int(ExitCode.FAILED))
    assert end.message == "petition doomed failed: ValueError: no pump for this one"
    ((pid, _),) = sloppy.events.pids["doomed"]
    assert job_stopped(doomed, pid)
    monkeypatch.undo()
    after = sloppy.job("after", "echo fine")
    sloppy.start(after)
    assert read_to_end(after)[0] == b"fine\n"


class GateQueue(OutputQueue):
    """Its first output chunk keeps the loop thread in put() until the test opens it."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.opened = threading.Event(), threading.Event()

    def put(
        self, item: Any, block: bool = True, timeout: float | None = None, *, wake: bool = True
    ) -> None:
        if isinstance(item, tuple) and not self.opened.is_set():
            self.entered.set()
            self.opened.wait(30)
        super().put(item, block, timeout, wake=wake)


class FailOnceQueue(OutputQueue):
    """Its first output chunk cannot be emitted (a full disk, say)."""

    failed = False

    def put(
        self, item: Any, block: bool = True, timeout: float | None = None, *, wake: bool = True
    ) -> None:
        if isinstance(item, tuple) and not self.failed:
            self.failed = True
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        super().put(item, block, timeout, wake=wake)


def test_the_events_of_an_attempt_that_failed_do_not_reach_the_next_one(world: World) -> None:
    """An attempt fails while pumping, with more of its events in the same round; its
    retry starts at once and may get the same descriptors: those events are not its."""
    fifo = world.tmp / "fifo"
    os.mkfifo(fifo)
    script = (
        f'if [ "$ORCHA_ATTEMPT" = 1 ]; then read x < {fifo}; echo out; echo err >&2; exit 1; '
        "fi; echo early >&2; sleep 2; echo second"
    )
    retried = world.job("d", script, queue=FailOnceQueue(), schedule=Schedule(retries=1))
    world.start(retried)
    assert wait_for(lambda: "d" in world.events.pids)
    gate = GateQueue()
    busy = world.job("x", "echo x", queue=gate)
    world.start(busy)
    assert gate.entered.wait(10)  # the loop thread is held in x's output
    fifo.write_text("go\n")  # meanwhile d's first attempt writes both streams and exits
    ((pid, _),) = world.events.pids["d"][:1]
    assert wait_for(lambda: gone(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    gate.opened.set()  # the next round sees d's stdout, stderr and pidfd together
    read_to_end(busy)
    out, _, end = read_to_end(retried)
    assert out == b"second\n"
    assert (end.state, end.code) == (State.SUCCEEDED, 0)


def test_a_petition_the_loop_cannot_run_runs_in_a_thread_of_its_own(world: World) -> None:
    """An ordered capture is read by ServiceContext.pump: Kind.run's default starts it
    and pumps it there."""
    job = world.job(
        "ordered", "echo one; echo two >&2; echo three", schedule=Schedule(ordered=True)
    )
    assert not world.runner.loopable(job)
    world.start(job)
    out, err, end = read_to_end(job)
    assert (out, err, end.code) == (b"one\nthree\n", b"two\n", 0)
    (thread,) = world.threads("ordered")
    assert thread.startswith("petition-") and thread != LOOP
    assert world.runner.resumed == [] and world.runner.pumped_in == []


class HookedManager(KindManager):
    def on_start(self, petition: Any) -> None:
        pass


class FinishingManager(KindManager):
    def on_finish(self, petition: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("case", "loopable"),
    [
        ("shell", True),
        ("ordered pipes asked for", True),
        ("not native", False),
        ("another machine", False),
        ("ordered", False),
        ("ordered by default", False),
        ("on_start hook", False),
        ("on_finish hook", False),
        ("kind with run", False),
    ],
)
def test_loopable_only_for_a_started_kind_on_this_host_with_pipes_and_no_hooks(
    world: World, case: str, loopable: bool
) -> None:
    runner: Runner = world.runner
    kind, schedule, native, machine = "shell", None, True, None
    if case == "ordered pipes asked for":
        world.machine.ordered_output = True
        schedule = Schedule(ordered=False)
    elif case == "not native":
        native = False
    elif case == "another machine":
        machine = Machine("worker")
    elif case == "ordered":
        schedule = Schedule(ordered=True)
    elif case == "ordered by default":
        world.machine.ordered_output = True
    elif case in ("on_start hook", "on_finish hook"):
        manager = (HookedManager if case == "on_start hook" else FinishingManager)(
            world.manager.registry
        )
        runner = Runner(manager, world.events, grace=1.0)
    elif case == "kind with run":
        kind = "run-itself"
    job = world.job("p", "true", kind=kind, schedule=schedule, native=native, machine=machine)
    assert runner.loopable(job) is loopable
