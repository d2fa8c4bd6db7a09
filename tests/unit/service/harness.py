"""An in-process harness for the service core.

The real handlers, scheduler, runner, records and event fan-out, composed by
``build_service`` in a temporary directory, driven without sockets or subprocesses: a
fake machine (:class:`FakeHost`), fake process control (:class:`FakeProcs`, which
records what it was asked to signal), a fake clock, a ``gate`` petition kind whose
petitions run until the test opens their gate (or they are cancelled), and a ``fanout``
kind whose petitions submit child petitions and gather their exit codes. Requests go
through ``orcha.service.handlers.perform``, the very path a session's requests take.

Nothing here sleeps to synchronise: waits are on conditions and events, each with a
deadline that fails the test rather than hanging it.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from orcha.address import parse_address
from orcha.errors import PetitionError, wire_name
from orcha.kinds import Kind
from orcha.plugins import BasePlugin
from orcha.plugins.discovery import LoadedPlugin
from orcha.protocol.operations import OPERATIONS
from orcha.service.build import build_service
from orcha.service.handlers import operation_named, perform
from orcha.service.host import Host
from orcha.service.job import Detached, End
from orcha.service.peer import Peer
from orcha.service.procs import ProcessControl
from orcha.service.service import Service
from orcha.settings import Settings

#: Longest any wait of the harness lasts before it fails the test.
DEADLINE = 10.0


class FakeClock:
    """Time that moves only when the test says (starts at the real time, so records
    written with the real clock by the petition's own bookkeeping stay comparable)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeHost(Host):
    """A machine with the CPUs, memory and GPUs the test gives it."""

    def __init__(self, cpus: int = 2, memory: int = 16 << 30, gpus: tuple[str, ...] = ()):
        self.cpus = cpus
        self.memory = memory
        self.available = memory
        self.gpus = list(gpus)

    def cpu_count(self) -> int:
        return self.cpus

    def total_memory(self) -> int:
        return self.memory

    def available_memory(self) -> int:
        return self.available

    def discover_gpus(self) -> list[str]:
        return list(self.gpus)


class FakeProcs(ProcessControl):
    """Process control that touches no process: it records what it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped: list[tuple[list[int], str | None, bool]] = []
        self.signalled: list[tuple[list[int], str | None, int]] = []

    def stop_tree(self, roots: Any, token: str | None, grace: float, force: bool = False) -> int:
        self.stopped.append((list(roots), token, force))
        return 0

    def signal_tree(self, roots: Any, token: str | None, sig: int) -> int:
        self.signalled.append((list(roots), token, sig))
        return 0


class Gates:
    """The petitions of the ``gate`` kind: which have started, and their exit codes once
    the test opens their gates."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open: dict[str, int] = {}
        self.started: list[str] = []  # petition IDs in the order they started

    def run(self, petition_id: str, cancelled: threading.Event) -> int:
        with self._cond:
            self.started.append(petition_id)
            self._cond.notify_all()
            deadline = time.monotonic() + DEADLINE
            # Short waits: a cancel sets the context's event, which cannot notify us.
            while petition_id not in self._open and not cancelled.is_set():
                if time.monotonic() > deadline:
                    raise AssertionError(f"gate {petition_id} was never opened")
                self._cond.wait(0.005)
            return self._open.pop(petition_id, 130)

    def open(self, petition_id: str, code: int = 0) -> None:
        with self._cond:
            self._open[petition_id] = code
            self._cond.notify_all()

    def wait_started(self, petition_id: str) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: petition_id in self.started, DEADLINE):
                raise AssertionError(f"petition {petition_id} never started")


class GateKind(Kind):
    """Writes ``params["out"]`` (if any), then waits for its gate; exits with the code
    the gate was opened with."""

    name = "gate"
    help = "a test petition that runs until the test lets it end"

    def __init__(self, gates: Gates) -> None:
        self.gates = gates

    def run(self, ctx: Any) -> int:
        if ctx.params.get("out"):
            ctx.write(ctx.params["out"])
        return self.gates.run(ctx.id, ctx.cancelled)


class FanoutKind(Kind):
    """Submits a child per entry of ``params["children"]`` (``{"kind": "gate",
    "params": {}, "id": None, "requests": {}}`` by default), then waits for each in turn
    (with ``stream``, copying its output into its own first) and records their codes as
    its outcome, ``{"codes": [...]}``; exits with the largest (0 with ``lenient``). With
    ``leave`` it returns at once, leaving its children to the service. The handles of
    each petition's children are kept in :attr:`children` by petition ID."""

    name = "fanout"
    help = "a test petition that fans out to child petitions and gathers their codes"

    def __init__(self) -> None:
        self.children: dict[str, list[Any]] = {}

    def run(self, ctx: Any) -> int:
        params = ctx.params
        children = [
            ctx.submit(c.get("kind", "gate"), c.get("params"), id=c.get("id"),
                       **c.get("requests", {}))
            for c in params.get("children", [])
        ]  # fmt: skip
        self.children[ctx.id] = children
        if params.get("leave"):
            return 0
        codes = []
        for handle in children:
            if params.get("stream"):
                for stream, data in handle.output():
                    (ctx.write if stream == "stdout" else ctx.write_err)(data)
            codes.append(handle.wait())
        ctx.set_outcome({"codes": codes})
        return 0 if params.get("lenient") else max(codes, default=0)


def gate_plugin(gates: Gates, fanout: FanoutKind | None = None) -> LoadedPlugin:
    """What plugin discovery would yield for a plugin serving the gate and fanout kinds."""
    kinds: dict[str, Kind] = {"gate": GateKind(gates), "fanout": fanout or FanoutKind()}

    class GatePlugin(BasePlugin):
        name = "test"

        def kinds(self) -> list[Kind]:
            return list(kinds.values())

    return LoadedPlugin("test", "test harness", __name__, GatePlugin(), kinds=kinds)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class FakePeer(Peer):
    """A client in process: keeps the frames pushed to it and the queues it reads."""

    def __init__(self) -> None:
        super().__init__()
        self._cond = threading.Condition()
        self.frames: list[dict[str, Any]] = []
        self.queues: dict[int, Any] = {}

    def deliver(self, frame: bytes) -> None:
        with self._cond:
            self.frames.append(json.loads(frame))
            self._cond.notify_all()

    def watch_queue(self, handle: int, job: Any, queue: Any) -> None:
        self.queues[handle] = queue

    def expect(self, **fields: Any) -> dict[str, Any]:
        """The first frame pushed to this peer that has all of ``fields``."""

        def found() -> dict[str, Any] | None:
            for frame in self.frames:
                if all(frame.get(k) == v for k, v in fields.items()):
                    return frame
            return None

        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None, DEADLINE):
                raise AssertionError(f"no frame with {fields}; got {self.frames}")
            frame = found()
            assert frame is not None
            return frame

    def read_until_end(self, handle: int) -> list[Any]:
        """The items of an attached petition's queue, up to its End (or Detached)."""
        queue = self.queues[handle]
        items: list[Any] = []
        while True:
            item = queue.get(timeout=DEADLINE)
            items.append(item)
            if isinstance(item, (End, Detached)):
                self.detach(handle)
                return items


class Harness:
    """The service core of one state directory, started, with a client to drive it."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        max_running: int = 2,
        aging: float = 0.0,
        clock: FakeClock | None = None,
        gpus: tuple[str, ...] = (),
    ) -> None:
        self.clock = clock or FakeClock()
        self.host = FakeHost(cpus=max_running)
        self.procs = FakeProcs()
        self.gates = Gates()
        self.fanout = FanoutKind()
        self.settings = Settings(
            address=parse_address(str(tmp_path / "orcha.sock")),
            runtime_dir=str(tmp_path),
            state_dir=str(tmp_path / "state"),
            grace=1.0,
            max_running=max_running,
            gpus=gpus,
            aging=aging,
        )
        self.service: Service = build_service(
            self.settings,
            plugins=[gate_plugin(self.gates, self.fanout)],
            host=self.host,
            procs=self.procs,
            clock=self.clock,
        )
        self.service.open_store()
        self.service.start()
        self.client = self.peer()

    def peer(self) -> FakePeer:
        """Another client."""
        peer = FakePeer()
        self.service.peer_opened(peer)
        return peer

    def request(self, op: str, peer: FakePeer | None = None, **fields: Any) -> dict[str, Any]:
        """The reply to one request (frames other than the reply are left out). Checks
        it against the operations table: only declared fields, only declared errors."""
        declared = OPERATIONS.get(op)
        try:
            operation = operation_named(op)
            answer, _ = perform(self.service, peer or self.client, operation, fields)
        except PetitionError as e:
            answer = {"ok": False, "error": wire_name(e.exit_code), "message": e.message}
        else:
            answer = {"ok": True, **answer}
        # As plain data crosses the wire (tuples as lists, keys as strings).
        reply: dict[str, Any] = json.loads(json.dumps({"re": op, **answer}, default=_text))
        if declared is not None and reply["ok"]:
            assert set(reply) - {"re", "ok"} <= set(declared.reply), reply
        elif declared is not None:
            assert reply["error"] in declared.errors, reply
        return reply

    def call(self, op: str, peer: FakePeer | None = None, **fields: Any) -> dict[str, Any]:
        """The reply to one request that must succeed."""
        reply = self.request(op, peer, **fields)
        assert reply["ok"] is True, reply
        return reply

    def submit(
        self, petition_id: str, peer: FakePeer | None = None, attach: bool = False, **fields: Any
    ) -> dict[str, Any]:
        """Submit a petition (of kind ``gate`` unless ``kind`` is given; ``params``,
        ``priority``, ``schedule`` in fields)."""
        return self.request(
            "submit", peer, id=petition_id, cwd="/", env={}, attach=attach,
            **{"kind": "gate", "params": {}, **fields},
        )  # fmt: skip

    def run_to_end(self, petition_id: str, code: int = 0) -> dict[str, Any]:
        """Open the gate of a running petition; its summary once it has ended."""
        waiter = self.peer()
        assert self.call("wait", waiter, ids=[petition_id])["pending"] == [petition_id]
        self.gates.open(petition_id, code)
        return waiter.expect(event="ended", id=petition_id)

    def record(self, petition_id: str) -> dict[str, Any]:
        """The status record of a petition."""
        (row,) = self.call("status", ids=[petition_id])["petitions"]
        return dict(row)

    def wait_ended(self, *ids: str) -> None:
        """Until each of ``ids`` has ended (without touching their gates)."""
        waiter = self.peer()
        for petition_id in self.call("wait", waiter, ids=list(ids))["pending"]:
            waiter.expect(event="ended", id=petition_id)

    def close(self) -> None:
        """End every petition, then stop the plugins and close the records."""
        service = self.service
        live = [job.id for job in service.scheduler.jobs()]
        for job in service.scheduler.jobs():
            service.cancel(job, "the test is over", by_client=False)
        if live:
            self.wait_ended(*[i for i in live if service.scheduler.get(i) is not None])
        service.plugins.stop()
        service.close()
