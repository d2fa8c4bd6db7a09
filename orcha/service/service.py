"""Service: the core of ``orcha serve``, without sockets or signals.

It holds the parts :func:`orcha.service.build.build_service` composed (the manager and its
kinds, the scheduler, the runner, the records, the event fan-out, the plugins) and owns a
petition's way through them: intake (a client's request, an original-API message or a
running petition's child becomes a recorded, queued Job), cancellation (children
first), what the runner reports (started, ended: recorded and announced; children left
behind cancelled), the peers that submitted, and the stop that keeps the queue for the
next start. The daemon loop (``orcha.service.daemon``) serves it on a socket; the
handlers (``orcha.service.handlers``) answer requests with it; tests drive it in process.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orcha.defaults import DATABASE_NAME, LOGS_DIR_NAME, STDIN_WINDOW_BYTES, STORE_START_WAIT
from orcha.errors import ExitCode, InvalidPetitionError, PetitionError
from orcha.protocol.managed import proxy_ident
from orcha.protocol.schedule import Schedule
from orcha.service import bulk
from orcha.service.children import Family
from orcha.service.intake import Intake, timed_schedule
from orcha.service.job import Detached, Job, StdinRead
from orcha.service.logs import PetitionLog
from orcha.service.queued_notices import QueuedNotices
from orcha.service.recovery import save_end
from orcha.service.references import intake_name
from orcha.service.stdin import LOST_AT_STOP, StdinFeed
from orcha.service.store import Store
from orcha.settings import Settings, ensure_logs_dir, ensure_state_dir
from orcha.states import State

if TYPE_CHECKING:
    from orcha.model import Message, Petition
    from orcha.protocol.messages import SubmitRequest
    from orcha.service.events import Events
    from orcha.service.handlers import Handler
    from orcha.service.kinds import RuntimeKinds
    from orcha.service.manager import Manager
    from orcha.service.peer import Peer
    from orcha.service.plugin_host import PluginHost
    from orcha.service.reload import ConfigSource
    from orcha.service.runner import Runner
    from orcha.service.scheduler import Scheduler
    from orcha.service.server import ManagerServer

log = logging.getLogger("orcha.service")


class Service(Intake):
    """The service core. Built by ``build_service``, which sets the parts that need the
    service itself (``scheduler``, ``runner``, ``events``, ``handlers``)."""

    scheduler: Scheduler
    runner: Runner
    events: Events
    handlers: dict[str, Handler]

    def __init__(
        self,
        manager: Manager,
        settings: Settings,
        *,
        plugins: PluginHost,
        runtime_kinds: RuntimeKinds,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.manager = manager
        self.settings = settings
        self.plugins = plugins
        self.runtime_kinds = runtime_kinds
        self.clock = clock
        self.token_prefix = f"{os.getpid()}.{time.time_ns()}"
        self.stopping = False
        self.stop_asked = 0  # by a client ('orcha shutdown'): 1, stop; 2, by force (--force)
        self.wake_on_submit = False  # the daemon reports the queue length to systemd
        self.server: ManagerServer | None = None  # set by the daemon that serves it
        self.store: Store | None = None  # opened by open_store()
        self.log_cap = settings.log_cap
        self.peers: set[Peer] = set()
        self.peers_lock = threading.Lock()
        self._envs: dict[frozenset[tuple[str, str]], dict[str, str]] = {}
        self._intake: set[str] = set()  # IDs being recorded (under the scheduler's lock)
        self._recorded = threading.Condition()  # told when IDs being recorded are no more
        self.waker_r, self.waker_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # What a reload reads again (orcha.service.reload; set by 'orcha serve'), and the
        # group limits the configuration file gave (applied at start and at each reload).
        self.config_source: ConfigSource | None = None
        self.config_groups: dict[str, int] = {}
        self.dask: Any = None  # the Dask cluster whose workers run petitions (orcha.service.dask)
        self._queued_notices: QueuedNotices | None = None  # created on first use

    # -- start and end -------------------------------------------------------------------
    def open_store(self) -> None:
        """Open the records (and the logs' directory) in the state directory."""
        ensure_state_dir(self.settings)
        ensure_logs_dir(self.settings)
        self.store = Store(os.path.join(self.settings.state_dir, DATABASE_NAME))
        self.events.store = self.store

    def start(self) -> None:
        """Start the plugins, then take back what a previous service left (runtime kinds,
        groups, queued petitions): before petitions run or clients come."""
        from orcha.service import recovery

        self.plugins.start(self.store)
        assert self.store is not None
        self.runtime_kinds.load(self.store)
        recovery.load_groups(self)
        for name, limit in self.config_groups.items():  # the file beats 'orcha group set'
            self.scheduler.set_group_limit(name, limit)
        for warning in self.scheduler.group_warnings().values():
            log.warning("%s", warning)
        recovery.restore(self)

    def close(self) -> None:
        """Close the records (the service has stopped; its plugins too). The waker pipe
        stays open: a runner thread finishing its bookkeeping may still write to it."""
        for machine in self.scheduler.machines:
            try:
                machine.shutdown(self.settings.grace)
            except Exception:
                log.exception("%s: stopping what petitions left running failed", machine.name)
        if self.store is not None:
            self.store.close()

    # -- intake --------------------------------------------------------------------------
    def submit(
        self, request: SubmitRequest, queue: Any, peer: Peer | None, restart_of: int | None = None
    ) -> Job:
        """Queue a petition for an orcha client (``queue``: its client's stream, or DISCARD
        when detached; ``restart_of``: the record it runs again, ``orcha restart``).
        Raises PetitionError if refused."""
        self._check_accepting()
        # Petitions from one shell carry the same environment: keep one copy of it.
        if len(self._envs) > 1024:
            self._envs.clear()  # bounded: many different environments share nothing anyway
        request.env = self._envs.setdefault(frozenset(request.env.items()), request.env)
        resolved = self.runtime_kinds.resolve(request)  # a template's parent kind, if one
        petition = self.manager.petition_from_request(resolved, queue)
        job = self._enqueue(
            petition,
            native=True,
            kind=request.kind,
            request=resolved,
            peer=peer if request.attach else None,
            restart_of=restart_of,
        )
        log.info("petition %s (%s) queued", job.id, request.kind)
        if request.attach and job.state is State.QUEUED:
            if self._queued_notices is None:
                self._queued_notices = QueuedNotices(self.scheduler)
            self._queued_notices.add(job)  # its client hears why it waits
        if self.wake_on_submit:
            self.wake()  # the main loop tells systemd the new queue length
        return job

    def submit_child(self, parent: Job, request: SubmitRequest, queue: Any) -> Job:
        """Queue a child petition of the running ``parent`` (its kind's ``ctx.submit``):
        the intake of :meth:`submit`, in process, owned by the parent instead of a
        client; its output goes into ``queue``. Raises PetitionError if refused."""
        self._check_accepting()
        resolved = self.runtime_kinds.resolve(request)
        petition = self.manager.petition_from_request(resolved, queue)
        job = self._enqueue(
            petition, native=True, kind=request.kind, request=resolved, peer=None, parent=parent
        )
        log.info("petition %s (%s) queued, a child of %s", job.id, request.kind, parent.id)
        if self.wake_on_submit:
            self.wake()
        return job

    def submit_message(self, message: Message, peer: Peer) -> Job:
        """Queue a petition from an original-API message. Raises PetitionError if refused."""
        self._check_accepting()
        try:
            petition = self.manager.convert_to_petition(message)
        except PetitionError:
            raise
        except Exception as e:
            raise InvalidPetitionError(f"the service could not use the message: {e}") from e
        if petition is None:
            raise InvalidPetitionError(
                f"the service could not turn message {getattr(message, 'id', '?')!r} "
                "into a petition (missing or invalid fields)"
            )
        # A message may name a plugin kind (KindManager): status shows it like any other.
        kind = getattr(petition, "kind", None) or None
        return self._enqueue(petition, native=False, kind=kind, request=None, peer=peer)

    def _enqueue(
        self,
        petition: Petition,
        native: bool,
        kind: str | None,
        request: SubmitRequest | None,
        peer: Peer | None,
        parent: Job | None = None,
        restart_of: int | None = None,
    ) -> Job:
        """Record and queue a petition (a child of ``parent`` if given); DuplicateIdError
        if its ID is queued or running, NotSavedError if it cannot be recorded.

        The ID is taken under the scheduler's lock (concurrent submits of one ID see each
        other), recorded outside it (a slow, full or locked database never holds up run
        or cancel), and queued under it again (a parent cancelled meanwhile refuses it).
        Without an ID, it is named by its record number (see orcha.service.references)."""
        petition_id = intake_name(petition.id, native)
        if not petition_id:
            petition.id = ""  # named by its record number once recorded (_queue_recorded)
        schedule = (request.schedule if request else None) or Schedule()
        self.scheduler.check_feasible(schedule)
        self._take_ids([petition_id], parent)
        try:
            self.check_no_live_array(petition_id)
            self._check_dependencies(petition_id, schedule)  # reads records: not locked
            # Named before the record exists, so one INSERT holds everything.
            uid = os.urandom(8).hex()
            token, log_path = f"{self.token_prefix}-{uid}", self.log_path(uid)
            seq = None
            now = self.clock()
            schedule = timed_schedule(schedule, now)
            if self.store is not None:
                seq = self.store.add(
                    {
                        **self._new_record(petition, native, kind, request, schedule,
                                           parent, now, token, log_path),
                        **({"restart_of": restart_of} if restart_of is not None else {}),
                    }
                )  # fmt: skip
            prepare = _stdin_feed if request is not None and request.stdin else None
            job = self._queue_recorded(
                petition,
                native,
                kind,
                schedule,
                peer,
                parent,
                seq,
                token,
                log_path,
                now,
                prepare,
            )
        finally:
            self._release_ids([petition_id])
        return job

    def _check_accepting(self) -> None:
        if self.stopping:
            raise PetitionError(
                "the service is stopping and accepts no petitions; submit again once it "
                "has stopped and 'orcha serve' runs again",
                ExitCode.REFUSED,
            )

    def open_log(self, job: Job, path: str) -> PetitionLog:
        """``job``'s output log at ``path``: if a write fails, its record says why."""

        def truncated(reason: str) -> None:
            log.warning("petition %s: its output log is incomplete: %s", job.id, reason)
            if self.store is not None and job.seq is not None:
                self.store.update_later(job.seq, log_truncated=reason)

        return PetitionLog(path, self.log_cap, on_truncated=truncated)

    def log_path(self, uid: str) -> str:
        """Where the output of the petition with this unique name is kept."""
        return os.path.join(self.settings.state_dir, LOGS_DIR_NAME, f"{uid}.log")

    def end_of(self, petition_id: str) -> tuple[State, int | None] | None:
        """How the newest petition with this ID ended (records), or None."""
        record = self.events.ended_record(petition_id)
        if record is None:
            return None
        state = State(record["state"])
        if state in (State.QUEUED, State.RUNNING):
            # Queued before a restart and not queued again: treat as ended, not waiting.
            return (State.INTERRUPTED, record["code"])
        return (state, record["code"])

    def failed_waiting(self, job: Job) -> None:
        """The scheduler failed a waiting job (a dependency failed): record and tell."""
        self.job_ended(job)
        job.queue.put(job.end_item() if job.native else job.code)

    # -- cancellation ----------------------------------------------------------------------
    def cancel(self, job: Job, reason: str, by_client: bool) -> bool:
        """Cancel ``job``: its unfinished children first, then drop it if waiting, stop
        its tree if running. False if it has ended meanwhile (its process exited on its
        own: that is its outcome), or a cancel was asked before."""
        # Marked first, told last: a parent whose action returns as soon as its children
        # end (cancelled) must still end CANCELLED, not FAILED by their codes.
        asked = job.request_cancel(reason, by_client, defer=job.family is not None)
        if job.family is not None:
            job.family.cancel_all(f"its parent {job.id} was cancelled")
        if not asked:
            return job.late_cancel is not None  # it stops the next attempt
        log.info("petition %s: %s", job.id, reason)
        if self.scheduler.remove_queued(job, on_removed=self.job_ended):
            job.queue.put(job.end_item() if job.native else job.client_code())
        else:
            self.runner.cancel_running(job)
        return True

    def job_timed_out(self, job: Job) -> None:
        """An attempt of ``job`` ran out of time: its children go first (a parent blocked
        on one wakes when it ends)."""
        if job.family is not None:
            job.family.cancel_all(f"its parent {job.id} timed out")

    # -- what the runner reports (RunnerEvents) ----------------------------------------------
    def job_started(self, job: Job, wait: bool = True) -> None:
        if self.store is not None:
            # Committed now, before its action starts a process: if the service dies from
            # here on, the next one finds it RUNNING and marks it INTERRUPTED; it never
            # runs it a second time. Not recorded (disk full), it is not run at all.
            # With its token: a petition queued again after a restart has a new one.
            self.store.update(
                job.seq, state=str(job.state), started=job.started, machine=job.placed.name,
                token=job.token, wait=STORE_START_WAIT if wait else 0,
                give_up=lambda: job.cancel_requested,
                what="it did not run",
            )  # fmt: skip
        if job.native:
            job.family = Family(self, job)
        self.events.watch_event(job, "started", {})

    def saving_fails(self) -> bool:
        return self.store is not None and self.store.outage.problem is not None

    def job_attempt(self, job: Job) -> None:
        if job.family is not None:
            job.family.cancel_left()  # what the last attempt left
            job.family.reopen()
        if self.store is not None:
            # Committed before the attempt starts: a restart after a crash counts it.
            self.store.update(
                job.seq, attempt=job.attempt, wait=STORE_START_WAIT,
                give_up=lambda: job.cancel_requested, what="its next attempt did not run",
            )  # fmt: skip
        self.events.watch_event(job, "attempt", {"attempt": job.attempt})

    def job_pid(self, job: Job, pid: int) -> None:  # with its start, if its machine gives one
        started = job.placed.start_ticks(pid)
        if self.store is None or started is None:
            return
        with job.lock:
            job.pid_starts[pid] = started
            pids = [[p, t] for p, t in sorted(job.pid_starts.items())]
        self.store.update_later(job.seq, pids=pids)

    def job_ended(self, job: Job) -> None:
        """Called (in any thread) once a job has ended, before its client is told."""
        if job.family is not None:
            job.family.cancel_left()
        parent = job.parent
        if parent is not None and parent.family is not None:
            parent.family.ended()
        if self.store is not None:
            save_end(
                self.store, job, state=str(job.state), ended=job.ended or self.clock(),
                code=job.code, message=job.message,
                **({"outcome": job.outcome} if job.outcome is not None else {}),
                **({"leftovers": job.leftovers} if job.leftovers is not None else {}),
                **({"cpu_time": job.cpu_time} if job.cpu_time is not None else {}),
                **({"peak_rss": job.peak_rss} if job.peak_rss is not None else {}),
            )  # fmt: skip
        if job.log is not None:
            job.log.close()
        if job.stdin is not None:
            job.stdin.close()  # before its end reaches the client: nothing follows it
        self.events.ended(job)
        peer = job.session
        if peer is not None:
            with self.peers_lock:
                peer.submitted.discard(job)
                if not job.native:
                    if peer.closed:
                        self._purge(job)
                    else:
                        peer.legacy_ended.append(job)

    def wake(self) -> None:
        """A slot was freed, or the queue changed: let the main loop look again, if it
        has a reason to (it waits for the last petition to stop, or tells systemd the
        queue's length). Otherwise nothing: a wake-up of the main thread per petition
        cost each petition a thread switch for nothing."""
        if not (self.stopping or self.wake_on_submit):
            return
        try:
            os.write(self.waker_w, b"\0")
        except BlockingIOError:
            pass  # the loop is awake already

    # -- peers -----------------------------------------------------------------------------
    def peer_opened(self, peer: Peer) -> None:
        with self.peers_lock:
            self.peers.add(peer)

    def peer_closed(self, peer: Peer) -> None:
        """``peer`` has gone (its client exited, was killed, or its terminal closed): what
        it submitted and has not ended is cancelled, as if the client pressed Ctrl+C."""
        for job in bulk.cancel_order(list(peer.submitted)):  # dependants first
            self.cancel(job, "its client went away", by_client=True)
        self.events.unsubscribe(peer)
        with self.peers_lock:
            self.peers.discard(peer)
            ended, peer.legacy_ended = peer.legacy_ended, []
        for job in ended:
            self._purge(job)

    def _purge(self, job: Job) -> None:
        """Drop the served objects an ended original-API job referenced."""
        ident = proxy_ident(job.queue)
        if ident is not None and self.server is not None:
            self.server.purge(ident)

    # -- stop ------------------------------------------------------------------------------
    def begin_stop(self) -> None:
        """Stop admitting; keep queued petitions (recorded, they are queued again when the
        service restarts); cancel running ones (trees stopped: TERM, grace, KILL)."""
        self.stopping = True
        waiting = self.scheduler.queued_count
        queued = self.scheduler.drain_queued()  # Jobs only: compact entries need nothing
        running = self.scheduler.running()
        # Children are not kept: their parents are cancelled. Nor those whose input their
        # client sends (the stop disconnects it): they would run later on an empty stdin.
        fed = {j for j in queued if j.stdin is not None and j.stdin.waiting}
        kept = [
            j for j in queued
            if j.native and self.store is not None and j.parent is None and j not in fed
        ]  # fmt: skip
        log.warning(
            "stopping: cancelling %d running petition(s), keeping %d queued for the next "
            "start; a second signal ('orcha shutdown --force') kills them at once",
            len(running),
            waiting - len(queued) + len(kept),
        )
        for job in kept:
            self.scheduler.forget(job)
            peer, job.session = job.session, None  # its client leaving must not cancel it
            if peer is not None:
                with self.peers_lock:
                    peer.submitted.discard(job)
            if job.log is not None:
                job.log.close()
            job.queue.put(
                Detached(
                    f"the service is stopping; petition {job.id} stays queued and runs when "
                    f"it starts again (follow it then with 'orcha follow {job.id}')"
                )
            )
        keep = set(kept)  # a set: with 100,000 queued a list lookup made this quadratic
        for job in [j for j in queued if j not in keep] + running:
            reason = LOST_AT_STOP if job in fed else "the service is stopping"
            self.cancel(job, reason, by_client=False)

    def force_stop(self) -> None:
        """Kill every running tree at once (a second signal)."""
        running = self.scheduler.running()
        log.warning("forced stop: killing %d petition(s) now", len(running))
        for job in running:
            job.request_cancel("the service was stopped by force", by_client=False)
            job.output_waits(False)  # a client that stopped reading must not hold it up
            job.placed.stop_tree(job, 0, force=True)

    def status_words(self) -> str:
        """One line for systemd's STATUS=: the queue and the running petitions."""
        scheduler = self.scheduler
        words = (
            f"{scheduler.queued_count} queued, {scheduler.running_count} running, "
            f"{scheduler.used_cpus}/{scheduler.capacity} CPUs in use"
        )
        return words + (", paused" if scheduler.paused_all else "")


def _stdin_feed(job: Job) -> None:
    """Give an attached petition the feed of its stdin (what it has read goes to its
    client), before it is queued."""

    def report(read: int, closed: bool) -> None:
        job.queue.put(StdinRead(read, closed), block=False)

    job.stdin = StdinFeed(STDIN_WINDOW_BYTES, report)
