"""The Dask executor's pure parts, in process: which cluster serve uses, a worker's report
read into capacity, the words for why a petition waits, the worker's output buffer, and
the per-worker spawner (a real process, no cluster). The cluster itself is exercised in
tests/integration/test_dask.py."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from orcha.errors import ConfigError, ExecutorError, ExitCode
from orcha.service.dask import require_distributed
from orcha.service.dask.inventory import best_fit, read_report, why_waiting
from orcha.service.dask.target import resolve
from orcha.service.machines import MachineView
from tests.conftest import wait_for


def config(tmp_path: Path, executor: dict[str, Any] | None) -> Any:
    return SimpleNamespace(path=str(tmp_path / "config.yaml"),
                           data={"executor": executor} if executor else {})  # fmt: skip


# -- which cluster ------------------------------------------------------------------------------
def test_the_option_beats_the_environment_and_the_file(tmp_path: Path) -> None:
    file = tmp_path / "s.json"
    file.write_text("{}")
    cfg = config(tmp_path, {"kind": "dask", "scheduler": "tcp://h:1"})
    target = resolve("h2:8786", None, None, cfg, env={"ORCHA_DASK": "tcp://h3:1"})
    assert target is not None and (target.address, target.source) == ("tcp://h2:8786", "--dask")
    target = resolve(None, None, None, cfg, env={"ORCHA_DASK": str(file)})
    assert target is not None and target.scheduler_file == str(file)
    target = resolve(None, None, None, cfg, env={})
    assert target is not None and target.address == "tcp://h:1" and not target.local
    target = resolve(None, None, True, None, env={"ORCHA_DASK": "tls://h:9"})
    assert target is not None and target.address == "tls://h:9" and target.local
    assert resolve(None, None, None, config(tmp_path, {"kind": "local"}), env={}) is None
    assert resolve(None, None, None, None, env={}) is None


@pytest.mark.parametrize(
    ("address", "file", "executor", "words"),
    [
        ("h:1", "f", None, "not both"),
        ("http://h:1", None, None, "not a Dask scheduler address"),
        ("h", None, None, "not a Dask scheduler address"),
        (None, "/nonexistent/s.json", None, "no scheduler file"),
        (None, None, {"kind": "dask"}, "give one of scheduler or scheduler_file"),
        (None, None, {"kind": "local", "scheduler": "tcp://h:1"}, "kind is not 'dask'"),
    ],
)
def test_invalid_targets_are_one_line_usage_errors(
    tmp_path: Path, address: str | None, file: str | None, executor: Any, words: str
) -> None:
    with pytest.raises(ConfigError, match=words) as e:
        resolve(address, file, None, config(tmp_path, executor), env={})
    assert e.value.exit_code == ExitCode.USAGE


def test_without_distributed_serve_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ExecutorError, match=r"pip install 'orcha\[dask\]'") as e:
        require_distributed()
    assert e.value.exit_code == ExitCode.EXECUTOR == 213


def test_neither_the_client_nor_a_local_service_imports_distributed() -> None:
    code = ("import sys, orcha.cli.app, orcha.service.build, orcha.cli.serve, "
            "orcha.service.dask.target, orcha.service.dask.inventory; "
            "print('distributed' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


# -- a worker's report ------------------------------------------------------------------------
FACTS = {"version": "1.0", "host": "gpu7", "cpus": 16, "mem_total": 64 << 30,
         "mem_available": 60 << 30, "load": 0.5, "gpus": ["0", "1"], "running": 0}  # fmt: skip


def test_a_report_is_what_the_host_measured_unless_the_worker_declares_it() -> None:
    assert read_report("tcp://10.0.0.7:4000", {"metrics": {}}) is None  # not yet
    report = read_report("tcp://10.0.0.7:4000", {"metrics": {"orcha": FACTS}, "name": 3})
    assert report is not None
    assert (report.name, report.host, report.cpus, report.gpus) == (
        "10.0.0.7:4000", "gpu7", 16, ("0", "1"),
    )  # fmt: skip
    declared = {"metrics": {"orcha": FACTS}, "name": "w1",
                "resources": {"CPU": 4, "GPU": 1, "MEM": 8e9}}  # fmt: skip
    report = read_report("tcp://10.0.0.7:4000", declared)
    assert report is not None
    assert (report.name, report.cpus, report.gpus, report.mem_total) == ("w1", 4, ("0",), 8e9)
    assert report.mem_available == 8e9  # no more than declared
    fake = read_report("a:1", {"metrics": {"orcha": {**FACTS, "gpus": []}},
                               "resources": {"GPU": 2}})  # fmt: skip
    assert fake is not None and fake.gpus == ("0", "1")  # declared GPUs on a host without
    assert report.refused("1.0") is None
    assert report.refused("1.1") == "version mismatch: worker has orcha 1.0, service 1.1"


def job(cpus: int = 1, gpus: int = 0, mem: int = 0) -> Any:
    return SimpleNamespace(schedule=SimpleNamespace(cpus=cpus, gpus=gpus, mem=mem))


def view(name: str, slots: int, used: int, gpus: int = 0, memory: int = 0) -> MachineView:
    return MachineView(name, slots, used, gpus, memory)


def test_why_waiting_names_the_scarcest_resource_and_the_best_worker() -> None:
    assert why_waiting(job(), [], []) == "no worker connected (start one: dask worker SCHEDULER)"
    workers = [view("w1", 8, 8, gpus=0), view("w2", 8, 2, gpus=2), view("w3", 4, 0)]
    assert why_waiting(job(gpus=4), workers, ["", "", ""]) == (
        "no worker has 4 free GPU(s) (best: w2 with 2)"
    )
    assert why_waiting(job(cpus=7), workers, ["", "", ""]) == (
        "no worker has 7 free CPU(s) (best: w2 with 6)"
    )
    busy = [view("w1", 8, 0, gpus=0), view("w2", 8, 0, gpus=0)]
    words = why_waiting(job(gpus=1), busy, ["", ""], gpus={"w1": 0, "w2": 2})
    assert words == "no worker has 1 free GPU(s) (best: w2 with 0)"
    memory = [view("w1", 8, 0, memory=1 << 30), view("w2", 8, 0, memory=3 << 30)]
    assert why_waiting(job(mem=4 << 30), memory, ["", ""]) == (
        "no worker has 4.0 GiB of free memory (best: w2 with 3.0 GiB)"
    )


def test_best_fit_tries_hosts_without_gpus_first_then_the_fullest() -> None:
    a = SimpleNamespace(name="a", inventory=("0",), free_slots=1)
    b = SimpleNamespace(name="b", inventory=(), free_slots=8)
    c = SimpleNamespace(name="c", inventory=(), free_slots=2)
    assert [m.name for m in best_fit([a, b, c])] == ["c", "b", "a"]  # type: ignore[list-item]


# -- the output buffer --------------------------------------------------------------------------
def test_a_full_buffer_stops_the_reading_and_the_end_comes_after_the_output() -> None:
    import asyncio

    from orcha.service.dask.stream import Buffer

    async def scenario() -> None:
        buffer = Buffer(limit=10)
        buffer.put(1, b"123")
        buffer.put(1, b"45")
        assert buffer.room.is_set()
        buffer.put(2, b"678901")
        assert not buffer.room.is_set()  # the pipes are not read until it drains
        buffer.end(3)
        msg = buffer.take(5)  # runs of one stream in one frame; output first, not the end
        assert (msg["at"], msg["out"], msg["code"]) == (0, [[1, b"12345"]], None)
        assert not buffer.room.is_set()  # sent is not acknowledged: still kept
        buffer.ack(5)
        assert buffer.room.is_set()
        msg = buffer.take(5)  # one item bigger than asked still goes out
        assert (msg["at"], msg["out"], msg["code"]) == (5, [[2, b"678901"]], 3)
        assert not buffer.done
        buffer.ack(11)
        assert buffer.done

    asyncio.run(scenario())


def test_a_resumed_stream_repeats_only_what_was_not_acknowledged() -> None:
    import asyncio

    from orcha.service.dask.stream import Buffer

    async def scenario() -> None:
        buffer = Buffer(limit=100)
        for chunk in (b"aa", b"bb", b"cc"):
            buffer.put(1, chunk)
        buffer.note(usage={"rss": 1.0})
        first = buffer.take(4)
        assert (first["at"], first["out"], first["usage"]) == (0, [[1, b"aabb"]], {"rss": 1.0})
        buffer.ack(2)  # "bb" was sent, then the connection broke before it was acknowledged
        buffer.rewind(2)
        again = buffer.take(100)
        assert (again["at"], again["out"], "usage" in again) == (2, [[1, b"bbcc"]], False)

    asyncio.run(scenario())


def test_a_stdin_connection_after_its_petition_ended_is_closed_at_once() -> None:
    import asyncio

    from orcha.service.dask.plugin import OrchaWorkerPlugin
    from orcha.service.dask.stream import serve_input

    class Comm:
        aborted = False

        async def read(self) -> dict[str, Any]:
            raise AssertionError("nothing is read: the petition has ended")

        def abort(self) -> None:
            self.aborted = True

    async def scenario() -> None:
        plugin = OrchaWorkerPlugin()
        r, w = os.pipe()
        fed = asyncio.get_running_loop().create_future()
        fed.set_result(w)  # its stdin, which no connection took
        plugin.stdins["a"] = fed
        plugin._unfeed("a")  # it ended
        plugin._unfeed("b")  # it ended before its stdin connection came
        assert os.read(r, 1) == b""  # a's stdin was closed: EOF
        os.close(r)
        for stream in ("a", "b"):
            comm = Comm()
            await asyncio.wait_for(serve_input(comm, plugin.stdins, stream), 5)
            assert comm.aborted and stream not in plugin.stdins

    asyncio.run(scenario())


def test_the_worker_says_whether_anything_is_left_under_its_spawner() -> None:
    from orcha.service.dask.plugin import OrchaWorkerPlugin
    from tests.conftest import wait_for

    # A shell stands for the spawner: its one child stands for what it holds.
    spawner = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    children = Path(f"/proc/{spawner.pid}/task/{spawner.pid}/children")
    child = 0
    try:
        assert wait_for(lambda: children.read_text().split(), timeout=10)
        (child,) = map(int, children.read_text().split())
        plugin = OrchaWorkerPlugin()
        plugin.link = SimpleNamespace(proc=SimpleNamespace(pid=spawner.pid))  # type: ignore[assignment]
        plugin.pids = {"running": child}
        assert plugin._strays() is False  # only commands still running
        plugin.pids = {}
        assert plugin._strays() is True  # something left: the service looks for it
    finally:
        if child:
            os.kill(child, signal.SIGKILL)
        spawner.kill()
        spawner.wait()


# -- the spawner --------------------------------------------------------------------------------
@pytest.fixture
def spawner() -> Any:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proc = subprocess.Popen(
        [sys.executable, "-m", "orcha.service.dask.spawner", str(theirs.fileno()),
         str(os.getpid()), "0.5"],
        pass_fds=[theirs.fileno()],
    )  # fmt: skip
    theirs.close()
    yield ours, proc
    ours.close()
    proc.wait(10)


def ask(
    sock: socket.socket, argv: list[str], cwd: str, stdin: bool = False
) -> tuple[dict[str, Any], list[int]]:
    env = {"PATH": "/bin:/usr/bin"}
    sock.send(json.dumps({"op": "spawn", "argv": argv, "cwd": cwd, "env": env,
                          "stdin": stdin}).encode())  # fmt: skip
    data, fds, _, _ = socket.recv_fds(sock, 1 << 16, 3)
    return json.loads(data), fds


def test_the_spawner_starts_reports_and_refuses_in_one_line(spawner: Any, tmp_path: Path) -> None:
    sock, _ = spawner
    msg, fds = ask(sock, ["sh", "-c", "echo out; echo err >&2; exit 4"], str(tmp_path))
    assert "pid" in msg and len(fds) == 2
    with os.fdopen(fds[0], "rb") as out, os.fdopen(fds[1], "rb") as err:
        assert (out.read(), err.read()) == (b"out\n", b"err\n")
    end = json.loads(sock.recv(4096))
    assert (end["exit"], end["code"]) == (msg["pid"], 4)
    assert end["cpu"] >= 0 and end["rss"] is None  # sh's peak, below the spawner's: unknown
    # With stdin: the write end of its stdin pipe comes third.
    msg, fds = ask(sock, ["cat"], str(tmp_path), stdin=True)
    assert len(fds) == 3
    os.write(fds[2], b"fed\n")
    os.close(fds[2])
    with os.fdopen(fds[0], "rb") as out, os.fdopen(fds[1], "rb") as err:
        assert (out.read(), err.read()) == (b"fed\n", b"")
    assert json.loads(sock.recv(4096))["code"] == 0
    msg, fds = ask(sock, ["true"], str(tmp_path / "missing"))
    assert fds == [] and msg["errno"] == errno.ENOTDIR
    assert "does not exist on" in msg["error"]
    msg, _ = ask(sock, ["no-such-command-orcha"], str(tmp_path))
    assert msg["errno"] == errno.ENOENT


def test_the_spawner_stops_every_tree_when_its_worker_goes(spawner: Any, tmp_path: Path) -> None:
    sock, proc = spawner
    script = "setsid sh -c '(sleep 4711 &); sleep 4712' & (sh -c 'sleep 4713 &' &); sleep 4714"
    _, fds = ask(sock, ["sh", "-c", script], str(tmp_path))
    for fd in fds:
        os.close(fd)

    def sleeps() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline"])
                if (p.info["cmdline"] or [""])[0] == "sleep"
                and (p.info["cmdline"][1:2] or [""])[0].startswith("471")]  # fmt: skip

    assert wait_for(lambda: len(sleeps()) == 4, timeout=20)
    # The double-forked ones are the spawner's now (a subreaper), not init's.
    assert all(p.ppid() != 1 for p in sleeps())
    sock.close()  # as when the worker dies: the spawner stops them all, then exits
    assert proc.wait(10) == 0
    assert wait_for(lambda: sleeps() == [], timeout=5)


# -- --on ----------------------------------------------------------------------------------------
def test_on_names_one_machine_by_name_host_or_address() -> None:
    from orcha.errors import PetitionError
    from orcha.protocol.schedule import Schedule
    from orcha.service.feasible import check_feasible
    from orcha.service.machines import LocalMachine
    from orcha.service.predicates import pinned

    assert Schedule.from_wire({"on": "w1"}).on == "w1"
    assert Schedule.from_wire({"on": "w1"}).to_wire() == {"on": "w1"}
    with pytest.raises(ValueError, match="spaces"):
        Schedule.from_wire({"on": "w 1"})
    local = LocalMachine(slots=2)
    check_feasible([local], Schedule(on="local"))
    with pytest.raises(PetitionError, match="no machine of this service is called so") as e:
        check_feasible([local], Schedule(on="elsewhere"))
    assert e.value.exit_code == ExitCode.REFUSED
    w1 = MachineView("w1", 4, 0, 0, 0, ("w1", "gpu7", "tcp://10.0.0.7:4000"))
    assert pinned(job_on("gpu7"), w1) is None
    assert pinned(job_on("tcp://10.0.0.7:4000"), w1) is None
    assert pinned(job_on("w2"), w1) == "runs only on w2"
    assert pinned(job_on(None), w1) is None


def job_on(where: str | None) -> Any:
    return SimpleNamespace(schedule=SimpleNamespace(on=where, cpus=1, gpus=0, mem=0))


def test_a_working_directory_missing_on_the_worker_is_a_start_error(tmp_path: Path) -> None:
    from orcha_plugins.shell import ShellKind

    said: list[str] = []

    def spawn(argv: list[str]) -> Any:
        raise NotADirectoryError(errno.ENOTDIR, f"the working directory {tmp_path} does not "
                                 "exist on gpu7")  # fmt: skip

    ctx = SimpleNamespace(params={"argv": ["true"]}, cwd=str(tmp_path), spawn=spawn,
                          fail=said.append)  # fmt: skip
    assert ShellKind().run(ctx) == ExitCode.START_FAILED  # type: ignore[arg-type]
    assert said == [f"the working directory {tmp_path} does not exist on gpu7"]


def test_the_shell_kind_checks_the_cwd_on_the_service_host_only_for_local_petitions(
    tmp_path: Path,
) -> None:
    from orcha.service.context import ServiceContext
    from orcha.service.machines import LocalMachine
    from orcha_plugins.shell import ShellKind
    from tests.unit.fake_machines import FakeMachine

    missing = str(tmp_path / "only-on-the-worker")
    spawned: list[Any] = []
    said: list[str] = []

    def ctx(local: bool) -> Any:
        return SimpleNamespace(params={"argv": ["true"]}, cwd=missing, local=local,
                               spawn=spawned.append, fail=said.append,
                               pump=lambda _: 0)  # fmt: skip

    # On a worker the service host's file system says nothing: the worker checks (205
    # from spawn if it is missing there too, as above).
    assert ShellKind().run(ctx(local=False)) == 0
    assert (spawned, said) == ([["true"]], [])
    assert ShellKind().run(ctx(local=True)) == ExitCode.START_FAILED
    assert said == [f"working directory {missing} does not exist on the service host"]
    assert spawned == [["true"]]  # not spawned again
    # The service's context says which, from the machine the petition was placed on.
    job = SimpleNamespace(id="p", petition=SimpleNamespace(params={}, cwd=missing, env={}),
                          cancel_event=None, attempt=1, gpu_ids=(), events=None)  # fmt: skip
    assert ServiceContext(job, print, LocalMachine(slots=1)).local is True  # type: ignore[arg-type]
    assert ServiceContext(job, print, FakeMachine("w1")).local is False  # type: ignore[arg-type]


def test_the_probe_tells_a_listening_scheduler_from_a_refused_port() -> None:
    from orcha.service.dask.cluster import _answers

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert _answers(f"tcp://127.0.0.1:{port}")
        assert _answers(f"127.0.0.1:{port}")  # Dask's scheme-less form
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: refused
        assert not _answers(f"tcp://127.0.0.1:{closed.getsockname()[1]}")
    assert not _answers("tcp://127.0.0.1:notaport")
    assert _answers("inproc://whatever")  # only TCP is probed


# -- a lost worker's petitions ------------------------------------------------------------------
class FakeWorker:
    """What Cluster.relocate asks of a machine."""

    def __init__(self, name: str, slots: int = 2) -> None:
        self.name, self.slots, self.free_slots = name, slots, slots
        self.aliases = (name, f"tcp://127.0.0.1:{len(name)}")
        self.free_gpu_count = 0

    def refresh(self) -> None:
        pass

    def free_memory(self) -> int:
        return 1 << 40

    def reserve(self, need: Any) -> tuple[str, ...]:
        self.free_slots -= need.cpus
        return ()

    def release(self, need: Any, gpus: Any) -> None:
        self.free_slots += need.cpus


def relocating(on: str | None, *machines: FakeWorker) -> tuple[Any, Any]:
    """A cluster whose scheduler has ``machines``, and a job of its first (lost), pinned
    ``on``, that has been cancelled (so that waiting for a machine ends at once)."""
    import threading

    from orcha.service.dask.cluster import Cluster

    scheduler = SimpleNamespace(lock=threading.RLock(), machines=list(machines))
    store = SimpleNamespace(changes=[])
    store.update_later = lambda seq, **fields: store.changes.append((seq, fields))
    service = SimpleNamespace(scheduler=scheduler, store=store)
    client = SimpleNamespace(scheduler=SimpleNamespace(address="tcp://s:1"), rpc=None)
    cluster = Cluster(service, SimpleNamespace(where="tcp://s:1"), client)  # type: ignore[arg-type]
    cancelled = threading.Event()
    cancelled.set()
    job = SimpleNamespace(id="pin", seq=1, placed=machines[0], machine=machines[0], gpu_ids=(),
                          lock=threading.Lock(), pids={1}, cancel_event=cancelled, attempt=1,
                          waits_for=None,
                          schedule=SimpleNamespace(on=on, cpus=1, gpus=0, mem=0))  # fmt: skip
    job.placed.slots = 0  # lost
    return cluster, job


def test_a_pinned_petition_waits_for_its_worker_to_run_again() -> None:
    lost, other = FakeWorker("w1"), FakeWorker("w2")
    cluster, job = relocating("w1", lost, other)
    assert cluster.relocate(job) is False  # not moved to w2: it waited (and was cancelled)
    assert job.machine is lost and other.free_slots == 2
    back = FakeWorker("w1")  # w1 rejoined (a new machine of that name)
    cluster, job = relocating("w1", lost, other, back)
    assert cluster.relocate(job) is True and job.machine is back
    cluster, job = relocating(None, lost, other)  # not pinned: any worker with room
    assert cluster.relocate(job) is True and job.machine is other


@pytest.mark.parametrize(
    ("on", "why"),
    [("w1", "worker w1 was lost; waiting for it to rejoin (--on) for attempt 2"),
     (None, "worker w1 was lost; waiting for a worker with room for attempt 2")],
)  # fmt: skip
def test_while_it_waits_for_a_worker_its_status_says_so_and_names_none_as_its_own(
    on: str | None, why: str
) -> None:
    """Its worker lost, a petition with a retry left waits for a worker (its own if
    pinned): still RUNNING (between attempts, as during --retry-delay), but its record
    names no machine and it says what it waits for, until it moves to one."""
    import threading

    lost, full = FakeWorker("w1"), FakeWorker("w2", slots=1)
    full.free_slots = 0
    cluster, job = relocating(on, lost, full)
    job.cancel_event = threading.Event()
    moved: list[bool] = []
    relocating_thread = threading.Thread(target=lambda: moved.append(cluster.relocate(job)))
    relocating_thread.start()
    try:
        assert wait_for(lambda: job.waits_for is not None)
        assert job.waits_for == why
        assert cluster.service.store.changes == [(1, {"machine": None})]  # it runs nowhere
        back = FakeWorker("w1")  # w1 rejoins (a new machine of that name), with room
        with cluster.scheduler.lock:
            cluster.scheduler.machines.append(back)
        relocating_thread.join(10)
    finally:
        job.cancel_event.set()
        relocating_thread.join(10)
    assert moved == [True] and job.machine is back and job.waits_for is None
    assert cluster.service.store.changes[-1] == (1, {"machine": "w1"})


def test_on_names_a_lost_worker_and_the_petition_waits_for_it() -> None:
    import time

    from orcha.errors import PetitionError
    from orcha.protocol.schedule import Schedule

    lost, other = FakeWorker("w1"), FakeWorker("w2")
    cluster, _ = relocating(None, lost)
    cluster.scheduler.machines[:] = [other]  # w1 was lost: no longer a machine
    for machine in (lost, other):
        machine.inventory = ()  # type: ignore[attr-defined]
        machine.total_memory = lambda: 1 << 40  # type: ignore[attr-defined]
    lost.state = "lost"  # type: ignore[attr-defined]
    cluster.gone[lost.aliases[1]] = (lost, time.time())  # type: ignore[assignment]
    cluster.check_feasible(Schedule(on="w1"))  # accepted: it waits
    with pytest.raises(PetitionError, match="no machine of this service is called so"):
        cluster.check_feasible(Schedule(on="w9"))
    waiting = SimpleNamespace(schedule=SimpleNamespace(on="w1", cpus=1, gpus=0, mem=0))
    why = cluster.summary(waiting, [other], ["runs only on w1"])  # type: ignore[arg-type]
    assert why == "worker w1 was lost; waiting for it to rejoin (--on)"


def test_an_attached_client_says_its_petition_was_interrupted_by_its_worker() -> None:
    from orcha.client.endings import end_code
    from orcha.errors import LostServiceError

    said: list[str] = []
    screen = SimpleNamespace(notice=said.append)
    end = {"state": "INTERRUPTED", "code": 1, "message": "worker w2 was lost"}
    assert end_code(end, "att", screen) == ExitCode.LOST_SERVICE  # type: ignore[arg-type]
    assert said == ["petition att was interrupted: worker w2 was lost (--retries reruns it)"]
    with pytest.raises(LostServiceError):  # no word of why: the service went away
        end_code({"state": "INTERRUPTED"}, "att", screen)  # type: ignore[arg-type]


def test_a_request_too_big_for_any_worker_names_where_a_worker_gets_its_slots() -> None:
    from orcha.errors import PetitionError
    from orcha.protocol.schedule import Schedule
    from orcha.service.dask.inventory import WorkerReport
    from orcha.service.dask.remote import WorkerMachine
    from orcha.service.feasible import check_feasible

    def worker(name: str, cpus: int) -> WorkerMachine:
        report = WorkerReport(address=f"tcp://127.0.0.1:{cpus}", name=name, host="h",
                              cpus=cpus, mem_total=1 << 30, mem_available=1 << 30, gpus=(),
                              load=0.0, version="x", running=0, last_seen=0.0)  # fmt: skip
        return WorkerMachine(report, SimpleNamespace(rpc=None), 1.0)

    with pytest.raises(PetitionError) as e:
        check_feasible([worker("w1", 2), worker("w2", 1)], Schedule(cpus=3))
    assert e.value.message == (
        "the petition asks for 3 CPUs but the largest machine of this service has 2 (worker "
        "w1: 'dask worker --resources CPU=N', else its host's cores); ask for fewer with --cpus"
    )


# -- what Dask's client logs --------------------------------------------------------------------
async def _reconnect() -> None:  # as distributed.Client._reconnect, cancelled by close()
    raise asyncio.CancelledError


def test_a_cancelled_reconnect_of_a_replaced_client_is_one_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from orcha.service.dask.client_log import quiet_cancelled_tasks

    quiet_cancelled_tasks()
    quiet_cancelled_tasks()  # once is enough: no second line for one record
    dask_client = logging.getLogger("distributed.client")
    caplog.set_level(logging.INFO)
    for error in (asyncio.CancelledError, ValueError):
        try:
            if error is ValueError:
                raise ValueError("a real failure")
            asyncio.run(_reconnect())
        except BaseException as e:
            dask_client.exception(e)  # what distributed.utils.log_errors does
    lines = [(r.name, r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert lines == [
        ("orcha.service.dask", "INFO",
         "a replaced Dask client's reconnect was cancelled as it was closed", False),
        ("distributed.client", "ERROR", "a real failure", True),  # its traceback kept
    ]  # fmt: skip
