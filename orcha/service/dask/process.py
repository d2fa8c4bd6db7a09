"""A petition's command running on a Dask worker, as its kind sees it: a
:class:`RemoteProcess` (``Popen``-like) whose pipes are fed from and to the worker's
streams (:mod:`.stream`), for :class:`~.remote.WorkerMachine`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from orcha.defaults import DASK_POLL_SECONDS, DASK_RECONNECTS, PIPE_CHUNK
from orcha.service.dask.stream import INPUT_OP, OUTPUT_OP

if TYPE_CHECKING:
    from orcha.service.dask.remote import WorkerMachine

log = logging.getLogger("orcha.service.dask")


class WorkerLost(Exception):
    """The worker a petition ran on left the cluster."""


class RemoteProcess:
    """A petition's command running on a worker, as the kind sees it (``Popen``-like:
    ``pid``, ``stdout``, ``stderr``, ``stdin``, ``poll()``, ``wait()``, ``returncode``)."""

    remote = True  # the context must not look for this PID on the service's host

    def __init__(
        self, machine: WorkerMachine, token: str, future: Any, stream: str, run: dict[str, Any]
    ) -> None:
        """``stream``: this start's name on the worker; ``run``: what the worker starts
        (:meth:`~.plugin.OrchaWorkerPlugin.run`'s arguments), sent when the output stream
        is opened (and again if it is resumed: the worker starts it once)."""
        stdin = bool(run.get("stdin"))
        self.machine = machine
        self.token = token
        self.stream = stream
        self._run = run
        self.future = future
        self.pid = 0
        self.returncode: int | None = None
        self.stdin: IO[bytes] | None = None
        self.args: list[str] = []
        self.start_error: tuple[int, str] | None = None
        self.lost: str | None = None
        self.usage: dict[str, float] = {}  # the worker's latest measure of its tree
        self.rusage: tuple[float | None, int | None] = (None, None)  # at its end
        self.strays = True  # whether something of its tree may outlive it (the worker says)
        #: Called once with the bytes it used when found over its --mem.
        self.over: Callable[[int], None] | None = None
        out_r, self._out_w = _pipe()
        err_r, self._err_w = _pipe()
        self.stdout = os.fdopen(out_r, "rb", buffering=0)
        self.stderr = os.fdopen(err_r, "rb", buffering=0)
        self._started = threading.Event()
        self._ended = threading.Event()
        self._acked: concurrent.futures.Future[Any] | None = None
        if stdin:
            in_r, in_w = _pipe()
            self.stdin = os.fdopen(in_w, "wb", buffering=0)
            threading.Thread(target=self._feed, args=(in_r,), name=f"dask-in-{token[:8]}",
                             daemon=True).start()  # fmt: skip
        self._thread = threading.Thread(target=self._pull, name=f"dask-pull-{token[:8]}",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def wait_started(self) -> None:
        """Block until the worker reported the PID (or why it did not start)."""
        self._started.wait()

    # -- output -------------------------------------------------------------------------------
    def _pull(self) -> None:
        """Take the petition's output from its worker's stream into the local pipes, then
        its end; a broken connection is resumed from the last byte received."""
        offset = 0  # bytes of its output (records included) passed on
        comm: Any = None
        failures = 0
        try:
            while True:
                try:
                    if comm is None:
                        opening = self.machine.open_stream(
                            OUTPUT_OP, stream=self.stream, offset=offset, run=self._run
                        )
                        comm = self._await(opening)
                        self._acked = None
                    msg = self._await(comm.read())
                except WorkerLost:
                    raise
                except Exception:
                    failures += 1
                    if failures > DASK_RECONNECTS:
                        raise
                    log.info("petition %s: output stream from %s broke; resuming at byte %d",
                             self.token[:8], self.machine.name, offset)  # fmt: skip
                    self.machine.abort(comm)
                    comm = None
                    time.sleep(0.1 * failures)
                    continue
                failures = 0
                offset = self._take(msg, offset)
                self._ack(comm, offset, msg["code"] is not None)
                if msg["code"] is not None:
                    self._end(int(msg["code"]))
                    return
        except WorkerLost:
            self._end(-9)
        except Exception as e:  # the worker, or the connection to it, is gone
            if self.lost is None:
                self.lost = f"worker {self.machine.name} lost ({type(e).__name__}: {e})"
            log.info("petition %s: %s", self.token[:8], self.lost)
            self.machine.abort(comm)
            self._end(-9)

    def _await(self, coro: Any) -> Any:
        """Run ``coro`` on the Dask client's loop and wait for its result; WorkerLost once
        the worker is known lost (a host that vanished may never answer)."""
        fut = asyncio.run_coroutine_threadsafe(coro, self.machine.loop)
        while True:
            try:
                return fut.result(timeout=DASK_POLL_SECONDS)
            except (TimeoutError, concurrent.futures.TimeoutError):
                if self.lost is not None:
                    fut.cancel()
                    raise WorkerLost(self.lost) from None

    def _take(self, msg: dict[str, Any], offset: int) -> int:
        """Pass on what of ``msg`` comes after ``offset`` (a resumed stream repeats what
        was not acknowledged); the new offset."""
        at = int(msg["at"])
        for stream, data in msg["out"]:
            n = len(data)
            if at + n > offset:
                if at < offset:
                    data = data[offset - at :]
                if stream == 0:
                    self._record(json.loads(bytes(data)))
                else:
                    _write_all(self._out_w if stream == 1 else self._err_w, data)
            at += n
        if msg.get("usage"):
            self.usage = dict(msg["usage"])
        if msg.get("over") is not None and self.over is not None:
            over, self.over = self.over, None
            over(int(msg["over"]))
        return max(offset, at)

    def _ack(self, comm: Any, offset: int, done: bool) -> None:
        """Tell the worker what was passed on (one acknowledgement in flight at a time:
        they are cumulative); the last one (``done``) frees the connection for reuse."""
        if self._acked is not None:
            with contextlib.suppress(Exception):  # a broken connection shows at the read
                self._acked.result()
        msg = {"ack": offset, "done": done}
        self._acked = asyncio.run_coroutine_threadsafe(
            self.machine.send(comm, msg, reuse=done), self.machine.loop
        )

    def _record(self, record: dict[str, Any]) -> None:
        if "pid" in record:
            self.pid = int(record["pid"])
        elif "start_error" in record:
            self.start_error = (int(record.get("errno") or 0), str(record["start_error"]))
        elif "rusage" in record:
            cpu, rss = record["rusage"]
            self.rusage = (cpu, rss)
            self.strays = bool(record.get("strays", True))
        self._started.set()

    # -- input --------------------------------------------------------------------------------
    def _feed(self, fd: int) -> None:
        """Send what the petition's stdin feed writes into the local pipe to the worker,
        chunk by chunk, each written there before the next is sent; EOF when the feed
        closes it. If the petition stops reading, the local pipe is closed: the feed's
        next write fails and it reports its stdin closed, as for a local petition."""
        comm: Any = None
        try:
            comm = self._await(self.machine.open_stream(INPUT_OP, stream=self.stream))
            while True:
                data = os.read(fd, PIPE_CHUNK)
                self._await(self.machine.send(comm, {"data": data, "eof": not data}))
                if not data:
                    return  # the connection is not reused: the worker may close it too
        except Exception as e:
            log.debug("petition %s: stdin to %s ended: %s", self.token[:8], self.machine.name, e)
        finally:
            self.machine.abort(comm)
            os.close(fd)

    # -- the end ------------------------------------------------------------------------------
    def _end(self, code: int) -> None:
        for fd in (self._out_w, self._err_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.returncode = code
        if self.lost is not None:
            cancel_task(self.future)
        self._started.set()
        self._ended.set()
        self.machine.ended(self)

    def mark_lost(self, reason: str) -> None:
        """Its worker left: end it (the puller's read fails or sees nothing more), and
        take its task back from Dask, which would otherwise keep it waiting for its worker
        and run it again if a worker came back at that address."""
        self.lost = reason
        self._started.set()
        cancel_task(self.future)

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


def _pipe() -> tuple[int, int]:
    """A pipe of PIPE_CHUNK bytes where the kernel allows (fewer, larger transfers)."""
    r, w = os.pipe()
    with contextlib.suppress(OSError):
        fcntl.fcntl(w, 1031, PIPE_CHUNK)  # F_SETPIPE_SZ
    return r, w


def cancel_task(future: Any) -> None:
    if future is None:
        return
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
