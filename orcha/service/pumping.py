"""Pump: streams one process's stdout and stderr (plain pipes) to its petition.

It is driven in one of two ways, with the same rules:

* :meth:`Pump.run`, blocking, in the petition's own thread (``ctx.pump``);
* step by step by the petition loop (:mod:`orcha.service.petition_loop`), which selects
  on the pipes and pidfds of many pumps at once: :attr:`Pump.channels` and
  :attr:`Pump.pidfd` are what to select on, :meth:`Pump.read` is called when a pipe is
  readable, :meth:`Pump.exited` when the pidfd is, :meth:`Pump.tick` after each round;
  once :attr:`Pump.done`, :meth:`Pump.close` reaps the process.

The rules: every byte the process wrote is emitted, until it has exited and its pipes
are closed, or :data:`~orcha.defaults.DRAIN_SECONDS` after it exited (a process it left
running may hold them open; what is in the pipes then is taken, not more). The ordered
capture (``--ordered``: sockets, merged by kernel stamps) is read by
:func:`pump_ordered`, in a thread only.
"""

from __future__ import annotations

import os
import select
import selectors
import subprocess
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from orcha.defaults import DRAIN_SECONDS, PIPE_CHUNK
from orcha.protocol.messages import STDERR, STDOUT
from orcha.service.capture import OrderedReader, is_ordered
from orcha.service.procs import exit_code_of, open_pidfd

if TYPE_CHECKING:
    from orcha.service.job import Job
    from orcha.service.machines import Machine

#: Seconds between two looks at whether a process has exited, where pidfds are missing.
EXIT_POLL_SECONDS = 0.05


class Pump:
    """The output of ``proc`` (spawned for ``job`` on ``machine``, plain pipes) on its
    way to the petition (:meth:`Job.emit`). ValueError for an ordered capture."""

    def __init__(
        self,
        job: Job,
        proc: subprocess.Popen[bytes],
        machine: Machine,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if is_ordered(proc):
            raise ValueError("an ordered capture is read by pump_ordered")
        self._job = job
        self._proc = proc
        self._machine = machine
        self._clock = clock
        #: Readable once the process has exited; None: polled (another host's process
        #: has none here: its pipes end).
        self.pidfd = None if getattr(proc, "remote", False) else open_pidfd(proc.pid)
        #: The pipes still open: descriptor -> stream (STDOUT or STDERR).
        self.channels: dict[int, int] = {}
        for pipe, stream in ((proc.stdout, STDOUT), (proc.stderr, STDERR)):
            if pipe is not None:
                self.channels[pipe.fileno()] = stream
        self._drain_until: float | None = None
        self._pidfd_lock = threading.Lock()  # has_exited() polls it from another thread
        self._reaped = False

    def has_exited(self) -> bool:
        """Whether the process has exited (its exit seen, or observable now: reaped or
        not); for a cancel that may come at that very moment (``Job.exit_probe``)."""
        with self._pidfd_lock:
            if self._drain_until is not None or self._reaped:
                return True
            if self.pidfd is None:
                return False  # not known here: pumped without a pidfd, or abandoned
            return _readable(self.pidfd)

    @property
    def done(self) -> bool:
        """Every pipe is closed (or drained) and the process has exited (or, without a
        pidfd, is waited for by :meth:`close`)."""
        return not self.channels and (self._drain_until is not None or self.pidfd is None)

    def due_in(self) -> float | None:
        """Seconds until :meth:`tick` has something to do without an event (None: only
        an event can move it on)."""
        if self._drain_until is not None:
            return max(0.0, self._drain_until - self._clock())
        return None if self.pidfd is not None else EXIT_POLL_SECONDS

    def stalled(self) -> bool:
        """Whether emitting more would wait for the petition's client (its output queue
        is at its bound): only a thread may wait for that."""
        would_block = getattr(self._job.queue, "would_block", None)
        return would_block is not None and bool(would_block())

    def read(self, fd: int) -> bool:
        """Pipe ``fd`` is readable: emit what it holds. False once it is closed (it is
        no longer in :attr:`channels`)."""
        data = os.read(fd, PIPE_CHUNK)
        if data:
            self._job.emit(self.channels[fd], data)
            return True
        del self.channels[fd]
        return False

    def exited(self) -> None:
        """The pidfd is readable: the process has exited; what it wrote is drained for at
        most DRAIN_SECONDS more."""
        if self._drain_until is None:
            self._drain_until = self._clock() + DRAIN_SECONDS

    def tick(self) -> None:
        """After each round of events (or none): notice an exit without a pidfd, and end
        a drain that ran out of time."""
        if self._drain_until is None and self.pidfd is None and self._proc.poll() is not None:
            self.exited()
        if self._drain_until is not None and self.channels and self._clock() >= self._drain_until:
            # All it wrote before it exited is in the pipes by now (a slow client may
            # have kept us from reading it): take that, not more.
            for fd, stream in list(self.channels.items()):
                self._take_buffered(fd, stream)
            self.channels.clear()

    def _take_buffered(self, fd: int, stream: int) -> None:
        """Emit what pipe ``fd`` holds now, without waiting (a process writing without
        end, one it left running, cannot keep this going: a pipe's worth at most)."""
        os.set_blocking(fd, False)
        for _ in range(2):  # a pipe holds at most PIPE_CHUNK (F_SETPIPE_SZ) bytes
            try:
                data = os.read(fd, PIPE_CHUNK)
            except BlockingIOError:
                return
            if not data:
                return
            self._job.emit(stream, data)

    def run(self) -> int:
        """Pump until :attr:`done`, blocking; then :meth:`close`. If emitting fails, the
        pump is abandoned (:meth:`abandon`) and the error raised."""
        try:
            with selectors.DefaultSelector() as sel:
                for fd in self.channels:
                    sel.register(fd, selectors.EVENT_READ, fd)
                if self.pidfd is not None:
                    sel.register(self.pidfd, selectors.EVENT_READ, None)
                while not self.done:
                    for key, _ in sel.select(self.due_in()):
                        if key.data is None:
                            sel.unregister(key.fd)
                            self.exited()
                        elif not self.read(key.fd):
                            sel.unregister(key.fd)
                    self.tick()
        except BaseException:
            self.abandon()
            raise
        return self.close()

    def drain_due(self) -> bool:
        """Whether :meth:`tick` would now take what the pipes hold (and emit it)."""
        return (
            bool(self.channels)
            and self._drain_until is not None
            and (self._clock() >= self._drain_until)
        )

    def close(self) -> int:
        """Close the pidfd and the pipes, reap the process (accounting for what it used)
        and return its exit code (128+N if a signal N killed it)."""
        self.abandon()
        code = exit_code_of(self._machine.reap(self._job, self._proc))
        self._reaped = True
        return code

    def abandon(self) -> None:
        """Close the pidfd and the pipes without waiting for the process (pumping it
        failed: the lifecycle stops what is left of it; or :meth:`close` reaps it)."""
        with self._pidfd_lock:
            if self.pidfd is not None:
                os.close(self.pidfd)
                self.pidfd = None
        for pipe in (self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                pipe.close()
        self.channels.clear()


def _readable(fd: int) -> bool:
    poller = select.poll()  # not select(): descriptors may be above 1023
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def pump_ordered(
    job: Job, proc: subprocess.Popen[bytes], machine: Machine, attempt: bool = False
) -> int:
    """What :meth:`Pump.run` does, for an ordered capture (``--ordered``: sockets read in
    rounds, their messages merged by kernel stamps: :class:`OrderedReader`). With
    ``attempt`` (the process is the whole attempt), ``job.exit_probe`` says whether it
    has exited, as :meth:`Pump.has_exited` does."""
    pidfd = None if getattr(proc, "remote", False) else open_pidfd(proc.pid)
    exited = threading.Event()  # its exit seen (or it was reaped)
    pidfd_lock = threading.Lock()

    def has_exited() -> bool:
        with pidfd_lock:
            return exited.is_set() or (pidfd is not None and _readable(pidfd))

    if attempt:
        job.exit_probe = has_exited
    pipes = 0
    drain_until: float | None = None
    ordered = OrderedReader()
    with selectors.DefaultSelector() as sel:
        for pipe, tag in ((proc.stdout, STDOUT), (proc.stderr, STDERR)):
            if pipe is not None:
                sel.register(pipe, selectors.EVENT_READ, tag)
                pipes += 1
        if pidfd is not None:
            sel.register(pidfd, selectors.EVENT_READ, None)  # readable once it exits
        while pipes:
            if drain_until is not None:
                timeout: float | None = max(0.0, drain_until - time.monotonic())
            else:
                timeout = None if pidfd is not None else EXIT_POLL_SECONDS
            due = ordered.due_in()
            if due is not None:
                timeout = due if timeout is None else min(timeout, due)
            for key, _ in sel.select(timeout):
                if key.data is None:  # the pidfd: the process has exited
                    sel.unregister(key.fd)
                    drain_until = time.monotonic() + DRAIN_SECONDS
                    exited.set()
            pipes -= ordered.round(sel, job.emit)
            if drain_until is None and pidfd is None and proc.poll() is not None:
                drain_until = time.monotonic() + DRAIN_SECONDS
                exited.set()
            if drain_until is not None and time.monotonic() >= drain_until:
                # All it wrote before it exited is in the sockets by now: take that.
                ordered.round(sel, job.emit, final=True)
                break
    with pidfd_lock:
        if pidfd is not None:
            os.close(pidfd)
            pidfd = None
    ordered.close()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    code = exit_code_of(machine.reap(job, proc))  # accounted for
    exited.set()
    return code
