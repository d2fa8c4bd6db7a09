"""One :class:`~orcha.service.machines.Machine` per Dask worker.

Its capacity is the worker's report (:mod:`.inventory`); its process control goes to
the worker: :meth:`WorkerMachine.spawn` submits the command as a Dask task pinned to the
worker (``workers=[addr], allow_other_workers=False, pure=False, retries=0``: Dask never
runs it anywhere else, nor twice) and hands back a :class:`RemoteProcess`, which looks to
the petition's kind like the ``Popen`` a local spawn gives: its ``stdout`` and ``stderr``
are local pipes that a puller thread fills from the worker's output buffer, one read at a
time (a slow client fills the pipe, the puller stops reading, the worker's buffer fills,
and the worker stops reading the petition: backpressure end to end). The end record from
the worker carries the exit code, so no output arrives after the end.

Stopping, pausing and measuring run on the worker through ``Client.run`` (the same
stop-the-tree code as on this host); a :class:`Future`'s ``cancel()`` is never relied on
(it does not stop a running task).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from orcha.defaults import (
    DASK_CONNECT_SECONDS,
    DASK_POLL_SECONDS,
    ENV_ATTEMPT,
    ENV_PETITION_ID,
    ENV_PETITION_TOKEN,
)
from orcha.service.dask.inventory import WorkerReport
from orcha.service.machines import Machine

if TYPE_CHECKING:
    from orcha.service.job import Job

log = logging.getLogger("orcha.service.dask")


class WorkerLost(Exception):
    """The worker a petition ran on left the cluster."""


class RemoteProcess:
    """A petition's command running on a worker, as the kind sees it (``Popen``-like:
    ``pid``, ``stdout``, ``stderr``, ``poll()``, ``wait()``, ``returncode``)."""

    remote = True  # the context must not look for this PID on the service's host

    def __init__(self, machine: WorkerMachine, token: str, future: Any, port: Any) -> None:
        self.machine = machine
        self.token = token
        self.future = future
        self.pid = 0
        self.returncode: int | None = None
        self.stdin = None
        self.args: list[str] = []
        self.start_error: tuple[int, str] | None = None
        self.lost: str | None = None
        self._port = port
        out_r, self._out_w = os.pipe()
        err_r, self._err_w = os.pipe()
        self.stdout = os.fdopen(out_r, "rb", buffering=0)
        self.stderr = os.fdopen(err_r, "rb", buffering=0)
        self._started = threading.Event()
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._pull, name=f"dask-pull-{token[:8]}",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def wait_started(self) -> None:
        """Block until the worker reported the PID (or why it did not start)."""
        self._started.wait()

    def _pull(self) -> None:
        try:
            while True:
                reply = self._read()
                if reply is None:  # its worker is lost and will not answer
                    self._end(-9)
                    return
                items, code = reply
                for stream, data in items:
                    if stream == 0:
                        self._record(json.loads(data))
                    else:
                        _write_all(self._out_w if stream == 1 else self._err_w, data)
                if code is not None:
                    self._end(code)
                    return
                if self.lost is not None:
                    self._end(-9)
                    return
        except Exception as e:  # the worker, or the connection to it, is gone
            if self.lost is None:
                self.lost = f"worker {self.machine.name} lost ({type(e).__name__}: {e})"
            log.info("petition %s: %s", self.token[:8], self.lost)
            self._end(-9)

    def _read(self) -> tuple[list[tuple[int, bytes]], int | None] | None:
        """The next read from the worker's buffer; None once the worker is known lost
        (a read in flight when it died may never return: Dask waits for the actor's
        worker to come back). A read is never given up otherwise: its output would be
        lost."""
        future = self._port.read(self.token, DASK_POLL_SECONDS)
        while True:
            try:
                reply: tuple[list[tuple[int, bytes]], int | None] = future.result(
                    timeout=DASK_POLL_SECONDS + 1
                )
                return reply
            except (TimeoutError, asyncio.TimeoutError):  # distinct before Python 3.11
                if self.lost is not None:
                    return None

    def _record(self, record: dict[str, Any]) -> None:
        if "pid" in record:
            self.pid = int(record["pid"])
        elif "start_error" in record:
            self.start_error = (int(record.get("errno") or 0), str(record["start_error"]))
        self._started.set()

    def _end(self, code: int) -> None:
        for fd in (self._out_w, self._err_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.returncode = code
        if self.lost is not None:
            _cancel(self.future)
        self._started.set()
        self._ended.set()
        self.machine.ended(self)

    def mark_lost(self, reason: str) -> None:
        """Its worker left: end it (the puller's read fails or sees nothing more), and
        take its task back from Dask, which would otherwise keep it waiting for its worker
        and run it again if a worker came back at that address."""
        self.lost = reason
        self._started.set()
        _cancel(self.future)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            import subprocess

            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        self.machine.stop(self.token, self.pid, 0.0, True)

    def terminate(self) -> None:
        self.machine.stop(self.token, self.pid, self.machine.grace, False)


def _cancel(future: Any) -> None:
    try:
        future.cancel()
    except Exception:
        log.debug("cancelling a lost worker's task failed", exc_info=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)  # blocks while the pipe is full: backpressure
        except BrokenPipeError:
            return  # the reader is gone (the kind stopped reading): drop the rest
        view = view[n:]


class WorkerMachine(Machine):
    """A Dask worker as a machine (see the module's docstring). ``report``: its latest
    :class:`~.inventory.WorkerReport`; ``client``: the service's Dask client."""

    def __init__(
        self,
        report: WorkerReport,
        client: Any,
        grace: float,
        relocate: Callable[[Job], bool] | None = None,
    ) -> None:
        """``relocate``: moves a petition of this worker, once it is lost, to another
        (see :meth:`Machine.relocate`)."""
        super().__init__(report.name, report.gpus)
        self._relocate = relocate
        self.report = report
        self.address = report.address
        self.client = client
        self.grace = grace
        self.state = "ok"
        self._port: Any = None
        self._port_future: Any = None
        self._lock = threading.Lock()
        self.running: dict[str, RemoteProcess] = {}

    # -- capacity ---------------------------------------------------------------------------
    @property
    def aliases(self) -> tuple[str, ...]:
        r = self.report
        return (r.name, r.host, r.address, r.address.split("://", 1)[-1])

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
    def port(self) -> Any:
        """The worker's output actor (created on first use)."""
        with self._lock:
            if self._port is None:
                from orcha.service.dask.plugin import OutputPort

                self._port_future = self.client.submit(
                    OutputPort, actor=True, workers=[self.address], allow_other_workers=False,
                    key=f"orcha-port-{uuid.uuid4().hex}",
                )  # fmt: skip
                self._port = self._port_future.result()
            return self._port

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
        """Start ``argv`` on the worker (its stdin is /dev/null there; ``ordered`` is not
        kept there: a worker's two streams come back in the order it read them). OSError,
        as a local spawn, if the worker cannot start it (a missing working directory, a
        command not found)."""
        from orcha.service.dask.plugin import run_petition

        if self.state == "lost":
            raise OSError(f"worker {self.name} is {self.state}")
        token = env.get(ENV_PETITION_TOKEN) or uuid.uuid4().hex
        key = (f"orcha-{env.get(ENV_PETITION_ID, 'x')}-{env.get(ENV_ATTEMPT, '1')}-"
               f"{uuid.uuid4().hex[:8]}")  # fmt: skip
        port = self.port()
        future = self.client.submit(
            run_petition, token, list(argv), cwd, dict(env), key=key,
            workers=[self.address], allow_other_workers=False, pure=False, retries=0,
        )  # fmt: skip
        proc = RemoteProcess(self, token, future, port)
        proc.args = list(argv)
        with self._lock:
            self.running[token] = proc
        proc.wait_started()
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
            if self._port_future is not None:
                _cancel(self._port_future)
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
        # Its main process ended (its PID may be reused): the token finds the rest.
        return self.stop(job.token, None, grace, False)

    def _pid(self, job: Job) -> int | None:
        proc = self._proc(job)
        return proc.pid if proc is not None and proc.pid else next(iter(job.pids), None)

    def measure_tree(self, job: Job) -> dict[str, float]:
        """Not measured: the worker does not report a petition's use (``top`` and usage
        events show it unknown, not a misleading 0)."""
        return {}

    def reap(self, job: Job, proc: Any) -> int:
        code = int(proc.wait())
        if getattr(proc, "lost", None):
            job.message = proc.lost
            job.lost = proc.lost
        return code

    def relocate(self, job: Job) -> bool:
        return self._relocate is not None and self._relocate(job)

    def sweep(self, job: Job, grace: float) -> None:
        pass  # stop_leftovers already looked for what carries its token there

    def stop_recorded(self, pids: Iterable[Sequence[int]], token: str | None, grace: float) -> int:
        if not token:
            return 0
        return self.stop(token, None, grace, False)
