"""Runs admitted petitions and stops them when asked: each in its own thread, or, for
kinds that start one process and stream it (``Kind.start``: ``orcha run``), many in the
petition loop (:mod:`orcha.service.petition_loop`).

A petition's processes are reached only through the machine it was admitted onto
(``job.machine``): the runner adopts, pauses, stops and sweeps them there, never by PID.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from orcha.defaults import ABANDON_WAIT_SECONDS
from orcha.errors import ExitCode, NotSavedError
from orcha.protocol.messages import ABANDONED, STDERR
from orcha.service.deadlines import Deadlines
from orcha.service.job import Job, Started
from orcha.service.machines import LocalMachine
from orcha.service.manager import Manager
from orcha.service.petition_loop import ACTION, BLOCKING, PetitionLoop, Step
from orcha.service.worker_pool import WorkerPool
from orcha.states import State
from orcha.text import escaped
from orcha.units import wait_event

if TYPE_CHECKING:
    import subprocess

    from orcha.service.plugin_host import PluginHost
    from orcha.service.pumping import Pump
    from orcha.service.scheduler import Scheduler

log = logging.getLogger("orcha.service.runner")


class RunnerEvents(Protocol):
    """What the runner tells the service about a job (each may be called in any thread)."""

    def job_started(self, job: Job, wait: bool = True) -> None:
        """NotSavedError if its start cannot be recorded: then it is not run. ``wait``
        False: one try, NotSavedError at once if it fails (the caller then retries with
        the wait elsewhere)."""

    def saving_fails(self) -> bool:
        """Whether saving is known to be failing now: :meth:`job_started` may then wait
        (STORE_START_WAIT) for its commit. A flag: it is asked of every start."""

    def job_pid(self, job: Job, pid: int) -> None: ...

    def job_ended(self, job: Job) -> None: ...

    def job_attempt(self, job: Job) -> None:
        """NotSavedError if the attempt cannot be recorded: then it is not run."""

    def job_timed_out(self, job: Job) -> None: ...

    def wake(self) -> None: ...


class Runner:
    """Starts a job's action in a thread and finishes its bookkeeping when it returns."""

    def __init__(
        self,
        manager: Manager,
        events: RunnerEvents,
        grace: float,
    ) -> None:
        """``events``: told what happens to each job; ``grace``: how long a tree asked to
        stop gets before it is killed. Each job's processes are reached through its
        machine."""
        self.manager = manager
        self.grace = grace
        self.scheduler: Scheduler | None = None
        #: The plugins whose kinds it runs: told of each action abandoned (see _abandon).
        self.plugins: PluginHost | None = None
        self._events = events
        self._pool = WorkerPool("petition")
        self._deadlines = Deadlines(self._time_out)
        #: Runs the petitions it can (:meth:`loopable`) in one thread.
        self.loop = PetitionLoop(self)

    def start(self, job: Job) -> None:
        """Called by the scheduler (under its lock) when ``job`` is admitted: its
        lifecycle runs in the petition loop if it can (:meth:`loopable`), else in a
        thread of its own."""
        steps = self._lifecycle(job)
        if self.loopable(job):
            self.loop.add(job, steps)
        else:
            self._pool.submit(lambda: self._drive(job, steps))

    def _register(self, job: Job, pid: int) -> None:
        machine = job.placed
        machine.adopt(job, pid)
        if job.abandoned:  # its petition has ended: what its action starts now must not run
            self._start_stopper(job, force=True)
            return
        self._events.job_pid(job, pid)
        if job.cancel_requested:
            self.cancel_running(job)  # cancelled before it could report this process
        elif job.stopped:
            # 'orcha pause --running' came before this process existed.
            machine.signal_tree(job, signal.SIGSTOP)

    def _lifecycle(self, job: Job) -> Iterator[Step]:
        """Everything that happens to an admitted job, up to its end, as steps a driver
        runs: a thread (:meth:`_drive`) or the petition loop. It yields ACTION where the
        attempt's action runs, and BLOCKING before what may wait (only a thread may)."""
        try:
            yield from self._execute(job)
        finally:
            if not job.abandoned:  # else its end was recorded without it (_abandon)
                self._finish_surely(job)
        if job.abandoned:
            log.warning("petition %s: its abandoned action returned after all", job.id)
            self._count_abandoned(job, -1)
            return
        if job.machine is not None:
            if not job.cancel_requested:
                # What the action left behind without telling orcha (a daemonised
                # grandchild that kept the token) ends with it; in the background.
                job.machine.sweep(job, self.grace)
            try:
                job.machine.forget(job)
            except Exception:
                log.exception("petition %s: forgetting its processes failed", job.id)

    def _finish_surely(self, job: Job) -> None:
        try:
            self.finish(job)
        except Exception:
            # Bookkeeping must not leave the job RUNNING forever (it would hold its slot
            # and block shutdown), whatever a plugin hook did.
            log.exception("petition %s: finishing failed", job.id)
            self._events.job_ended(job)
            if self.scheduler is not None:
                self.scheduler.finished(job)
            job.release()
            self._events.wake()

    def _drive(self, job: Job, steps: Iterator[Step], pump: Pump | None = None) -> None:
        """Run ``job``'s lifecycle in this thread, from where ``steps`` stands: with
        ``pump``, its action's process was started and is pumped here first."""
        if pump is not None:
            self.pumped(job, pump.run)
        for step in steps:
            if step is ACTION:
                self._act(job)

    def resume(self, job: Job, steps: Iterator[Step], pump: Pump | None = None) -> None:
        """Go on with ``job``'s lifecycle in a thread of the pool (see :meth:`_drive`):
        the petition loop hands over a job at a step that may block."""
        self._pool.submit(lambda: self._drive(job, steps, pump))

    def _act(self, job: Job) -> None:
        """Run the attempt's action, blocking until it returns."""
        try:
            self.manager.run(job.petition, lambda pid: self._register(job, pid))
        except BaseException as e:
            self._action_failed(job, e)

    def begin(self, job: Job) -> subprocess.Popen[bytes] | None:
        """Start the attempt's action of a :meth:`loopable` job without waiting: its
        process, to be pumped and then handed to :meth:`pumped`; None if the action
        already ended (it did not start, or raised)."""
        try:
            return self.manager.start(job.petition, lambda pid: self._register(job, pid))
        except BaseException as e:
            self._action_failed(job, e)
            return None

    def pumped(self, job: Job, close: Callable[[], int]) -> None:
        """The action's process, started by :meth:`begin`, is done: ``close`` reaps it
        and gives its exit code, the attempt's."""
        try:
            self.manager.end(job.petition, close())
        except BaseException as e:
            self._action_failed(job, e)

    def _action_failed(self, job: Job, e: BaseException) -> None:
        # Whatever an action raises fails its petition, never the thread or the
        # service: a plugin's sys.exit() or KeyboardInterrupt (or any BaseException;
        # none is used here to end a thread) must not pass for a success.
        log.error("petition %s: action raised", job.id, exc_info=e)
        job.message = job.message or f"petition {job.id} failed: {type(e).__name__}: {e}"
        if job.code in (None, 0):
            job.code = int(ExitCode.FAILED)

    def loopable(self, job: Job) -> bool:
        """Whether the petition loop can run ``job``: its kind starts one process to be
        streamed to its end (``Kind.start``), on this host, with plain pipes, and no
        hook of a plugin's manager runs around it."""
        manager = self.manager
        if not job.native or not isinstance(job.placed, LocalMachine):
            return False
        if type(manager).on_start is not Manager.on_start:
            return False
        if type(manager).on_finish is not Manager.on_finish:
            return False
        if job.placed.captures_ordered(job.schedule.ordered):
            return False
        return manager.startable(job.petition)

    def _execute(self, job: Job) -> Iterator[Step]:
        """Run the action, once per attempt (``--retries``), each within ``--timeout``."""
        # Its start's commit may wait for seconds while saving fails (STORE_START_WAIT):
        # not in the petition loop, where every other petition's output and end would
        # wait with it. So the loop tries once; it waits only in a thread.
        quick = not self._events.saving_fails()
        if not quick:
            yield BLOCKING
        try:
            try:
                self._events.job_started(job, wait=not quick)
            except NotSavedError:
                if not quick:
                    raise
                yield BLOCKING  # saving has just begun to fail: the retries wait there
                self._events.job_started(job)
        except NotSavedError as e:
            # Not recorded as started, so not run: after a crash it could run twice. One
            # line here (the store logged the outage); its record is finished later.
            log.warning("petition %s not started: its start could not be saved", job.id)
            job.code, job.message = int(ExitCode.NOT_SAVED), e.message
            return
        if job.native:
            job.queue.put(Started())
        log.info("petition %s started", job.id)
        self._call_hook("on_start", job)
        schedule = job.schedule
        attempts = 1 + schedule.retries
        while True:
            yield from self._attempt(job)
            if job.abandoned:
                return
            if job.cancel_requested or (job.code in (None, 0) and not job.message):
                break  # cancelled, or succeeded
            if job.lost is not None:
                # The machine it ran on is gone (a Dask worker): INTERRUPTED, unless it has
                # attempts left and another machine takes it. The attempt has ended: a
                # cancel while it waits for one must be heard (end_attempt).
                if job.attempt >= attempts or not job.end_attempt():
                    break
                if not job.placed.relocate(job):
                    break
                job.lost = None
            if job.attempt >= attempts:
                if attempts > 1:
                    why = job.message or f"exit code {job.code}"
                    job.message = f"failed after {attempts} attempts (the last: {why})"
                break
            why = job.message or f"exit code {job.code}"
            delay = schedule.retry_delay
            self._notice(
                job,
                f"attempt {job.attempt} of {attempts} failed ({why}); "
                + (f"retrying in {delay:g}s" if delay else "retrying"),
            )
            # A cancel during the delay must be heard at once.
            if not job.end_attempt():
                break
            if delay:
                yield BLOCKING
                if wait_event(job.cancel_event, delay):
                    break  # cancelled while waiting to retry
            if not job.next_attempt():
                break
            try:
                self._events.job_attempt(job)
            except NotSavedError as e:
                # As for a start: an attempt not recorded is not run (a crash could
                # otherwise run it without counting it).
                log.warning("petition %s: attempt %d not started: not saved", job.id, job.attempt)
                job.code, job.message = int(ExitCode.NOT_SAVED), e.message
                break
        if job.cancel_requested:
            # The client hears the end only once the whole tree is gone.
            yield BLOCKING
            for stopper in list(job.stoppers):
                stopper.join()

    def _attempt(self, job: Job) -> Iterator[Step]:
        timeout = job.schedule.timeout
        if timeout is not None:
            self._deadlines.add(job, timeout)
        job.action_done = threading.Event()
        if job.leftovers is None:
            job.leftovers = 0
        mem = job.schedule.mem
        if mem:
            attempt = job.attempt
            job.placed.limit_memory(
                job, mem, lambda reason: self._over_memory(job, attempt, reason)
            )
        yield ACTION
        if job.abandoned:
            return  # its end was recorded without it
        if mem:
            job.placed.check_memory(job)  # the kernel's OOM kill may be why it returned
        if not job.action_returned():
            return
        job.closer = None  # bound to this attempt's context
        if timeout is not None:
            self._deadlines.remove(job)
        if job.timed_out:
            yield BLOCKING
            for stopper in list(job.stoppers):
                stopper.join()  # what the attempt started is gone before the next one
            job.code = int(ExitCode.TIMEOUT)
            job.message = f"timed out after {timeout:g}s"
            log.info("petition %s: attempt %d timed out", job.id, job.attempt)
        elif job.over_memory is not None and not job.cancel_requested:
            yield BLOCKING
            for stopper in list(job.stoppers):
                stopper.join()
            job.code = int(ExitCode.MEMORY)
            job.message = job.over_memory
            log.info("petition %s: attempt %d %s", job.id, job.attempt, job.over_memory)
        elif not job.cancel_requested and job.placed.left_running(job):
            yield BLOCKING
            self._stop_leftovers(job)
        try:
            job.placed.account(job)
        except Exception:
            log.exception("petition %s: accounting for its processes failed", job.id)

    def _stop_leftovers(self, job: Job) -> None:
        """Its action returned (its main process exited): what of its tree still runs is
        stopped now, before it is recorded as ended, and counted in its record."""
        try:
            n = job.placed.stop_leftovers(job, self.grace)
        except Exception:
            log.exception("petition %s: stopping what it left running failed", job.id)
            return
        if n:
            job.leftovers = (job.leftovers or 0) + n
            log.info("petition %s left %d process(es) running; stopped them", job.id, n)

    def _over_memory(self, job: Job, attempt: int, reason: str) -> None:
        """Called by the machine's memory watch: the attempt used more than it asked."""
        if job.exceed_memory(attempt, reason):
            log.info("petition %s: %s; stopping it", job.id, reason)
            self._start_stopper(job, force=True)

    def _time_out(self, job: Job) -> None:
        """Called by the deadline thread: the current attempt ran out of time."""
        if job.time_out(job.attempt):
            log.info("petition %s: timed out; stopping its processes", job.id)
            self._events.job_timed_out(job)
            self._start_stopper(job, force=False)

    def _notice(self, job: Job, text: str) -> None:
        """A line from orcha itself in the petition's stderr (its log and its client)."""
        try:
            job.emit(STDERR, f"orcha: {escaped(text)}\n".encode())
        except Exception:
            log.exception("petition %s: could not report %r", job.id, text)

    def finish(self, job: Job) -> None:
        """Final state, hooks, queue bookkeeping, and the client's last item."""
        if job.cancel_requested:
            final = State.CANCELLED
        elif job.timed_out:
            final = State.FAILED
        elif job.lost is not None:
            final = State.INTERRUPTED
        elif job.code in (None, 0) and not job.message:
            final = State.SUCCEEDED
        else:
            final = State.FAILED
            if job.code in (None, 0):
                job.code = int(ExitCode.FAILED)
        job.set_state(final)
        log.info("petition %s ended: %s (code %s)", job.id, final, job.code)
        self._call_hook("on_finish", job)
        # Recorded and announced while the job is still known by its ID (so a 'wait' or
        # 'follow' arriving now finds it ended), then its slot is freed.
        self._events.job_ended(job)
        if self.scheduler is not None:
            # The petition its slot goes to runs next in this thread: handing it to
            # another one cost each refill a thread switch.
            with self._pool.keeping_next():
                self.scheduler.finished(job)
        job.release()
        self._events.wake()
        if job.native:
            job.queue.put(job.end_item())
        elif job.abandoned:
            job.queue.put(job.client_code())  # its action never reached finish()
        elif not job.finish_was_called:
            job.petition.finish(job.code)

    def _call_hook(self, name: str, job: Job) -> None:
        try:
            getattr(self.manager, name)(job.petition)
        except Exception:
            log.exception("manager.%s raised for petition %s; ignored", name, job.id)

    def cancel_running(self, job: Job, force: bool = False) -> None:
        """Stop a running job's tree in the background (TERM, grace, KILL)."""
        if job.started is None:
            return  # it never ran: no tree (and no stopper list of its own)
        self._start_stopper(job, force)

    def _start_stopper(self, job: Job, force: bool) -> None:
        # A client that stopped reading must not keep the attempt from ending: the thread
        # pumping it may be waiting for room in its queue (see Job.output_waits).
        job.output_waits(False)
        stopper = threading.Thread(
            target=self._stop, args=(job, force), name=f"stop:{job.id}", daemon=True
        )
        stopper.start()
        with job.lock:
            job.stoppers.append(stopper)

    def _stop(self, job: Job, force: bool = False) -> None:
        deadline = time.monotonic() + self.grace
        done = job.action_done  # the attempt being stopped
        closer = job.closer
        if not force and closer is not None and job.cancel_deferred:
            self._close(job, closer)
        job.wake_cancel()
        try:
            n = job.placed.stop_tree(job, self.grace, force=force)
            log.info("petition %s: stopped %d process(es)", job.id, n)
        except Exception:
            log.exception("petition %s: stopping its processes failed", job.id)
        # An action that returns once its processes are gone or it sees ctx.cancelled has
        # returned by now, or does within the rest of the grace period.
        wait = max(ABANDON_WAIT_SECONDS, deadline - time.monotonic())
        if done is not None and not done.wait(wait):
            self._abandon(job, done)

    def _abandon(self, job: Job, done: threading.Event) -> None:
        """The action ignored the stop: a thread cannot be killed, so the petition ends
        without it (recorded, its slot freed, its client told), and the plugin counts
        one action that still runs ('orcha health') until it returns, if ever."""
        if not job.abandon(done):
            return  # it returned meanwhile
        kind = str(getattr(job.petition, "kind", None) or job.kind or "")
        plugin = self.plugins.owner_of(kind) if self.plugins is not None else None
        what = "cancel" if job.cancel_requested else "stop"
        if not job.cancel_requested and job.timed_out:
            job.code = int(ExitCode.TIMEOUT)
            job.message = job.message or f"timed out after {job.schedule.timeout:g}s"
        elif not job.cancel_requested and job.over_memory is not None:
            job.code, job.message = int(ExitCode.MEMORY), job.message or job.over_memory
        note = f"its action ignored the {what} {ABANDONED}: it may still run in the service"
        job.message = f"{job.message}; {note}" if job.message else note
        log.warning(
            "petition %s: the action of kind %s (plugin %s) ignored the %s and has not "
            "returned; abandoned: its thread runs on, its slot is free",
            job.id, kind or "-", plugin or "-", what,
        )  # fmt: skip
        self._count_abandoned(job, 1)
        self._finish_surely(job)
        try:
            job.placed.forget(job)
        except Exception:
            log.exception("petition %s: forgetting its processes failed", job.id)

    def _count_abandoned(self, job: Job, n: int) -> None:
        if self.plugins is not None:
            kind = str(getattr(job.petition, "kind", None) or job.kind or "")
            self.plugins.action_abandoned(kind, n)

    def _close(self, job: Job, closer: Callable[[], Any]) -> None:
        """The kind's close() first, within the grace period; then the action is told it
        is cancelled and has what is left of the grace period to return before its tree
        is stopped."""
        import json

        from orcha.service.plugin_host import call_with_timeout

        deadline = time.monotonic() + self.grace
        outcome = call_with_timeout(closer, self.grace, f"close:{job.id}")
        if not outcome.done.is_set():
            log.warning("petition %s: close() did not return within %gs", job.id, self.grace)
        elif outcome.error is not None:
            e = outcome.error
            log.warning("petition %s: close() failed: %s: %s", job.id, type(e).__name__, e)
        elif outcome.value is not None:
            try:
                json.dumps(outcome.value, allow_nan=False)
                job.outcome = outcome.value
            except (TypeError, ValueError):
                log.warning("petition %s: close() returned an outcome that is not JSON", job.id)
        job.wake_cancel()
        done = job.action_done
        if done is not None:
            done.wait(max(0.0, deadline - time.monotonic()))
