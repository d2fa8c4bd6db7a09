"""Service: the ``orcha serve`` process.

The main thread runs one event loop over three descriptors, with no timeout: the
listening socket, the signal wakeup pipe, and a waker pipe other threads write to when a
petition ends. Signal handlers only count signals; the loop acts on the count. The first
SIGINT/SIGTERM/SIGHUP stops accepting, keeps the queued petitions for the next start and
cancels the running ones (their trees get TERM, grace, KILL), then exits 0 once all have
ended; a second signal kills every tree at once and exits 1.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import selectors
import signal
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from orcha import __version__
from orcha.defaults import (
    DATABASE_NAME,
    DELIVERY_DRAIN_SECONDS,
    LOGS_DIR_NAME,
    RECHECK_SECONDS,
)
from orcha.errors import DuplicateIdError, ExitCode, InvalidPetitionError, PetitionError
from orcha.protocol import messages, transport
from orcha.protocol.managed import proxy_ident, registry
from orcha.protocol.outputs import DISCARD
from orcha.protocol.schedule import Schedule
from orcha.service.host import Host
from orcha.service.job import Detached, Job
from orcha.service.lock import AddressLock
from orcha.service.logs import PetitionLog
from orcha.service.notify import EventSinks, FinishHooks, Webhooks
from orcha.service.plugin_host import PluginHost
from orcha.service.procs import ProcessControl, reset_child_signals, start_ticks
from orcha.service.runner import Runner
from orcha.service.runtime_kinds import RuntimeKinds
from orcha.service.scheduler import Scheduler
from orcha.service.server import ManagerServer
from orcha.service.store import Store
from orcha.service.systemd import Notifier
from orcha.settings import Settings, ensure_runtime_dir, ensure_state_dir
from orcha.states import State

if TYPE_CHECKING:
    from orcha.interfaces import Message, Petition
    from orcha.lib import Manager
    from orcha.protocol.messages import SubmitRequest
    from orcha.service.session import Session

log = logging.getLogger("orcha.service")

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

#: Seconds the service waits, once every petition has ended, for sessions to deliver the
#: last output and end events to their clients before it exits.
_FLUSH_SECONDS = 2.0


class Service:
    """Serves ``manager`` at ``settings.address`` until stopped by a signal."""

    def __init__(
        self,
        manager: Manager,
        settings: Settings,
        procs: ProcessControl | None = None,
        host: Host | None = None,
        plugins: PluginHost | None = None,
        webhooks: list[dict[str, Any]] | None = None,
        on_finish: str | None = None,
        sinks: list[tuple[str, Any]] | None = None,
    ):
        """``webhooks``: [{"url", "events"}] for every petition; ``on_finish``: the hook
        command template (both from the configuration file); ``sinks``: (plugin name,
        callable) receiving every event envelope."""
        self.manager = manager
        self.plugins = plugins or PluginHost({}, {})
        self.webhooks = Webhooks(webhooks, failed=self._webhook_failed)
        self.finish_hooks = FinishHooks(on_finish)
        self.sinks = EventSinks(sinks or [])
        self.runtime_kinds = RuntimeKinds(manager.kinds, service=str(settings.address))
        self.systemd = Notifier()
        # Output and progress events are built only if someone wants them.
        self._hooks_want_stream = bool(self.sinks.sinks) or any(
            {"output", "progress"} & w["events"] for w in self.webhooks.everyone
        )
        self.settings = settings
        self.procs: ProcessControl = procs or getattr(manager, "procs", None) or ProcessControl()
        self.host = host or Host()
        self.runner = Runner(manager, self.procs, settings.grace, self)
        gpus = settings.gpus if settings.gpus is not None else self.host.discover_gpus()
        self.scheduler = Scheduler(
            self.runner.start,
            capacity=lambda: manager.max_running,
            host=self.host,
            gpus=gpus,
            aging=settings.aging,
            backfill_bound=settings.backfill_bound,
            ended=self._end_of,
            failed=self._failed_waiting,
        )
        self.runner.scheduler = self.scheduler
        self.token_prefix = f"{os.getpid()}.{time.time_ns()}"
        self.started = time.time()
        self.stopping = False
        self.server: ManagerServer | None = None
        self.store: Store | None = None  # opened by run()
        self.log_cap = settings.log_cap
        self._sessions: set[Session] = set()
        self._watchers: dict[Session, frozenset[str] | None] = {}
        self._envs: dict[frozenset[tuple[str, str]], dict[str, str]] = {}
        self._sessions_lock = threading.Lock()
        self._signals = 0
        self._waker_r, self._waker_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        manager.attach(self)

    # -- requests from sessions ----------------------------------------------------------
    def submit(self, request: SubmitRequest, queue: Any, session: Session) -> Job:
        """Queue a petition for an orcha client (``queue``: its client's stream, or DISCARD
        when detached). Raises PetitionError if refused."""
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
            session=session if request.attach else None,
        )
        log.info("petition %s (%s) queued", job.id, request.kind)
        if self.systemd.enabled:
            self.wake()  # the main loop tells systemd the new queue length
        return job

    def _enqueue(
        self,
        petition: Petition,
        native: bool,
        kind: str | None,
        request: SubmitRequest | None,
        session: Session | None,
    ) -> Job:
        """Record and queue a petition; DuplicateIdError if its ID is queued or running.

        Under the scheduler's lock, so the duplicate check, the record and the queueing
        happen as one step for concurrent submissions of the same ID.
        """
        # Named before the record exists, so one INSERT holds everything.
        uid = os.urandom(8).hex()
        token, log_path = f"{self.token_prefix}-{uid}", self._log_path(uid)
        schedule = (request.schedule if request else None) or Schedule()
        self.scheduler.check_feasible(schedule)
        with self.scheduler.lock:
            if self.scheduler.get(str(petition.id)) is not None:
                raise DuplicateIdError(str(petition.id))
            self._check_dependencies(str(petition.id), schedule)
            seq = None
            if self.store is not None:
                seq = self.store.add(
                    {
                        "service": str(self.settings.address),
                        "id": str(petition.id),
                        "kind": kind or "",
                        "runs_as": request.kind if request and request.kind != kind else None,
                        "params": request.params if request else {},
                        "priority": int(getattr(petition, "priority", 0) or 0),
                        "state": str(State.QUEUED),
                        "submitted": time.time(),
                        "user": (request.user if request else "") or _user(),
                        "host": (request.host if request else "") or socket.gethostname(),
                        "cwd": request.cwd if request else "",
                        "env": request.env if request else {},
                        "token": token,
                        "log_path": log_path if native else None,
                        "schedule": schedule.to_wire(),
                    }
                )
            job = Job(
                petition, native=native, token_prefix=self.token_prefix, kind=kind, seq=seq,
                token=token, schedule=schedule,
            )  # fmt: skip
            job.session = session
            job.events = self
            if self.store is not None and native:
                job.log = PetitionLog(log_path, self.log_cap)
            # Before submit(): it may start the petition at once, and watchers must see
            # "submitted" before "started".
            self.watch_event(job, "submitted", {"priority": job.priority})
            self.scheduler.submit(job)
        return job

    def _check_dependencies(self, petition_id: str, schedule: Schedule) -> None:
        """Refuse dependencies on itself or on IDs no petition ever had."""
        for dep in schedule.dependencies:
            if dep == petition_id:
                raise PetitionError(
                    f"petition {petition_id!r} cannot run after itself; check --after",
                    ExitCode.REFUSED,
                )
            if self.scheduler.get(dep) is None and self._end_of(dep) is None:
                raise PetitionError(
                    f"there is no petition {dep!r} to run after; see 'orcha status'",
                    ExitCode.NO_PETITION,
                )

    def _end_of(self, petition_id: str) -> tuple[State, int | None] | None:
        """How the newest petition with this ID ended (records), or None."""
        record = self._ended_record(petition_id)
        if record is None:
            return None
        state = State(record["state"])
        if state in (State.QUEUED, State.RUNNING):
            # Queued before a restart and not queued again: treat as ended, not waiting.
            return (State.INTERRUPTED, record["code"])
        return (state, record["code"])

    def _failed_waiting(self, job: Job) -> None:
        """The scheduler failed a waiting job (a dependency failed): record and tell."""
        self.job_ended(job)
        if job.native:
            job.queue.put(job.end_item())
        else:
            job.queue.put(job.code)

    def _log_path(self, uid: str) -> str:
        return os.path.join(self.settings.state_dir, LOGS_DIR_NAME, f"{uid}.log")

    def submit_message(self, message: Message, session: Session) -> Job:
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
        return self._enqueue(petition, native=False, kind=kind, request=None, session=session)

    def _check_accepting(self) -> None:
        if self.stopping:
            raise PetitionError(
                "the service is stopping and accepts no petitions; start it again with "
                "'orcha serve'",
                ExitCode.REFUSED,
            )

    def cancel(self, job: Job, reason: str, by_client: bool) -> None:
        """Cancel ``job``: drop it if waiting, stop its tree if running."""
        if not job.request_cancel(reason, by_client):
            return
        log.info("petition %s: %s", job.id, reason)
        if self.scheduler.remove_queued(job, on_removed=self.job_ended):
            if job.native:
                job.queue.put(job.end_item())
            else:
                job.queue.put(job.client_code())
        else:
            self.runner.cancel_running(job)

    def status(self, ids: list[str], states: list[str]) -> dict[str, Any]:
        """Records of the given petitions (all if none given), with why waiting ones wait."""
        if self.store is None:
            return {"petitions": [], "missing": list(ids)}
        self.store.flush()
        columns = ("seq", "id", "kind", "state", "priority", "submitted", "started", "ended",
                   "code", "message", "user", "host", "cwd", "params", "schedule",
                   "attempt", "paused", "outcome", "notify_error")  # fmt: skip
        rows = self.store.find(ids, states, columns=columns)  # not env: big, and not shown
        out = []
        reasons = self.scheduler.explain()
        for row in rows:
            record = {name: row[name] for name in columns}
            record["paused"] = bool(record["paused"])
            job = self.scheduler.get(row["id"])
            if job is not None and job.seq == row["seq"]:
                record["paused"] = job.paused or job.stopped
                record["attempt"] = job.attempt
                if job.gpu_ids:
                    record["gpus"] = list(job.gpu_ids)
                if job.progress is not None:
                    record["progress"] = dict(job.progress)
                if row["state"] == str(State.QUEUED) and row["seq"] in reasons:
                    record["waiting"] = reasons[row["seq"]]
                    # Aging at work: what it competes with now (lower starts first).
                    # + 0.0: rounding a tiny negative gives -0.0, which reads oddly in JSON.
                    effective = round(self.scheduler.effective_priority(job), 3) + 0.0
                    record["effective_priority"] = effective
                elif job.stopped:
                    record["waiting"] = f"stopped (SIGSTOP); 'orcha resume {job.id}' continues it"
            out.append(record)
        found = {r["id"] for r in rows}
        known = {r["id"] for r in self.store.find(ids, (), columns=("id",))} if states else found
        return {"petitions": out, "missing": [i for i in ids if i not in known]}

    def cancel_ids(self, ids: list[str], force: bool, session: Session | None) -> dict[str, Any]:
        """Cancel each of ``ids``; says, for each, whether it was cancelled or why not."""
        results: dict[str, str] = {}
        for petition_id in ids:
            job = self.scheduler.get(petition_id)
            if job is None:
                record = self.store.latest(petition_id) if self.store is not None else None
                results[petition_id] = (
                    f"petition {petition_id!r} has already ended ({record['state']})"
                    if record else f"there is no petition with ID {petition_id!r}"
                )  # fmt: skip
                continue
            by_client = session is not None and job.session is session
            self.cancel(job, "cancelled with 'orcha cancel'" if not by_client
                        else "cancelled by its client", by_client=by_client)  # fmt: skip
            if force and job.state is State.RUNNING:
                self.runner.cancel_running(job, force=True)
            results[petition_id] = "cancelled"
        return {"results": results}

    # -- groups and pauses ------------------------------------------------------------------
    def set_group(self, name: str, max_running: int | None) -> dict[str, Any]:
        """Give ``name`` its own limit of running petitions (None removes it); kept."""
        self.scheduler.set_group_limit(name, max_running)
        self._save_groups()
        log.info("group %s: max running %s", name, max_running or "unlimited")
        return {"groups": self.scheduler.groups()}

    def pause(
        self, ids: list[str], groups: list[str], everything: bool, running: bool, paused: bool
    ) -> dict[str, Any]:
        """Pause (``paused``) or resume admission for ``ids``, ``groups`` or everything;
        with ``running`` (pause) SIGSTOP their running trees too. Resuming always
        continues (SIGCONT) the stopped trees it covers. Says what happened to each ID."""
        import signal as signals

        results: dict[str, str] = {}
        jobs: list[Job] = []
        for petition_id in ids:
            job = self.scheduler.get(petition_id)
            if job is None:
                results[petition_id] = f"there is no queued or running petition {petition_id!r}"
            else:
                jobs.append(job)
        self.scheduler.set_paused(paused, jobs, groups, everything)
        scope = set(groups)
        covered = list(jobs)
        if everything or scope:
            covered += [j for j in self.scheduler.jobs()
                        if everything or j.schedule.group in scope]  # fmt: skip
        for job in covered:
            if job.state is State.RUNNING and (running or not paused) and job.stopped != paused:
                # The flag first: a process the petition starts meanwhile is stopped by
                # the runner when it registers (see Runner._register).
                job.stopped = paused
                sig = signals.SIGSTOP if paused else signals.SIGCONT
                self.procs.signal_tree(list(job.pids), job.token, sig)
            if job.state is State.QUEUED and self.store is not None:
                self.store.update_later(job.seq, paused=int(job.paused))
            self.watch_event(job, "paused" if paused else "resumed", {})
        for job in jobs:
            results[job.id] = "paused" if paused else "resumed"
        self._save_groups()
        log.info(
            "%s: ids %s, groups %s%s", "paused" if paused else "resumed", ids, groups,
            ", everything" if everything else "",
        )  # fmt: skip
        return {"results": results, "groups": self.scheduler.groups()}

    def _save_groups(self) -> None:
        if self.store is None:
            return
        self.store.set_value(
            str(self.settings.address),
            "groups",
            {
                "limits": self.scheduler.group_limits(),
                "paused": sorted(self.scheduler.paused_groups()),
                "paused_all": self.scheduler.paused_all,
            },
        )

    def _load_groups(self) -> None:
        assert self.store is not None
        saved = self.store.get_value(str(self.settings.address), "groups", {})
        for name, limit in (saved.get("limits") or {}).items():
            self.scheduler.set_group_limit(name, int(limit))
        paused_all = bool(saved.get("paused_all"))
        self.scheduler.set_paused(True, (), saved.get("paused") or (), paused_all)

    def clean(self, older_than: float | None) -> dict[str, Any]:
        """Drop ended records (ended more than ``older_than`` seconds ago) and their logs."""
        if self.store is None:
            return {"removed": 0}
        self.store.flush()
        before = time.time() - older_than if older_than is not None else None
        removed = self.store.remove_finished(before)
        for row in removed:
            if row["log_path"]:
                try:
                    os.unlink(row["log_path"])
                except OSError:
                    pass
        return {"removed": len(removed)}

    # -- subscriptions: wait, follow, watch ------------------------------------------------
    def _announce_end(self, job: Job) -> None:
        with job.output_lock:
            job.end_announced = True
            waiters, followers = list(job.waiters), dict(job.followers)
            job.waiters.clear()
            job.followers.clear()
        summary = job.summary()
        for session in waiters:
            session.deliver(messages.encode({"event": "ended", **summary}))
        for session, handle in followers.items():
            session.deliver(messages.encode({"event": "end", "handle": handle, **summary}))
        self.watch_event(job, "finished", summary)

    @property
    def watching(self) -> bool:
        """Whether anyone wants output and progress events (so building them is worth it)."""
        return bool(self._watchers) or self._hooks_want_stream

    def watch_event(self, job: Job, event: str, data: dict[str, Any]) -> None:
        """The one event envelope ``{event, petition, kind, timestamp, data}`` about
        ``job``: to every session watching it, and to the webhooks that want it."""
        hooked = bool(self.webhooks.everyone or job.schedule.notify)
        if not self._watchers and not hooked and not self.sinks.sinks:
            return
        envelope = {"event": event, "petition": job.id, "kind": job.kind or "",
                    "timestamp": time.time(), "data": data}  # fmt: skip
        if hooked:
            self.webhooks.event(job, envelope)
        self.sinks.event(envelope)
        if not self._watchers:
            return
        frame = messages.encode(envelope)
        with self._sessions_lock:
            watchers = list(self._watchers.items())
        for session, ids in watchers:
            if ids is None or job.id in ids:
                session.deliver(frame)

    def _webhook_failed(self, job: Job, message: str) -> None:
        """A webhook delivery finally failed: kept in the petition's record."""
        if self.store is not None and job.seq:
            self.store.update_later(job.seq, notify_error=message)

    def _ended_record(self, petition_id: str) -> dict[str, Any] | None:
        if self.store is None:
            return None
        self.store.flush()
        return self.store.latest(petition_id)

    def wait_for(self, session: Session, ids: list[str]) -> dict[str, Any]:
        """Which of ``ids`` have ended, which are pending (the session is told when each
        ends), and which are unknown."""
        ended: list[dict[str, Any]] = []
        pending: list[str] = []
        missing: list[str] = []
        for petition_id in ids:
            job = self.scheduler.get(petition_id)
            if job is not None:
                with job.output_lock:
                    if not job.end_announced:
                        job.waiters.add(session)
                        session.subscribed.add(job)
                        pending.append(petition_id)
                        continue
                ended.append(job.summary())
                continue
            record = self._ended_record(petition_id)
            if record is None:
                missing.append(petition_id)
            else:
                ended.append({k: record[k] for k in ("id", "state", "code", "message")})
        return {"ended": ended, "pending": pending, "missing": missing}

    def follow(self, session: Session, ids: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
        """For each ID, what to replay from its log and whether it has ended; live ones
        are subscribed exactly where the replay stops."""
        plan: list[dict[str, Any]] = []
        missing: list[str] = []
        for petition_id in ids:
            job = self.scheduler.get(petition_id)
            if job is not None and job.log is not None:
                handle = session.new_handle()
                with job.output_lock:
                    if not job.end_announced:
                        job.followers[session] = handle
                        session.subscribed.add(job)
                        plan.append({"id": job.id, "handle": handle, "log_path": job.log.path,
                                     "end": job.log.size, "ended": None})  # fmt: skip
                        continue
                plan.append({"id": job.id, "handle": handle, "log_path": job.log.path,
                             "end": None, "ended": job.summary()})  # fmt: skip
                continue
            record = self._ended_record(petition_id)
            if record is None or record["state"] in (str(State.QUEUED), str(State.RUNNING)):
                missing.append(petition_id)  # unknown, or of the original API (no log)
                continue
            plan.append({
                "id": record["id"], "handle": session.new_handle(),
                "log_path": record["log_path"], "end": None,
                "ended": {k: record[k] for k in ("id", "state", "code", "message")},
            })  # fmt: skip
        return plan, missing

    def watch(self, session: Session, ids: list[str]) -> dict[str, Any]:
        """Subscribe ``session`` to events (of ``ids``, or all); it first gets the current
        state of each, so a watcher that starts late misses nothing."""
        wanted = frozenset(ids) or None
        with self._sessions_lock:
            self._watchers[session] = wanted
        missing = []
        live = {job.id: job for job in self.scheduler.jobs()}
        for job in live.values():
            if wanted is None or job.id in wanted:
                self.watch_event(job, "state", {"state": str(job.state), "priority": job.priority})
        for petition_id in ids:
            if petition_id in live:
                continue
            record = self._ended_record(petition_id)
            if record is None:
                missing.append(petition_id)
                continue
            session.deliver(messages.encode({
                "event": "finished", "petition": record["id"], "kind": record["kind"],
                "timestamp": record["ended"],
                # The same fields as a finish seen live (Job.summary).
                "data": {k: record.get(k) for k in ("id", "state", "code", "message",
                                                    "attempt", "outcome")},
            }))  # fmt: skip
        return {"missing": missing}

    def logs(self, petition_id: str, tail: int | None) -> tuple[list[Any], dict[str, Any]]:
        """The stored output of a petition (its last ``tail`` lines if given)."""
        from orcha.service.logs import read_log

        record = self._ended_record(petition_id)
        if record is None:
            raise PetitionError(
                f"no petition has ID {petition_id!r}; see 'orcha status' for all",
                ExitCode.NO_PETITION,
            )
        frames = list(read_log(record["log_path"]))
        return (frames if tail is None else _last_lines(frames, tail)), record

    def state(self, action: str, plugin: str, key: str | None, value: Any) -> dict[str, Any]:
        """A plugin's state for users: ``ls`` every key, ``get``/``set``/``rm`` one.
        PetitionError if the plugin is not loaded, the key is missing, or the value is not
        JSON data."""
        from orcha.service.plugin_state import PluginState

        if plugin not in self.plugins.plugins or self.store is None:
            loaded = ", ".join(sorted(self.plugins.plugins)) or "none"
            raise PetitionError(
                f"the service has no plugin {plugin!r} (loaded: {loaded})", ExitCode.UNKNOWN
            )
        state = PluginState(self.store, plugin)
        try:
            if action == "ls":
                return {"plugin": plugin, "state": state.items()}
            assert key is not None
            if action == "get":
                if key not in state:
                    raise PetitionError(
                        f"plugin {plugin} has no state key {key!r}; see 'orcha state ls {plugin}'",
                        ExitCode.NO_PETITION,
                    )
                return {"plugin": plugin, "key": key, "value": state.get(key)}
            if action == "set":
                state.set(key, value)
                return {"plugin": plugin, "key": key, "value": value}
            return {"plugin": plugin, "key": key, "removed": state.delete(key)}
        except ValueError as e:
            raise PetitionError(str(e), ExitCode.REFUSED) from None

    def health(self) -> dict[str, Any]:
        """Whether the service and each plugin are healthy (plugin checks run with a
        time limit, their errors caught), with the queue and capacity."""
        plugins = self.plugins.health()
        return {
            "healthy": all(p["healthy"] for p in plugins.values()),
            "queued": self.scheduler.queued_count,
            "running": self.scheduler.running_count,
            "cpus_in_use": self.scheduler.used_cpus,
            "capacity": self.scheduler.capacity,
            "paused": self.scheduler.paused_all,
            "plugins": plugins,
        }

    def info(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "pid": os.getpid(),
            "address": str(self.settings.address),
            "kinds": sorted(self.manager.kinds()),
            "runtime_kinds": self.runtime_kinds.listing(),
            "running": self.scheduler.running_count,
            "queued": self.scheduler.queued_count,
            "max_running": self.manager.max_running,
            "cpus_in_use": self.scheduler.used_cpus,
            "gpus": list(self.scheduler.inventory),
            "groups": self.scheduler.groups(),
            "paused": self.scheduler.paused_all,
            "petitions": [job.describe() for job in self.scheduler.jobs()],
            "served_objects": self.server.object_count() if self.server else 0,
            "sessions": len(self._sessions),
        }

    # -- bookkeeping -----------------------------------------------------------------------
    def session_opened(self, session: Session) -> None:
        with self._sessions_lock:
            self._sessions.add(session)

    def session_closed(self, session: Session) -> None:
        for job in list(session.subscribed):  # only its own subscriptions, not the queue
            with job.output_lock:
                job.followers.pop(session, None)
                job.waiters.discard(session)
        with self._sessions_lock:
            self._sessions.discard(session)
            self._watchers.pop(session, None)
            ended, session.legacy_ended = session.legacy_ended, []
        for job in ended:
            self._purge(job)

    # -- what the runner reports (RunnerEvents) ----------------------------------------------
    def job_started(self, job: Job) -> None:
        if self.store is not None:
            self.store.update_later(job.seq, state=str(job.state), started=job.started)
        self.watch_event(job, "started", {})

    def job_attempt(self, job: Job) -> None:
        if self.store is not None:
            self.store.update_later(job.seq, attempt=job.attempt)
        self.watch_event(job, "attempt", {"attempt": job.attempt})

    def job_pid(self, job: Job, pid: int) -> None:
        if self.store is None:
            return
        with job.lock:
            job.pid_starts[pid] = start_ticks(pid)
            pids = [[p, t] for p, t in sorted(job.pid_starts.items()) if t is not None]
        self.store.update_later(job.seq, pids=pids)

    def job_ended(self, job: Job) -> None:
        """Called (in any thread) once a job has ended, before its client is told."""
        if self.store is not None:
            self.store.update_later(
                job.seq,
                state=str(job.state),
                ended=job.ended or time.time(),
                code=job.code,
                message=job.message,
                **({"outcome": job.outcome} if job.outcome is not None else {}),
            )
        if job.log is not None:
            job.log.close()
        self._announce_end(job)
        self.finish_hooks.finished(job)
        session = job.session
        if session is not None:
            with self._sessions_lock:
                session.submitted.discard(job)
                if not job.native:
                    if session.closed:
                        self._purge(job)
                    else:
                        session.legacy_ended.append(job)

    def wake(self) -> None:
        """A slot was freed: let the main loop look again (it may be waiting to stop)."""
        try:
            os.write(self._waker_w, b"\0")
        except BlockingIOError:
            pass  # the loop is awake already

    def _purge(self, job: Job) -> None:
        """Drop the served objects an ended original-API job referenced."""
        ident = proxy_ident(job.queue)
        if ident is not None and self.server is not None:
            self.server.purge(ident)

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only counts: the event loop acts on it (logging here could deadlock).
        self._signals += 1

    # -- main loop -------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until stopped. Returns the exit code; raises OrchaError if it cannot start."""
        settings = self.settings
        address = settings.address
        key = settings.service_key()
        lock: AddressLock | None = None
        if address.is_unix:
            assert address.path is not None
            if os.path.dirname(address.path) == os.path.abspath(settings.runtime_dir):
                ensure_runtime_dir(settings)
            lock = AddressLock(address.path + ".lock")
            lock.acquire(str(address))
        try:
            listener = transport.listen(address)
        except BaseException:
            if lock:
                lock.release()
            raise
        try:
            self._open_store()
        except BaseException:
            listener.close()
            if lock:
                lock.release()
            raise
        multiprocessing.current_process().authkey = key  # proxies rebuilt here use our key
        # Actions of the original API start multiprocessing.Process children that get the
        # petition as an argument; it holds the manager, so it must be inherited by fork,
        # not pickled (Python 3.14 makes forkserver the default on Linux).
        multiprocessing.set_start_method("fork", force=True)
        self.server = ManagerServer(registry(), address.sockaddr, key, self)
        self.server.install()
        os.register_at_fork(after_in_child=reset_child_signals)
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _STOP_SIGNALS}
        signal.set_wakeup_fd(wake_w)
        if not address.is_unix:
            from orcha.protocol.address import is_loopback

            if not is_loopback(address):
                log.warning(
                    "listening on %s, which is not loopback: anyone who can reach it and has "
                    "the key can run commands as this user",
                    address,
                )
        print(
            f"orcha {__version__}: listening on {address} (pid {os.getpid()}, "
            f"up to {self.manager.max_running} running, "
            f"GPUs: {','.join(self.scheduler.inventory) or 'none'}, kinds: "
            f"{', '.join(sorted(self.manager.kinds())) or 'none'})",
            flush=True,
        )
        self.plugins.start(self.store)  # load, start: before petitions run or clients come
        assert self.store is not None
        self.runtime_kinds.load(self.store)
        self._load_groups()
        self._restore()
        code = 0
        sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ, "accept")
        sel.register(wake_r, selectors.EVENT_READ, "signal")
        sel.register(self._waker_r, selectors.EVENT_READ, "waker")
        try:
            self.systemd.ready(self._status_words())
            watchdog = self.systemd.watchdog_interval
            next_ping = time.monotonic()
            while True:
                # Wake up on a timer only while a petition waits for free memory or a
                # plugin's predicate, or to feed systemd's watchdog.
                recheck = RECHECK_SECONDS if self.scheduler.needs_recheck else None
                timeout = recheck
                if watchdog is not None:
                    due = max(0.0, next_ping - time.monotonic())
                    timeout = due if timeout is None else min(timeout, due)
                events = sel.select(timeout)
                if not events and recheck is not None:
                    self.scheduler.admit()
                # Only a scheduler whose lock can be taken is alive: a stuck one stops
                # the pings, and systemd restarts the service.
                if (
                    watchdog is not None
                    and time.monotonic() >= next_ping
                    and self.scheduler.lock.acquire(timeout=watchdog)
                ):
                    self.scheduler.lock.release()
                    self.systemd.watchdog()
                    next_ping = time.monotonic() + watchdog
                self.systemd.status(self._status_words())
                for key_, _ in events:
                    if key_.data == "accept":
                        self._accept(listener)
                    else:
                        _drain(key_.fd)
                if self._signals and not self.stopping:
                    sel.unregister(listener)
                    listener.close()
                    self._begin_stop()
                if self._signals >= 2:
                    self._force_stop()
                    code = 1
                    break
                if self.stopping and self.scheduler.running_count == 0:
                    self._flush_sessions()
                    self._finish_deliveries()
                    break
        finally:
            self.plugins.stop()
            self.systemd.close()
            sel.close()
            signal.set_wakeup_fd(-1)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if listener.fileno() >= 0:
                listener.close()
            if address.is_unix and address.path:
                try:
                    os.unlink(address.path)
                except OSError:
                    pass
            if lock:
                lock.release()
            if self.store is not None:
                self.store.close()
            os.close(wake_r)
            os.close(wake_w)
        log.warning("stopped (exit code %d)", code)
        return code

    def _open_store(self) -> None:
        ensure_state_dir(self.settings)
        os.makedirs(os.path.join(self.settings.state_dir, LOGS_DIR_NAME), mode=0o700, exist_ok=True)
        self.store = Store(os.path.join(self.settings.state_dir, DATABASE_NAME))

    def _restore(self) -> None:
        """Take back what a previous service at this address left: queued petitions are
        queued again in their order; running ones are INTERRUPTED, their processes stopped."""
        assert self.store is not None
        rows = self.store.live(str(self.settings.address))
        if not rows:
            return
        now = time.time()
        self.scheduler.accepting = False  # queue them all before any starts: order holds
        requeued = interrupted = 0
        try:
            for row in rows:
                if row["state"] == str(State.RUNNING):
                    self._stop_leftovers(row)
                    self.store.update(
                        row["seq"], state=str(State.INTERRUPTED), ended=now,
                        message="the service stopped while it was running",
                    )  # fmt: skip
                    interrupted += 1
                elif self._requeue(row, now):
                    requeued += 1
        finally:
            self.scheduler.accepting = True
        self.scheduler.settle_dependencies()  # also admits
        log.warning(
            "restored %d queued petition(s); %d that were running became INTERRUPTED",
            requeued, interrupted,
        )  # fmt: skip

    def _stop_leftovers(self, row: dict[str, Any]) -> None:
        # The same process, not a reused PID: same start time.
        roots = [pid for pid, started in row["pids"] if start_ticks(pid) == started]
        if roots or row["token"]:
            n = self.procs.stop_tree(roots, row["token"] or None, self.settings.grace)
            if n:
                log.warning("petition %s: stopped %d process(es) left running", row["id"], n)

    def _requeue(self, row: dict[str, Any], now: float) -> bool:
        from orcha.protocol.messages import SubmitRequest

        assert self.store is not None
        try:
            if not row["kind"]:
                raise InvalidPetitionError("petitions of the original Orcha API are not restored")
            schedule = Schedule.from_wire(row["schedule"])
            # A runtime kind's petition runs as its parent, with the settings it was
            # queued with, whatever became of the template since.
            request = SubmitRequest(
                row["runs_as"] or row["kind"], row["id"], row["params"], row["priority"],
                row["cwd"], row["env"], attach=False, schedule=schedule,
            )  # fmt: skip
            petition = self.manager.petition_from_request(request, DISCARD)
        except ValueError as e:
            self.store.update(
                row["seq"], state=str(State.CANCELLED), ended=now,
                message=f"not queued again after a restart: {e}",
            )  # fmt: skip
            return False
        except PetitionError as e:
            self.store.update(
                row["seq"], state=str(State.CANCELLED), ended=now,
                message=f"not queued again after a restart: {e}",
            )  # fmt: skip
            return False
        uid = os.urandom(8).hex()
        job = Job(
            petition, native=True, token_prefix=self.token_prefix, kind=row["kind"],
            seq=row["seq"], token=f"{self.token_prefix}-{uid}", schedule=schedule,
            created=row["submitted"],
        )  # fmt: skip
        job.paused = bool(row["paused"])
        job.events = self
        job.log = PetitionLog(row["log_path"] or self._log_path(uid), self.log_cap)
        self.store.update(row["seq"], token=job.token, log_path=job.log.path)
        self.scheduler.submit(job)
        return True

    def _accept(self, listener: Any) -> None:
        assert self.server is not None
        while True:
            try:
                conn = transport.accept(listener)
            except OSError as e:
                log.warning("accept failed: %s", e)  # e.g. out of descriptors; keep serving
                return
            if conn is None:
                return
            threading.Thread(
                target=self.server.handle_connection, args=(conn,), name="client", daemon=True
            ).start()

    def _status_words(self) -> str:
        """One line for systemd's STATUS=: the queue and the running petitions."""
        scheduler = self.scheduler
        words = (
            f"{scheduler.queued_count} queued, {scheduler.running_count} running, "
            f"{scheduler.used_cpus}/{scheduler.capacity} CPUs in use"
        )
        return words + (", paused" if scheduler.paused_all else "")

    def _begin_stop(self) -> None:
        """Stop admitting; keep queued petitions (recorded, they are queued again when the
        service restarts); cancel running ones (trees stopped: TERM, grace, KILL)."""
        self.stopping = True
        self.systemd.stopping(f"stopping; {self._status_words()}")
        queued = self.scheduler.drain_queued()
        running = self.scheduler.running()
        kept = [job for job in queued if job.native and self.store is not None]
        log.warning(
            "stopping: cancelling %d running petition(s), keeping %d queued for the next "
            "start; send the signal again to kill them at once",
            len(running),
            len(kept),
        )
        for job in kept:
            self.scheduler.forget(job)
            session, job.session = job.session, None  # its client leaving must not cancel it
            if session is not None:
                with self._sessions_lock:
                    session.submitted.discard(job)
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
            self.cancel(job, "the service is stopping", by_client=False)

    def _force_stop(self) -> None:
        running = self.scheduler.running()
        log.warning("forced stop: killing %d petition(s) now", len(running))
        for job in running:
            job.request_cancel("the service was stopped by force", by_client=False)
            self.procs.stop_tree(list(job.pids), job.token, 0, force=True)

    def _finish_deliveries(self) -> None:
        """On a clean stop: let queued webhooks, hooks and event sinks go out, within
        DELIVERY_DRAIN_SECONDS in all (a forced stop does not wait)."""
        deadline = time.monotonic() + DELIVERY_DRAIN_SECONDS
        queues = (("webhook deliveries", self.webhooks), ("on_finish hooks", self.finish_hooks),
                  ("event sinks", self.sinks))  # fmt: skip
        for what, queue in queues:
            if not queue.idle(max(0.0, deadline - time.monotonic())):
                log.warning("stopping without the %s still queued", what)

    def _flush_sessions(self) -> None:
        deadline = time.monotonic() + _FLUSH_SECONDS
        with self._sessions_lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.idle.wait(max(0.0, deadline - time.monotonic()))


def _last_lines(frames: list[Any], n: int) -> list[Any]:
    """The frames holding the last ``n`` lines of output (a final newline ends the last
    line rather than starting an empty one)."""
    if n == 0:
        return []
    out: list[Any] = []
    for i in range(len(frames) - 1, -1, -1):
        stream, data = frames[i]
        pos = len(data) - 1 if (i == len(frames) - 1 and data.endswith(b"\n")) else len(data)
        while (pos := data.rfind(b"\n", 0, pos)) >= 0:
            n -= 1
            if n == 0:
                out.append((stream, data[pos + 1 :]))
                return out[::-1]
        out.append((stream, data))
    return out[::-1]


def _user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, and the
    exception's traceback when there is one (for journald and log shippers)."""

    def format(self, record: logging.LogRecord) -> str:
        import datetime
        import json

        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
            .isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }  # fmt: skip
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(verbose: int, log_format: str = "text") -> None:
    """Service logs go to stderr: warnings by default, -v info, -vv debug; as text lines
    or (``log_format="json"``) one JSON object per line."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    fmt = (
        "orcha serve: %(message)s"
        if verbose <= 0
        else "orcha serve: %(levelname)s %(name)s: %(message)s"
    )
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(fmt))
    root = logging.getLogger("orcha")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
