"""What runs inside each Dask worker: host facts, the spawner, the output buffers.

The service registers :class:`OrchaWorkerPlugin` with ``Client.register_plugin`` (it
reaches the workers there now and those that join later). On each worker it

* puts the host's facts into ``worker.metrics["orcha"]`` (they reach the scheduler with
  each heartbeat, and the service reads them from ``scheduler_info()``);
* starts the worker's :mod:`~orcha.service.dask.spawner` (from the event loop's thread:
  the spawner's death signal is tied to the thread that forked it);
* keeps each running petition's output in a bounded :class:`Buffer` the service reads
  through an :class:`OutputPort` actor (pulled: nothing is pushed into the scheduler).

Task and run functions here are coroutines: they run on the worker's event loop and
must never block it (blocking work goes to ``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import socket
import subprocess
import sys
from typing import Any

from distributed import WorkerPlugin, get_worker

import orcha
from orcha.defaults import (
    DASK_BUFFER_BYTES,
    DASK_FORGET_SECONDS,
    DASK_POLL_SECONDS,
    DASK_READ_BYTES,
    DRAIN_SECONDS,
)

PLUGIN_NAME = "orcha"
STDOUT, STDERR = 1, 2


def host_facts(running: int) -> dict[str, Any]:
    """What a worker's host reports: CPUs, memory total and available (bytes), load (1
    minute), GPUs (nvidia-smi), orcha's version, petitions running."""
    import psutil

    from orcha.service.host import Host

    host = Host()
    return {
        "version": orcha.__version__,
        "host": socket.gethostname(),
        "cpus": host.cpu_count(),
        "mem_total": host.total_memory(),
        "mem_available": psutil.virtual_memory().available,
        "load": os.getloadavg()[0],
        "gpus": list(_GPUS) if _GPUS is not None else [],
        "running": running,
    }


_GPUS: list[str] | None = None  # asked of nvidia-smi once per worker


class Buffer:
    """One petition's output on the worker, bounded: when it holds ``limit`` bytes the
    pipes are no longer read, so the petition blocks as it would on a full pipe."""

    def __init__(self, limit: int = DASK_BUFFER_BYTES) -> None:
        self.items: collections.deque[tuple[int, bytes]] = collections.deque()
        self.size = 0
        self.limit = limit
        self.code: int | None = None  # set once: the end record
        self.changed = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()

    def put(self, stream: int, data: bytes) -> None:
        self.items.append((stream, data))
        self.size += len(data)
        if self.size >= self.limit:
            self.room.clear()
        self.changed.set()

    def end(self, code: int) -> None:
        self.code = code
        self.changed.set()

    def take(self, most: int) -> tuple[list[tuple[int, bytes]], int | None]:
        """Up to ``most`` bytes of output, and the exit code once all output was taken."""
        out: list[tuple[int, bytes]] = []
        taken = 0
        while self.items and (not out or taken + len(self.items[0][1]) <= most):
            stream, data = self.items.popleft()
            out.append((stream, data))
            taken += len(data)
        self.size -= taken
        if self.size < self.limit:
            self.room.set()
        if not self.items:
            self.changed.clear()
        return out, (self.code if not self.items else None)


class SpawnerLink:
    """The worker's end of its spawner's socket (used on the event loop only)."""

    def __init__(self, grace: float) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orcha.service.dask.spawner", str(child.fileno()),
             str(os.getpid()), str(grace)],
            pass_fds=[child.fileno()], stdin=subprocess.DEVNULL,
        )  # fmt: skip
        child.close()
        self.sock = parent
        self.sock.setblocking(False)
        self.replies: collections.deque[asyncio.Future[tuple[dict[str, Any], list[int]]]] = (
            collections.deque()
        )
        self.exits: dict[int, asyncio.Future[int]] = {}
        self.early: dict[int, int] = {}
        self.lock = asyncio.Lock()
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, 2)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            for reply in self.replies:
                reply.set_exception(OSError("the spawner is gone"))
            for exit_fut in self.exits.values():
                if not exit_fut.done():
                    exit_fut.set_result(-9)
            return
        msg = json.loads(data)
        if "exit" in msg:
            done = self.exits.pop(msg["exit"], None)
            if done is not None and not done.done():
                done.set_result(int(msg["code"]))
            elif done is None:
                self.early[msg["exit"]] = int(msg["code"])
            return
        reply = self.replies.popleft()
        reply.set_result((msg, list(fds)))

    async def spawn(
        self, argv: list[str], cwd: str, env: dict[str, str]
    ) -> tuple[int, int, int, asyncio.Future[int]]:
        """Start ``argv``: its PID, its stdout and stderr read ends, and its exit code to
        come. OSError with the spawner's words if it could not be started."""
        async with self.lock:  # replies come back in the order asked
            fut = asyncio.get_running_loop().create_future()
            self.replies.append(fut)
            self.sock.send(json.dumps({"op": "spawn", "argv": argv, "cwd": cwd, "env": env})
                           .encode())  # fmt: skip
            msg, fds = await fut
        if "error" in msg:
            raise OSError(msg.get("errno", 0), msg["error"])
        pid = int(msg["pid"])
        done = asyncio.get_running_loop().create_future()
        if pid in self.early:
            done.set_result(self.early.pop(pid))
        else:
            self.exits[pid] = done
        return pid, fds[0], fds[1], done

    def close(self) -> None:
        try:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        except RuntimeError:
            pass
        self.sock.close()  # the spawner stops what is left and exits


class OrchaWorkerPlugin(WorkerPlugin):
    """orcha's part of a Dask worker (see the module's docstring)."""

    name = PLUGIN_NAME
    idempotent = True

    def __init__(self, grace: float = 5.0) -> None:
        self.grace = grace
        self.buffers: dict[str, Buffer] = {}
        self.pids: dict[str, int] = {}
        self.link: SpawnerLink | None = None

    async def setup(self, worker: Any) -> None:
        global _GPUS
        if _GPUS is None:
            from orcha.service.host import Host

            _GPUS = await asyncio.to_thread(lambda: list(Host().discover_gpus()))
        self.link = SpawnerLink(self.grace)
        worker.metrics[PLUGIN_NAME] = lambda w: host_facts(len(self.pids))

    async def teardown(self, worker: Any) -> None:
        worker.metrics.pop(PLUGIN_NAME, None)
        if self.link is not None:
            self.link.close()

    async def run(self, token: str, argv: list[str], cwd: str, env: dict[str, str]) -> int:
        """Run one petition's command: its output into its buffer, then its end record;
        returns its exit code. A start error ends it at once (code 127 or 126)."""
        # The service's first read may come first and create it.
        buffer = self.buffers.setdefault(token, Buffer())
        assert self.link is not None
        try:
            pid, out_fd, err_fd, done = await self.link.spawn(argv, cwd, env)
        except OSError as e:
            buffer.put(STDERR, f"orcha: {e.strerror or e}\n".encode())
            buffer.put(0, json.dumps({"start_error": e.strerror, "errno": e.errno}).encode())
            buffer.end(127 if e.errno == 2 else 126)
            self._forget_later(token, buffer)
            return buffer.code or 0
        self.pids[token] = pid
        buffer.put(0, json.dumps({"pid": pid}).encode())  # stream 0: orcha's own record
        readers = [
            asyncio.ensure_future(self._pump(fd, stream, buffer))
            for fd, stream in ((out_fd, STDOUT), (err_fd, STDERR))
        ]
        code = await done
        # What it wrote before it exited is in its pipes; a process it left running may
        # hold them open: take what comes within the drain time, not more.
        _, pending = await asyncio.wait(readers, timeout=DRAIN_SECONDS)
        for task in pending:
            task.cancel()
        self.pids.pop(token, None)
        buffer.end(code)
        self._forget_later(token, buffer)
        return code

    def _forget_later(self, token: str, buffer: Buffer) -> None:
        """Drop ``buffer`` if its service has not read it to its end in a while."""

        def forget() -> None:
            if self.buffers.get(token) is buffer:
                del self.buffers[token]

        asyncio.get_running_loop().call_later(DASK_FORGET_SECONDS, forget)

    async def _pump(self, fd: int, stream: int, buffer: Buffer) -> None:
        loop = asyncio.get_running_loop()
        os.set_blocking(fd, False)
        readable = asyncio.Event()
        loop.add_reader(fd, readable.set)
        try:
            while True:
                await buffer.room.wait()
                await readable.wait()
                readable.clear()
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not data:
                    return
                buffer.put(stream, data)
        finally:
            loop.remove_reader(fd)
            os.close(fd)

    async def read(
        self, token: str, wait: float = DASK_POLL_SECONDS, most: int = DASK_READ_BYTES
    ) -> tuple[list[tuple[int, bytes]], int | None]:
        """The next output of petition ``token`` (waiting up to ``wait`` s for some), and
        its exit code once everything was read (its buffer is then dropped). A read may
        come before the petition's task: it waits for it the same way."""
        buffer = self.buffers.setdefault(token, Buffer())
        if not buffer.items and buffer.code is None:
            try:
                await asyncio.wait_for(buffer.changed.wait(), wait)
            except asyncio.TimeoutError:
                pass
        items, code = buffer.take(most)
        if code is not None:
            self.buffers.pop(token, None)
        return items, code


def _plugin() -> OrchaWorkerPlugin:
    plugin = get_worker().plugins[PLUGIN_NAME]
    assert isinstance(plugin, OrchaWorkerPlugin)
    return plugin


async def run_petition(token: str, argv: list[str], cwd: str, env: dict[str, str]) -> int:
    """The Dask task of one petition's command (pinned to its worker by the service)."""
    return await _plugin().run(token, argv, cwd, env)


class OutputPort:
    """The actor through which the service reads petitions' output on one worker (a
    direct connection from the service to the worker, not through the scheduler)."""

    async def read(self, token: str, wait: float) -> tuple[list[tuple[int, bytes]], int | None]:
        return await _plugin().read(token, wait)


async def stop_tree(
    token: str, pid: int | None, grace: float, force: bool, sig: int = 0,
    dask_worker: Any = None,
) -> int:  # fmt: skip
    """Run through ``Client.run`` on one worker: stop the petition's tree there (TERM,
    ``grace``, KILL; ``force``: KILL at once), or send it ``sig`` if given. The same code
    as on the service's own host (:class:`~orcha.service.procs.ProcessControl`)."""
    from orcha.service.procs import ProcessControl

    plugin = dask_worker.plugins.get(PLUGIN_NAME) if dask_worker is not None else None
    if pid is None and isinstance(plugin, OrchaWorkerPlugin):
        pid = plugin.pids.get(token)
    roots = [pid] if pid else []
    control = ProcessControl()
    if sig:
        return await asyncio.to_thread(control.signal_tree, roots, token, sig)
    return await asyncio.to_thread(control.stop_tree, roots, token, grace, force)
