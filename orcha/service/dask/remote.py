"""One :class:`~orcha.service.machines.Machine` per Dask worker.

Its capacity is the worker's report (:mod:`.inventory`); its process control goes to
the worker: :meth:`WorkerMachine.spawn` opens the petition's output stream to the worker,
which starts the command (once, whatever happens to the connection: one hop, without
the scheduler's round trip), submits a Dask task pinned to the worker that shows it on
the dashboard and ends with it (``workers=[addr], allow_other_workers=False, pure=False,
retries=0``: it never runs anything, anywhere else, or twice), and hands back a
:class:`RemoteProcess`, which looks to
the petition's kind like the ``Popen`` a local spawn gives: its ``stdout`` and ``stderr``
are local pipes that a puller thread fills from the worker's output stream
(:mod:`.stream`: a slow client fills the pipe, the puller stops acknowledging, the
worker's buffer fills, and the worker stops reading the petition: backpressure end to
end), and its ``stdin``, when the client feeds it, a local pipe a thread sends on. The
end record from the worker carries the exit code, so no output arrives after the end.

Stopping and pausing run on the worker through ``Client.run`` (the same stop-the-tree
code as on this host); a :class:`Future`'s ``cancel()`` is never relied on (it does not
stop a running task). The worker measures its petitions' trees itself and sends the
figures with their output (``top``, usage events, ``--mem``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from orcha.defaults import (
    DASK_CONNECT_SECONDS,
    ENV_ATTEMPT,
    ENV_PETITION_ID,
    ENV_PETITION_TOKEN,
)
from orcha.service.dask.inventory import WorkerReport
from orcha.service.dask.process import RemoteProcess, cancel_task
from orcha.service.machines import Machine
from orcha.service.memory import over_limit_message

if TYPE_CHECKING:
    from orcha.service.job import Job

log = logging.getLogger("orcha.service.dask")


class WorkerMachine(Machine):
    """A Dask worker as a machine (see the module's docstring). ``report``: its latest
    :class:`~.inventory.WorkerReport`; ``client``: the service's Dask client."""

    def __init__(
        self,
        report: WorkerReport,
        client: Any,
        grace: float,
        relocate: Callable[[Job], bool] | None = None,
        pool: Any = None,
    ) -> None:
        """``relocate``: moves a petition of this worker, once it is lost, to another
        (see :meth:`Machine.relocate`); ``pool``: the connection pool of the output and
        input streams (default the client's; the cluster gives one that outlives its
        client, which it replaces when it reconnects to the scheduler)."""
        super().__init__(report.name, report.gpus)
        self._relocate = relocate
        self.report = report
        self.address = report.address
        self.client = client
        self.pool = pool if pool is not None else client.rpc
        self.grace = grace
        self.state = "ok"
        self._limits: dict[str, tuple[int, Callable[[str], None]]] = {}  # --mem, by token
        self._clean: set[str] = set()  # ended, and their worker saw nothing left of them
        self._lock = threading.Lock()
        self.running: dict[str, RemoteProcess] = {}

    # -- capacity ---------------------------------------------------------------------------
    @property
    def aliases(self) -> tuple[str, ...]:
        r = self.report
        return (r.name, r.host, r.address, r.address.split("://", 1)[-1])

    @property
    def capacity_hint(self) -> str:
        return (f"worker {self.name}: 'dask worker --resources CPU=N', else its host's "
                "cores")  # fmt: skip

    @property
    def slots(self) -> int:
        return self.report.cpus if self.state == "ok" else 0

    def total_memory(self) -> int:
        return self.report.mem_total

    def available_memory(self) -> int:
        return self.report.mem_available

    def update(self, report: WorkerReport) -> None:
        """A newer report of the worker (inventory changes keep held GPUs held)."""
        if report.gpus != self.report.gpus:
            held = [g for g in self.inventory if g not in self.free_gpus]
            self.set_inventory(report.gpus, held)
        self.report = report
        if self.state != "lost":
            # A worker Dask is closing (or has paused) gets no new petition.
            self.state = "ok" if report.status == "running" else "closing"

    # -- process control --------------------------------------------------------------------
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The Dask client's event loop (its own thread): comms are used there only."""
        loop: asyncio.AbstractEventLoop = self.client.loop.asyncio_loop
        return loop

    async def open_stream(self, op: str, **args: Any) -> Any:
        """A connection to the worker (from the client's pool: its TLS settings apply)
        on which it serves ``op`` with ``args`` (:mod:`.stream`)."""
        comm = await self.pool.connect(self.address)
        try:
            await comm.write({"op": op, "reply": False, **args})
        except BaseException:
            comm.abort()
            raise
        return comm

    async def send(self, comm: Any, msg: dict[str, Any], reuse: bool = False) -> None:
        """Write ``msg`` on ``comm``; with ``reuse`` its stream is over: back to the pool."""
        await comm.write(msg)
        if reuse:
            self.pool.reuse(self.address, comm)

    def abort(self, comm: Any) -> None:
        """Drop ``comm`` (from any thread)."""
        if comm is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: so is it
                self.loop.call_soon_threadsafe(comm.abort)

    def spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        pipe_size: int = 0,
        stdin: bool = False,
        ordered: bool | None = None,
    ) -> Any:
        """Start ``argv`` on the worker (with ``stdin``, its stdin is fed through
        :attr:`RemoteProcess.stdin`, else it is /dev/null there; ``ordered`` is not kept
        there: a worker's two streams come back in the order it read them). OSError, as a
        local spawn, if the worker cannot start it (a missing working directory, a
        command not found)."""
        from orcha.service.dask.plugin import watch_petition

        if self.state == "lost":
            raise OSError(f"worker {self.name} is {self.state}")
        token = env.get(ENV_PETITION_TOKEN) or uuid.uuid4().hex
        key = (f"orcha-{env.get(ENV_PETITION_ID, 'x')}-{env.get(ENV_ATTEMPT, '1')}-"
               f"{uuid.uuid4().hex[:8]}")  # fmt: skip
        limit, exceeded = self._limits.get(token, (0, None))
        stream = uuid.uuid4().hex  # this start's, on the worker
        run = {"token": token, "argv": list(argv), "cwd": cwd, "env": dict(env),
               "stdin": stdin, "mem": limit, "grace": self.grace}  # fmt: skip
        # The command starts from the stream's connection (one hop, no scheduler); the
        # task, submitted after, only shows it on Dask's dashboard and ends with it.
        proc = RemoteProcess(self, token, None, stream, run)
        proc.future = self.client.submit(
            watch_petition, stream, key=key,
            workers=[self.address], allow_other_workers=False, pure=False, retries=0,
        )  # fmt: skip
        if proc.lost is not None:
            cancel_task(proc.future)  # lost meanwhile: Dask must not keep it waiting
        if exceeded is not None:
            proc.over = lambda used: exceeded(over_limit_message(used, limit))
        proc.args = list(argv)
        with self._lock:
            self.running[token] = proc
        proc.wait_started()
        if (proc.start_error is not None or proc.lost is not None) and proc.stdin is not None:
            proc.stdin.close()  # no feed will take it: its sender thread sees EOF and ends
        if proc.start_error is not None:
            proc.wait()
            number, text = proc.start_error
            kinds = {errno.ENOENT: FileNotFoundError, errno.ENOTDIR: NotADirectoryError,
                     errno.EACCES: PermissionError}  # fmt: skip
            raise kinds.get(number, OSError)(number, text)
        if proc.lost is not None:
            raise OSError(proc.lost)
        return proc

    def ended(self, proc: RemoteProcess) -> None:
        with self._lock:
            self.running.pop(proc.token, None)

    def lost(self, reason: str) -> list[RemoteProcess]:
        """The worker left the cluster: no more petitions here; those running end."""
        self.state = "lost"
        with self._lock:
            procs = list(self.running.values())
        for proc in procs:
            proc.mark_lost(reason)
        return procs

    def stop(self, token: str, pid: int | None, grace: float, force: bool, sig: int = 0) -> int:
        """Stop (or signal) the petition's tree on the worker; 0 if it cannot be reached."""
        from orcha.service.dask.plugin import stop_tree

        if self.state == "lost":
            return 0
        try:
            # Bounded: a worker that died a moment ago (not yet known lost) may never
            # answer; Dask would try to reach it for its whole connect timeout.
            out = self.client.run(stop_tree, token, pid or None, grace, force, sig,
                                  workers=[self.address],
                                  callback_timeout=grace + DASK_CONNECT_SECONDS)  # fmt: skip
        except Exception as e:
            log.warning("worker %s: cannot stop petition %s: %s", self.name, token[:8], e)
            return 0
        return int(sum(out.values()))

    def _proc(self, job: Job) -> RemoteProcess | None:
        with self._lock:
            return self.running.get(job.token)

    def adopt(self, job: Job, pid: int) -> None:
        with job.lock:
            job.pids.add(pid)

    def signal_tree(self, job: Job, sig: int) -> int:
        return self.stop(job.token, self._pid(job), 0.0, False, sig)

    def stop_tree(self, job: Job, grace: float, force: bool = False) -> int:
        return self.stop(job.token, self._pid(job), grace, force)

    def stop_leftovers(self, job: Job, grace: float) -> int:
        if job.lost is not None:
            return 0  # the worker is gone, and its spawner stopped the tree
        with self._lock:
            if job.token in self._clean:
                self._clean.discard(job.token)
                return 0  # its worker saw nothing left (no round trip to look)
        # Its main process ended (its PID may be reused): the token finds the rest.
        return self.stop(job.token, None, grace, False)

    def _pid(self, job: Job) -> int | None:
        proc = self._proc(job)
        return proc.pid if proc is not None and proc.pid else next(iter(job.pids), None)

    def measure_tree(self, job: Job) -> dict[str, float]:
        """The worker's latest measure of the petition's tree (every
        :data:`~orcha.defaults.DASK_MEASURE_SECONDS`); {} (unknown) before the first."""
        proc = self._proc(job)
        return dict(proc.usage) if proc is not None else {}

    def reap(self, job: Job, proc: Any) -> int:
        code = int(proc.wait())
        if getattr(proc, "lost", None):
            job.message = proc.lost
            job.lost = proc.lost
        cpu, rss = getattr(proc, "rusage", (None, None))
        if cpu is not None or rss is not None:
            job.used(cpu, rss)  # the spawner's wait4 of its main process
        if not getattr(proc, "strays", True):
            with self._lock:
                self._clean.add(job.token)
        return code

    def limit_memory(self, job: Job, limit: int, exceeded: Callable[[str], None]) -> None:
        """Held on the worker: it measures the tree (with what carries its token) every
        :data:`~orcha.defaults.TRACK_SECONDS` and says when it uses more than ``limit``;
        ``exceeded`` then stops it, as on this host."""
        with self._lock:
            self._limits[job.token] = (limit, exceeded)

    def forget(self, job: Job) -> None:
        with self._lock:
            self._limits.pop(job.token, None)
            self._clean.discard(job.token)

    def relocate(self, job: Job) -> bool:
        return self._relocate is not None and self._relocate(job)

    def sweep(self, job: Job, grace: float) -> None:
        pass  # stop_leftovers already looked for what carries its token there

    def stop_recorded(self, pids: Iterable[Sequence[int]], token: str | None, grace: float) -> int:
        if not token:
            return 0
        return self.stop(token, None, grace, False)
