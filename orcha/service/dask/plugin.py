"""What runs inside each Dask worker: host facts, the spawner, the output buffers.

The service registers :class:`OrchaWorkerPlugin` with ``Client.register_plugin`` (it
reaches the workers there now and those that join later). On each worker it

* puts the host's facts into ``worker.metrics["orcha"]`` (they reach the scheduler with
  each heartbeat, and the service reads them from ``scheduler_info()``);
* starts the worker's :mod:`~orcha.service.dask.spawner` (from the event loop's thread:
  the spawner's death signal is tied to the thread that forked it);
* keeps each running petition's output in a bounded :class:`~.stream.Buffer` and serves
  it (and the petition's stdin) over a direct connection from the service
  (:mod:`~orcha.service.dask.stream`: nothing goes through the scheduler);
* measures each running petition's tree (``top``, usage events, ``--mem``).

Task and run functions here are coroutines: they run on the worker's event loop and
must never block it (blocking work goes to ``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from distributed import WorkerPlugin, get_worker

import orcha
from orcha.defaults import (
    DASK_FORGET_SECONDS,
    DASK_MEASURE_SECONDS,
    DASK_ORPHAN_SECONDS,
    DRAIN_SECONDS,
    PIPE_CHUNK,
    TRACK_SECONDS,
)
from orcha.service.dask.stream import INPUT_OP, OUTPUT_OP, Buffer, serve_input, serve_output

log = logging.getLogger("orcha.service.dask")
PLUGIN_NAME = "orcha"
#: A command's end, from the spawner: exit code, CPU seconds, peak resident bytes.
Exit = tuple[int, float | None, int | None]
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
        self.exits: dict[int, asyncio.Future[Exit]] = {}
        self.early: dict[int, Exit] = {}
        self.lock = asyncio.Lock()
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, 3)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            for reply in self.replies:
                reply.set_exception(OSError("the spawner is gone"))
            for exit_fut in self.exits.values():
                if not exit_fut.done():
                    exit_fut.set_result((-9, None, None))
            return
        msg = json.loads(data)
        if "exit" in msg:
            end = (int(msg["code"]), msg.get("cpu"), msg.get("rss"))
            done = self.exits.pop(msg["exit"], None)
            if done is not None and not done.done():
                done.set_result(end)
            elif done is None:
                self.early[msg["exit"]] = end
            return
        reply = self.replies.popleft()
        reply.set_result((msg, list(fds)))

    async def spawn(
        self, argv: list[str], cwd: str, env: dict[str, str], stdin: bool = False
    ) -> tuple[int, list[int], asyncio.Future[Exit]]:
        """Start ``argv``: its PID, the read ends of its stdout and stderr pipes (and,
        with ``stdin``, the write end of its stdin's), and its end to come (exit code,
        CPU seconds, peak RSS: the spawner's ``wait4``). OSError with the spawner's
        words if it could not be started."""
        async with self.lock:  # replies come back in the order asked
            fut = asyncio.get_running_loop().create_future()
            self.replies.append(fut)
            self.sock.send(json.dumps({"op": "spawn", "argv": argv, "cwd": cwd, "env": env,
                                       "stdin": stdin}).encode())  # fmt: skip
            msg, fds = await fut
        if "error" in msg:
            raise OSError(msg.get("errno", 0), msg["error"])
        pid = int(msg["pid"])
        done = asyncio.get_running_loop().create_future()
        if pid in self.early:
            done.set_result(self.early.pop(pid))
        else:
            self.exits[pid] = done
        return pid, fds, done

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
        # By stream (one per start of a petition's command: a retry gets a new one).
        self.buffers: dict[str, Buffer] = {}
        self.stdins: dict[str, asyncio.Future[int]] = {}
        self.ends: dict[str, asyncio.Future[int]] = {}
        self.started: set[str] = set()
        self._tasks: set[asyncio.Future[int]] = set()
        # By petition token (what stopping and pausing name).
        self.pids: dict[str, int] = {}
        self.streams: dict[str, str] = {}
        self.limits: dict[str, int] = {}  # --mem
        self.graces: dict[str, float] = {}
        # By stream: the service's output connections open now (its liveness, as seen
        # here: a killed service closes them, and its petitions must not outlive it).
        self.readers: dict[str, int] = {}
        self.link: SpawnerLink | None = None
        self._watch: asyncio.Task[None] | None = None

    async def setup(self, worker: Any) -> None:
        global _GPUS
        if _GPUS is None:
            from orcha.service.host import Host

            _GPUS = await asyncio.to_thread(lambda: list(Host().discover_gpus()))
        self.link = SpawnerLink(self.grace)
        worker.metrics[PLUGIN_NAME] = lambda w: host_facts(len(self.pids))
        worker.handlers[OUTPUT_OP] = self.serve_output
        worker.handlers[INPUT_OP] = self.serve_input

    async def teardown(self, worker: Any) -> None:
        worker.metrics.pop(PLUGIN_NAME, None)
        worker.handlers.pop(OUTPUT_OP, None)
        worker.handlers.pop(INPUT_OP, None)
        if self._watch is not None:
            self._watch.cancel()
        if self.link is not None:
            self.link.close()

    async def serve_output(
        self, comm: Any, stream: str, offset: int = 0, run: dict[str, Any] | None = None
    ) -> Any:
        """Stream ``stream``'s output from ``offset``; first start its command (``run``:
        :meth:`run`'s arguments) unless it was started already (a resumed connection
        sends it again, in case the first never arrived: it never runs twice)."""
        if run is not None and stream not in self.started:
            self.started.add(stream)
            task = asyncio.ensure_future(self.run(stream, **run))
            self._tasks.add(task)  # held: the loop keeps only weak references
            task.add_done_callback(self._tasks.discard)
        self.readers[stream] = self.readers.get(stream, 0) + 1
        try:
            return await serve_output(comm, self.buffers, stream, offset)
        finally:
            self.readers[stream] -= 1
            if not self.readers[stream]:
                del self.readers[stream]
                asyncio.get_running_loop().call_later(DASK_ORPHAN_SECONDS, self._orphaned, stream)

    def _orphaned(self, stream: str) -> None:
        """``stream``'s last connection closed :data:`DASK_ORPHAN_SECONDS` ago. If its
        petition still runs and the service has not resumed the stream, the service is
        gone (killed, its host lost): stop the petition's tree, TERM, its grace, KILL, as
        the guard does for a dead service's local petitions."""
        if self.readers.get(stream):
            return  # resumed
        token = next((t for t, s in self.streams.items() if s == stream), None)
        pid = self.pids.get(token or "")
        if token is None or pid is None:
            return  # it has ended (or never started)
        grace = self.graces.get(token, self.grace)
        log.warning("orcha: the service's stream of petition %s closed and was not "
                    "resumed: the service is gone; stopping its tree (grace %g s)",
                    token[:8], grace)  # fmt: skip
        task = asyncio.ensure_future(stop_tree(token, pid, grace, False))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def serve_input(self, comm: Any, stream: str) -> Any:
        return await serve_input(comm, self.stdins, stream)

    async def run(
        self, stream: str, token: str, argv: list[str], cwd: str, env: dict[str, str],
        stdin: bool = False, mem: int = 0, grace: float | None = None,
    ) -> int:  # fmt: skip
        """Run one petition's command (started by the service's ``orcha_output``
        connection ``stream``, not by a Dask task: that costs the scheduler's round trip
        and its batching): its output into its buffer, then its end record; returns its
        exit code. A start error ends it at once (code 127 or 126). ``stdin``: its stdin
        is fed by the service (else /dev/null); ``mem``: its ``--mem`` in bytes (0:
        none), watched with its use; ``grace``: its grace period, should its service
        die (:meth:`_orphaned`)."""
        buffer = self.buffers.setdefault(stream, Buffer())
        if grace is not None:
            self.graces[token] = grace
        try:
            code = await self._run(stream, token, buffer, argv, cwd, env, stdin, mem)
        except BaseException:
            if buffer.code is None:
                buffer.end(-9)  # never leave the service waiting for an end
            raise
        finally:
            self.graces.pop(token, None)
            self._forget_later(stream, buffer)
        end = self.ends.setdefault(stream, asyncio.get_running_loop().create_future())
        if not end.done():
            end.set_result(code)
        return code

    async def _run(
        self, stream: str, token: str, buffer: Buffer, argv: list[str], cwd: str,
        env: dict[str, str], stdin: bool, mem: int,
    ) -> int:  # fmt: skip
        assert self.link is not None
        try:
            pid, fds, done = await self.link.spawn(argv, cwd, env, stdin)
        except OSError as e:
            buffer.put(STDERR, f"orcha: {e.strerror or e}\n".encode())
            buffer.put(0, json.dumps({"start_error": e.strerror, "errno": e.errno}).encode())
            buffer.end(127 if e.errno == 2 else 126)
            self._unfeed(stream)
            return buffer.code or 0
        self.pids[token] = pid
        self.streams[token] = stream
        if mem:
            self.limits[token] = mem
        if self._watch is None or self._watch.done():
            self._watch = asyncio.ensure_future(self._measure())
        buffer.put(0, json.dumps({"pid": pid}).encode())  # stream 0: orcha's own record
        if stdin:
            os.set_blocking(fds[2], False)
            feed = self.stdins.setdefault(stream, asyncio.get_running_loop().create_future())
            if feed.done():  # the service gave up on it already
                os.close(fds[2])
            else:
                feed.set_result(fds[2])
        readers = [
            asyncio.ensure_future(self._pump(fd, which, buffer))
            for fd, which in ((fds[0], STDOUT), (fds[1], STDERR))
        ]
        code, cpu, rss = await done
        # What it wrote before it exited is in its pipes; a process it left running may
        # hold them open: read on while it comes (or while the service is slow to take
        # it), and stop waiting only when they stay idle for the drain time.
        await _drain(readers, buffer)
        self._unfeed(stream)
        self.pids.pop(token, None)
        self.streams.pop(token, None)
        self.limits.pop(token, None)
        end = {"rusage": [cpu, rss], "strays": self._strays()}
        buffer.put(0, json.dumps(end).encode())
        buffer.end(code)
        return code

    def _strays(self) -> bool:
        """Whether anything may be left of a petition whose command ended: the spawner
        is a subreaper, so what a command leaves behind becomes its child. False only
        when its only children are the commands still running (then the service skips
        a round trip to look for leftovers); True if that cannot be told."""
        assert self.link is not None
        spawner = self.link.proc.pid
        try:
            with open(f"/proc/{spawner}/task/{spawner}/children") as f:
                children = {int(pid) for pid in f.read().split()}
        except (OSError, ValueError):
            return True
        return not children <= set(self.pids.values())

    def _unfeed(self, stream: str) -> None:
        """The petition ended (or never started): close its stdin if no connection took
        it, and leave word (-1) for a connection that comes late (a command that ended
        at once): it must not wait for a stdin that will never come."""
        feed = self.stdins.get(stream)
        if feed is not None and feed.done():
            if feed.result() >= 0:
                os.close(feed.result())
        elif feed is not None:
            feed.set_result(-1)
        closed = asyncio.get_running_loop().create_future()
        closed.set_result(-1)
        self.stdins[stream] = closed

    def _forget_later(self, stream: str, buffer: Buffer) -> None:
        """Drop ``buffer`` if its service has not read it to its end in a while."""

        def forget() -> None:
            if self.buffers.get(stream) is buffer:
                del self.buffers[stream]
            self.started.discard(stream)
            self.ends.pop(stream, None)
            self.stdins.pop(stream, None)

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
                    data = os.read(fd, PIPE_CHUNK)
                except BlockingIOError:
                    continue
                if not data:
                    return
                buffer.put(stream, data)
                buffer.moved = loop.time()
        finally:
            loop.remove_reader(fd)
            os.close(fd)

    async def _measure(self) -> None:
        """While petitions run here: measure each one's tree (CPU, memory, processes)
        for the service's ``top`` and usage events, and tell it when one uses more
        memory than its ``--mem`` (the service then stops it, as on its own host)."""
        while self.pids:
            pids = dict(self.pids)
            limits = dict(self.limits)
            figures = await asyncio.to_thread(_measure_trees, pids, limits)
            for token, usage in figures.items():
                buffer = self.buffers.get(self.streams.get(token, ""))
                if buffer is None or token not in self.pids:
                    continue
                limit = limits.get(token, 0)
                over = int(usage["rss"]) if limit and usage["rss"] > limit else None
                if over is not None:
                    self.limits.pop(token, None)  # told once
                buffer.note(usage, over)
            await asyncio.sleep(TRACK_SECONDS if self.limits else DASK_MEASURE_SECONDS)


async def _drain(readers: Sequence[asyncio.Future[None]], buffer: Buffer) -> None:
    """Wait for the pipes' readers to end; give up once nothing was read from them for
    :data:`~orcha.defaults.DRAIN_SECONDS` while there was room to read (a process the
    petition left running holds them open)."""
    loop = asyncio.get_running_loop()
    buffer.moved = loop.time()
    while True:
        _, pending = await asyncio.wait(readers, timeout=DRAIN_SECONDS)
        if not pending:
            return
        if not buffer.room.is_set():
            buffer.moved = loop.time()  # waiting for the service, not for the pipes
        elif loop.time() - buffer.moved >= DRAIN_SECONDS:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            return


def _measure_trees(pids: dict[str, int], limits: dict[str, int]) -> dict[str, dict[str, float]]:
    """Each petition's tree as the service's own host measures it: processes, CPU seconds
    (with the children they waited for), resident bytes. Those held to a ``--mem`` are
    found with their token carriers too (what left the tree), as on the service's host."""
    import psutil

    from orcha.service.procs import ProcessControl

    control = ProcessControl()
    out: dict[str, dict[str, float]] = {}
    for token, pid in pids.items():
        cpu = 0.0
        rss = 0
        procs = control.tree([pid], token, token in limits)
        for proc in procs.values():
            try:
                times = proc.cpu_times()
                cpu += times.user + times.system + times.children_user + times.children_system
                rss += proc.memory_info().rss
            except psutil.Error:
                pass
        if procs:
            out[token] = {"processes": float(len(procs)), "cpu_seconds": cpu, "rss": float(rss)}
    return out


def _plugin() -> OrchaWorkerPlugin:
    plugin = get_worker().plugins[PLUGIN_NAME]
    assert isinstance(plugin, OrchaWorkerPlugin)
    return plugin


async def watch_petition(stream: str) -> int:
    """The Dask task of one petition's command (pinned to its worker by the service): it
    shows the petition on Dask's dashboard and ends with it, with its exit code. The
    command itself is started by the service's stream (:meth:`OrchaWorkerPlugin.run`)."""
    plugin = _plugin()
    end = plugin.ends.setdefault(stream, asyncio.get_running_loop().create_future())
    return await end


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
