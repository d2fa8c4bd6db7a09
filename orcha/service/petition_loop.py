"""The petition loop: one thread that runs many petitions whose kind starts one process
and streams it to its end (``Kind.start``; the shell kind, ``orcha run``).

A petition's lifecycle (:meth:`Runner._lifecycle <orcha.service.runner.Runner>`) is a
generator of steps: the loop runs it up to :data:`ACTION`, starts the attempt's process
(:meth:`Runner.begin`), pumps its output together with every other petition's from one
selector (:class:`~orcha.service.pumping.Pump`), and goes on with the lifecycle once
the process has exited. Whatever may wait (:data:`BLOCKING`: a stopper to join after a
cancel or timeout, a retry's delay, leftovers to stop), or a client too slow to take
more output, hands the petition over to a thread of the runner's pool, which goes on
from the same step: the loop never waits for one petition. So the rules (attempts,
retries, timeouts, cancel, memory limits, bookkeeping) are the runner's, written once.

Why a loop: with a thread per petition, the two slots' threads of a 2-CPU host and their
children took turns for the GIL and the CPUs; each thread woken by its child's exit
waited for the other's Python. One thread doing the same work ran 17-21 % more short
petitions per second in a prototype (``/work/tools/synth3.py``; bench line 2).
"""

from __future__ import annotations

import enum
import functools
import logging
import os
import selectors
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from orcha.service.pumping import Pump

if TYPE_CHECKING:
    from orcha.service.job import Job
    from orcha.service.runner import Runner

log = logging.getLogger("orcha.service.petition_loop")


class Step(enum.Enum):
    """What a lifecycle yields to its driver."""

    #: Run the attempt's action now (a thread calls it; the loop starts and pumps it).
    ACTION = "action"
    #: What follows may wait: only a thread may run it.
    BLOCKING = "blocking"


ACTION = Step.ACTION
BLOCKING = Step.BLOCKING


class _Running:
    """A petition in the loop: its lifecycle, and its pump while its process runs."""

    __slots__ = ("fds", "job", "pump", "steps")

    def __init__(self, job: Job, steps: Iterator[Step]) -> None:
        self.job = job
        self.steps = steps
        self.pump: Pump | None = None
        self.fds: list[int] = []  # registered in the loop's selector


class PetitionLoop:
    """Runs lifecycles handed to :meth:`add` in one thread (started on first use)."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        self._lock = threading.Lock()
        self._ready: deque[_Running] = deque()
        self._pumping: set[_Running] = set()
        self._draining: set[_Running] = set()  # their process has exited
        self._sel: selectors.BaseSelector | None = None
        self._wake_fd = -1
        self._thread: threading.Thread | None = None
        #: What the loop is busy with, for 'orcha health': (since, job) while it runs a
        #: petition's step (``clock``: time.monotonic unless a test gives a fake). A step
        #: that blocks (a kind's start that does not return) holds up every petition in it.
        self.clock: Callable[[], float] = time.monotonic
        self._busy: tuple[float, Job] | None = None

    def stuck(self, longer_than: float) -> tuple[float, Job] | None:
        """(seconds, job) if one step of ``job`` has kept the loop for more than
        ``longer_than`` seconds (a kind's start or its bookkeeping); else None."""
        busy = self._busy
        if busy is None or self.clock() - busy[0] <= longer_than:
            return None
        return self.clock() - busy[0], busy[1]

    def add(self, job: Job, steps: Iterator[Step]) -> None:
        """Run ``steps``, ``job``'s lifecycle from its start, in the loop."""
        with self._lock:
            self._ready.append(_Running(job, steps))
            if self._thread is None:
                self._sel = selectors.DefaultSelector()
                self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
                self._sel.register(self._wake_fd, selectors.EVENT_READ, None)
                self._thread = threading.Thread(
                    target=self._loop, name="petition-loop", daemon=True
                )
                self._thread.start()
                return
            if threading.current_thread() is self._thread:
                return  # the loop takes what is ready before it selects again
        os.eventfd_write(self._wake_fd, 1)

    def _loop(self) -> None:
        while True:
            try:
                self._round()
            except Exception:  # a bug here must not stop every petition it runs
                log.exception("petition loop: a round failed")

    def _round(self) -> None:
        while True:
            with self._lock:
                if not self._ready:
                    break
                running = self._ready.popleft()
            self._advance(running)
        assert self._sel is not None
        # Only pumps draining after their process exited have a deadline.
        timeout: float | None = None
        for running in self._draining:
            assert running.pump is not None
            due = running.pump.due_in()
            if due is not None and (timeout is None or due < timeout):
                timeout = due
        moved: set[_Running] = set(self._draining)
        for key, _ in self._sel.select(timeout):
            if key.data is None:
                try:
                    os.eventfd_read(self._wake_fd)
                except BlockingIOError:
                    pass
                continue
            running, pump, channel = key.data
            if running.pump is not pump or running not in self._pumping:
                # Ended or handed over earlier in this round; or an event of the pump of
                # an attempt that ended in it (the next one's may reuse its descriptors).
                continue
            moved.add(running)
            try:
                if channel is None:  # the pidfd: the process has exited
                    self._unregister(running, key.fd)
                    pump.exited()
                    self._draining.add(running)
                elif pump.stalled():
                    self._hand_over(running)  # its client is behind: a thread waits for it
                elif not pump.read(key.fd):
                    self._unregister(running, key.fd)
            except Exception as e:
                self._failed(running, e)
        for running in moved:
            pump = running.pump
            if pump is None or running not in self._pumping:
                continue
            try:
                if pump.drain_due() and pump.stalled():
                    self._hand_over(running)  # the drain would wait for its client
                    continue
                pump.tick()
                if pump.done:
                    self._end(running)
            except Exception as e:
                self._failed(running, e)

    def _advance(self, running: _Running) -> None:
        """Run the lifecycle up to its next wait, or hand it over."""
        job = running.job
        self._busy = (self.clock(), job)
        try:
            for step in running.steps:
                if step is BLOCKING:
                    self._runner.resume(job, running.steps)
                    return
                proc = self._runner.begin(job)
                if proc is None:
                    continue  # it did not start: the lifecycle goes on
                try:
                    pump = Pump(job, proc, job.placed)
                except Exception as e:  # its action fails; the lifecycle stops the process
                    self._runner.pumped(job, functools.partial(_raise, e))
                    continue
                # The attempt is this process: once it has exited on its own, a cancel
                # must not make its end a CANCELLED one (Job.request_cancel).
                job.exit_probe = pump.has_exited
                if pump.pidfd is None:  # no pidfd here: a thread polls for its exit
                    self._runner.resume(job, running.steps, pump)
                    return
                running.pump = pump
                self._pumping.add(running)
                assert self._sel is not None
                for fd in (*pump.channels, pump.pidfd):
                    channel = None if fd == pump.pidfd else fd
                    self._sel.register(fd, selectors.EVENT_READ, (running, pump, channel))
                    running.fds.append(fd)
                return
        except Exception:
            log.exception("petition %s: its lifecycle failed in the petition loop", job.id)
        finally:
            self._busy = None

    def _unregister(self, running: _Running, fd: int) -> None:
        assert self._sel is not None
        self._sel.unregister(fd)
        running.fds.remove(fd)

    def _detach(self, running: _Running) -> Pump:
        """Take ``running``'s pump out of the loop (its descriptors unregistered)."""
        for fd in list(running.fds):
            self._unregister(running, fd)
        self._pumping.discard(running)
        self._draining.discard(running)
        pump, running.pump = running.pump, None
        assert pump is not None
        return pump

    def _end(self, running: _Running) -> None:
        pump = self._detach(running)
        self._busy = (self.clock(), running.job)  # its end's bookkeeping
        try:
            self._runner.pumped(running.job, pump.close)
        finally:
            self._busy = None
        self._advance(running)

    def _hand_over(self, running: _Running) -> None:
        pump = self._detach(running)
        self._runner.resume(running.job, running.steps, pump)

    def _failed(self, running: _Running, e: Exception) -> None:
        """Pumping ``running`` raised: its action fails (as an exception in ``Kind.run``
        would); what it left running is stopped by the lifecycle."""
        if running not in self._pumping:
            log.exception("petition %s: the petition loop failed", running.job.id)
            return
        pump = self._detach(running)
        pump.abandon()
        self._runner.pumped(running.job, functools.partial(_raise, e))
        self._advance(running)


def _raise(e: Exception) -> int:
    raise e
