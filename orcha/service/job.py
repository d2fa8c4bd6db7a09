"""Job: the service's record of one petition, from submission to its end."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orcha.errors import ExitCode
from orcha.protocol.messages import STDOUT
from orcha.protocol.schedule import Schedule
from orcha.states import ACTIVE, FINISHED, State, transition

if TYPE_CHECKING:
    from collections.abc import Callable

    from orcha.model import Petition
    from orcha.service.logs import PetitionLog
    from orcha.service.machines import Machine
    from orcha.service.stdin import StdinFeed

_sequence = itertools.count(1)
_DEFAULT_SCHEDULE = Schedule()

# Shared empty placeholders for jobs that have not started; never added to: a job gets its
# own set and list when it starts (see Job.set_state).
_NO_PIDS: set[int] = set()
_NO_STOPPERS: list[threading.Thread] = []


@dataclass(frozen=True)
class Started:
    """Queue item: the petition's action has started."""


@dataclass(frozen=True)
class Detached:
    """Queue item: the service is stopping and keeps the petition queued for its restart;
    the client stops waiting for it."""

    message: str


@dataclass(frozen=True)
class Progress:
    """Queue item: how far the petition has come (``value`` None: indeterminate)."""

    value: float | None
    target: float | None
    unit: str


@dataclass(frozen=True)
class Queued:
    """Queue item: the petition waits, and why (the words of ``orcha status``)."""

    reason: str


@dataclass(frozen=True)
class StdinRead:
    """Queue item: the petition has taken ``read`` bytes of the stdin its client sent
    (``closed``: it takes no more); the client's credit to send more."""

    read: int
    closed: bool = False


@dataclass(frozen=True)
class End:
    """Queue item: the petition ended; the last item a client receives for it."""

    state: State
    code: int
    message: str | None
    by_client: bool
    outcome: Any = None


class Job:
    """One petition inside the service.

    ``native`` jobs come from orcha's own sessions: their queue is an OutputQueue the
    service created, and the client learns the end from an :class:`End` item. Legacy jobs
    come from the original Orcha API: their queue is the client's proxy, and the client
    learns the end from the integer (or None) the action passes to ``Petition.finish``.
    """

    __slots__ = (
        "_cancel_event", "abandoned", "action_done", "announced", "array", "attempt",
        "blocked_since",
        "cancel_deferred", "cancel_requested",
        "cancelled_by_client", "closer", "code", "cpu_time", "created", "deps_ready",
        "ended", "events", "exit_probe", "family", "finish_was_called", "gpu_ids", "id",
        "kind", "late_cancel", "leftovers", "lock", "log", "lost", "machine", "message",
        "native", "outcome",
        "output_lock",
        "over_memory", "parent", "paused", "peak_rss", "petition",
        "pid_starts", "pids", "progress", "released", "schedule", "seq", "session", "started",
        "state",
        "stdin", "stopped", "stoppers", "timed_out", "token", "waits_for",
    )  # fmt: skip

    def __init__(
        self,
        petition: Petition,
        *,
        native: bool,
        token_prefix: str,
        kind: str | None = None,
        seq: int | None = None,
        token: str | None = None,
        schedule: Schedule | None = None,
        created: float | None = None,
    ) -> None:
        # Arrival order: the record's number when the service keeps records (so the order
        # survives restarts), else a process-wide counter.
        self.seq = next(_sequence) if seq is None else seq
        self.petition = petition
        self.id = str(petition.id)
        self.kind = kind
        self.native = native
        self.token = token or f"{token_prefix}-{self.seq}"
        self.state = State.QUEUED
        self.lock = threading.Lock()
        # A flag for the many cheap checks; the Event only once a running petition's
        # context waits on it (an Event per queued petition cost ~1 KB each).
        self.cancel_requested = False
        self._cancel_event: threading.Event | None = None
        self.cancelled_by_client = False
        # Processes it started: filled in once it runs (empty and shared until then).
        self.pids: set[int] = _NO_PIDS
        self.pid_starts: dict[int, int] = {}  # pid -> start ticks, for the record
        self.code: int | None = None
        self.message: str | None = None
        self.finish_was_called = False
        self.session: Any = None
        self.created = time.time() if created is None else created
        # Scheduling (see orcha.service.scheduler): what it asked for, what it holds.
        self.schedule = schedule if schedule is not None else _DEFAULT_SCHEDULE
        self.paused = False  # admission paused for this petition ('orcha pause ID')
        # A member of an array with a %N limit: (the array's key, its name, N).
        self.array: tuple[str, str, int] | None = None
        self.stopped = False  # its running tree was SIGSTOPped ('orcha pause --running')
        self.deps_ready = not self.schedule.dependencies
        self.blocked_since: float | None = None  # first found waiting for resources
        self.machine: Machine | None = None  # where it was admitted (kept after it ends)
        self.lost: str | None = None  # why the machine it ran on was lost (a Dask worker)
        # Between attempts, what it waits for to run again (a worker to replace a lost one).
        self.waits_for: str | None = None
        self.gpu_ids: tuple[str, ...] = ()
        self.attempt = 1
        self.timed_out = False  # the current attempt ran out of time
        # The current attempt used more memory than it asked for: the one-line reason.
        self.over_memory: str | None = None
        self.leftovers: int | None = None  # processes stopped after its main one ended
        self.progress: dict[str, Any] | None = None  # the last progress it reported
        self.outcome: Any = None  # JSON data its kind recorded (ctx.set_outcome, close())
        # Accounting over every attempt (see used()): None until something was measured.
        self.cpu_time: float | None = None  # CPU seconds, user + system, of its tree
        self.peak_rss: int | None = None  # the most resident memory seen, in bytes
        self.closer: Any = None  # its kind's close(), bound to its context, while running
        self.cancel_deferred = False  # cancelled, but close() comes before the action hears
        self.action_done: threading.Event | None = None  # set when an attempt's action returns
        # Whether the attempt's process has exited (observable, reaped or not), where the
        # attempt is that one process (the petition loop's): a cancel coming later finds
        # its outcome decided. A cancel that came then, to stop a next attempt.
        self.exit_probe: Callable[[], bool] | None = None
        self.late_cancel: tuple[str, bool] | None = None
        # Its action ignored a stop and was left running in its thread; the job has ended
        # without it (see Runner): nothing that thread does any more reaches the job.
        self.abandoned = False
        # True once the runner is done with it (its slot and ID free); until then None, or
        # the Event a waiter made (see wait_released).
        self.released: bool | threading.Event | None = None
        self.started: float | None = None
        self.ended: float | None = None
        self.stoppers: list[threading.Thread] = _NO_STOPPERS
        self.log: PetitionLog | None = None  # set by a service that keeps logs
        self.stdin: StdinFeed | None = None  # what its attached client sends to its stdin
        # Makes "log written + followers fed" one step, so a follower that replays the log
        # up to a point and then subscribes (orcha.service.events) misses nothing, twice
        # nothing.
        self.output_lock = threading.Lock()
        self.events: Any = None  # the service's Events: followers, watchers, hooks
        # Set by Events (under the output lock) once its end has been told: from then on a
        # new subscriber is answered at once (its record is written by then, too).
        self.announced = False
        # Child petitions (orcha.service.children): the job that submitted this one, and
        # a running job's own children (set when it starts).
        self.parent: Job | None = None
        self.family: Any = None
        petition.record = self

    @property
    def priority(self) -> int:
        try:
            return int(self.petition.priority)
        except (AttributeError, TypeError, ValueError):
            return 0

    @property
    def placed(self) -> Machine:
        """The machine the scheduler admitted it onto (RuntimeError before that)."""
        machine = self.machine
        if machine is None:
            raise RuntimeError(f"petition {self.id} runs on no machine")
        return machine

    @property
    def queue(self) -> Any:
        return self.petition.queue

    def emit(self, stream: int, data: bytes) -> None:
        """Output of the petition: kept in its log, sent to its client if attached and to
        every client following it."""
        with self.output_lock:
            if self.log is not None:
                self.log.write(stream, data)
            if self.events is not None:
                self.events.feed(self, stream, data)
        if self.events is not None and self.events.wants_output:  # decode only for watchers
            name = "stdout" if stream == STDOUT else "stderr"
            text = data.decode(errors="replace")
            self.events.watch_event(self, "output", {"stream": name, "text": text})
        # The original API's clients read text lines from their queue, then the exit code.
        self.queue.put((stream, data) if self.native else data.decode(errors="replace"))

    def output_waits(self, waits: bool) -> None:
        """Whether a put of its output may wait for its client to read (as it does while
        it runs: a slow reader slows it). Not once it is being stopped: its output goes
        to its log, and to its client only as far as the client's queue has room
        (:meth:`OutputQueue.stop_waiting <orcha.protocol.outputs.OutputQueue.stop_waiting>`)."""
        stop_waiting = getattr(self.queue, "stop_waiting", None)
        if stop_waiting is not None:
            stop_waiting(not waits)

    def report_progress(self, value: float | None, target: float | None, unit: str) -> None:
        """How far the petition has come: to its client, to watchers, and for status."""
        self.progress = {"value": value, "target": target, "unit": unit}
        if self.events is not None and self.events.watching:
            self.events.watch_event(self, "progress", dict(self.progress))
        if self.native:
            self.queue.put(Progress(value, target, unit))

    def release(self) -> None:
        """The runner is done with it: its slot and its ID are free."""
        with self.lock:
            waiter, self.released = self.released, True
        if isinstance(waiter, threading.Event):
            waiter.set()

    def wait_released(self, timeout: float) -> bool:
        """Wait until :meth:`release` (at most ``timeout`` seconds); whether it came."""
        with self.lock:
            if self.released is True:
                return True
            if self.released is None:
                self.released = threading.Event()
            waiter = self.released
        assert isinstance(waiter, threading.Event)
        return waiter.wait(timeout)

    @property
    def cancel_event(self) -> threading.Event:
        """Set once the current attempt is asked to stop: the petition is cancelled or the
        attempt timed out (created on first use)."""
        with self.lock:
            if self._cancel_event is None:
                self._cancel_event = threading.Event()
                stopping = self.timed_out or self.over_memory is not None
                if (self.cancel_requested and not self.cancel_deferred) or stopping:
                    self._cancel_event.set()
            return self._cancel_event

    def time_out(self, attempt: int) -> bool:
        """The given attempt ran out of time: ask it to stop. False if that attempt has
        already ended (its process has exited, :attr:`exit_probe`) or the petition is
        being cancelled anyway."""
        with self.lock:
            if self.attempt != attempt or self.state is not State.RUNNING:
                return False
            if self.cancel_requested or self.finish_was_called:
                return False
            probe = self.exit_probe
            if probe is not None and probe():
                return False  # its process exited in time: its end is being taken
            self.timed_out = True
            if self._cancel_event is not None:
                self._cancel_event.set()
            return True

    def used(self, cpu: float | None = None, rss: int | None = None, total: bool = False) -> None:
        """Account for resources its processes used: ``cpu`` seconds more (with
        ``total``, ``cpu`` is a total for the whole petition so far, as its cgroup
        counts), ``rss`` bytes resident at a peak."""
        with self.lock:
            if cpu is not None:
                known = self.cpu_time or 0.0
                self.cpu_time = max(known, cpu) if total else known + cpu
            if rss is not None:
                self.peak_rss = max(self.peak_rss or 0, rss)

    def exceed_memory(self, attempt: int, reason: str) -> bool:
        """The given attempt used more memory than it asked for (``reason``: one line):
        ask it to stop. False if that attempt has ended or is being stopped anyway."""
        with self.lock:
            if self.attempt != attempt or self.state is not State.RUNNING:
                return False
            if self.cancel_requested or self.timed_out or self.over_memory is not None:
                return False
            self.over_memory = reason
            if self._cancel_event is not None:
                self._cancel_event.set()
            return True

    def end_attempt(self) -> bool:
        """The attempt ended and another will follow: from now on a cancel is heard (and
        the stop request is fresh). False if the petition is being cancelled."""
        with self.lock:
            self.exit_probe = None
            late, self.late_cancel = self.late_cancel, None
            if late is not None and not self.cancel_requested:
                self.message, self.cancelled_by_client = late
                self.cancel_requested = True
            if self.cancel_requested:
                return False
            self.timed_out = False
            self.over_memory = None
            self._cancel_event = None
            self.finish_was_called = False
        self.output_waits(True)  # the next attempt's client slows it again
        return True

    def next_attempt(self) -> bool:
        """Start the next attempt (no exit code or message yet); False if the petition is
        being cancelled."""
        with self.lock:
            if self.cancel_requested:
                return False
            self.attempt += 1
            self.code = None
            self.message = None
            return True

    def set_state(self, new: State) -> None:
        """Move to ``new``; InvalidTransition if the lifecycle forbids it."""
        with self.lock:
            self.state = transition(self.state, new)
            if new in ACTIVE:
                self.started = time.time()
                self.pids, self.stoppers = set(), []
            elif new in FINISHED:
                self.ended = time.time()

    def request_cancel(self, reason: str, by_client: bool, defer: bool = False) -> bool:
        """Mark the job cancelled; False if it had already been asked (or has ended).

        A job whose process has exited on its own (:attr:`exit_probe`) has ended as far
        as a cancel goes: what the process did is its outcome (never CANCELLED with the
        process's own code); if another attempt would follow, the cancel is kept
        (:attr:`late_cancel`) and stops it (:meth:`end_attempt`).

        A running job whose kind defines ``close()`` is not told yet (its cancel event
        stays clear): the runner calls ``close()`` first, then :meth:`wake_cancel`. With
        ``defer`` it is not told yet either, whatever its kind: a parent is marked before
        its children are cancelled (so that it ends CANCELLED even if it returns when
        they end), and told only after them (so that they end first).
        """
        with self.lock:
            if self.cancel_requested or self.state in FINISHED or self.finish_was_called:
                return False  # asked already, or the action has reported its end
            probe = self.exit_probe
            if probe is not None and probe():
                if self.attempt <= self.schedule.retries:  # another attempt may follow
                    self.late_cancel = self.late_cancel or (reason, by_client)
                return False
            self.message = reason  # what its clients and its record are told
            self.cancelled_by_client = by_client
            self.cancel_requested = True
            self.cancel_deferred = self.closer is not None or defer
            if self._cancel_event is not None and not self.cancel_deferred:
                self._cancel_event.set()
            return True

    def wake_cancel(self) -> None:
        """Tell the running action it is cancelled (after its kind's close())."""
        with self.lock:
            self.cancel_deferred = False
            if self.cancel_requested and self._cancel_event is not None:
                self._cancel_event.set()

    def abandon(self, done: threading.Event) -> bool:
        """Give up on the attempt whose action sets ``done`` when it returns: from now on
        what that action reports (its code, its finish) is ignored. False if it has
        returned meanwhile (or another attempt runs, or the job has ended)."""
        with self.lock:
            if self.abandoned or self.action_done is not done or done.is_set():
                return False
            if self.state in FINISHED:
                return False
            self.abandoned = True
            self.finish_was_called = True  # what the action passes to finish() is ignored
            return True

    def action_returned(self) -> bool:
        """The current attempt's action returned: True, unless it had been abandoned (its
        job has ended without it)."""
        with self.lock:
            if self.abandoned:
                return False
            if self.action_done is not None:
                self.action_done.set()
            return True

    def finish_called(self, ret: int | None) -> None:
        """``Petition.finish(ret)`` was called by the action (or ``Kind.run`` returned
        ``ret``). A code outside 0-255 (negative, or more than an exit status holds, or
        more than the database's integers hold) fails the petition: its code becomes
        FAILED's and its message says which code it was."""
        with self.lock:
            if self.finish_was_called:
                return
            self.finish_was_called = True
            if ret is not None and not 0 <= ret <= 255:
                self.message = self.message or f"exit code {ret} is out of range 0-255"
                ret = int(ExitCode.FAILED)
            # finish() without a code means success, unless it was cancelled: then no code
            # is known (as for a petition cancelled before it ran), not a success's 0.
            self.code = ret if ret is not None else (None if self.cancel_requested else 0)
        if not self.native:
            # The original API's client returns the integer it reads, so a cancelled
            # petition must not look like a success to it.
            self.queue.put(self.client_code() if self.cancel_requested else ret)

    def client_code(self) -> int:
        """The exit code a client of this job should end with."""
        if self.state is State.CANCELLED or self.cancel_requested:
            return int(ExitCode.INTERRUPTED if self.cancelled_by_client else ExitCode.CANCELLED)
        if self.state is State.INTERRUPTED:
            return int(ExitCode.LOST_SERVICE)
        return self.code if self.code is not None else 0

    def end_item(self) -> End:
        return End(
            self.state, self.client_code(), self.message, self.cancelled_by_client, self.outcome
        )

    def summary(self) -> dict[str, Any]:
        """How it ended (or where it is), for waiters, followers and watchers."""
        return {
            "id": self.id,
            "state": str(self.state),
            "code": self.code,
            "message": self.message,
            "attempt": self.attempt,
            "outcome": self.outcome,
        }

    def describe(self) -> dict[str, Any]:
        """Plain-data summary (for ``info`` and logs)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "state": str(self.state),
            "priority": self.priority,
            "created": self.created,
            "started": self.started,
            "ended": self.ended,
            "code": self.code,
            "attempt": self.attempt,
            "gpus": list(self.gpu_ids),
            "machine": self.machine.name if self.machine is not None else None,
            "paused": self.paused,
        }
