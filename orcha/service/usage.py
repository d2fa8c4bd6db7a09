"""Usage events: what ``orcha top`` shows that no other event says.

Petition events tell when something happens (submitted, started, finished); some things
change without an event: the CPU and memory a running petition's tree uses, why each
waiting petition waits (its words change with time: aging, delays, free memory), how
full the groups are. A watcher that asks for them (``watch`` with ``usage``: seconds)
gets a ``usage`` event at that interval with all of it, measured once per tick for every
watcher due then.

Only while such a watcher is connected does anything run: one thread, started at the
first one, waiting without a timeout while there is none. A tick measures each running
petition's tree through its machine (:meth:`~orcha.service.machines.Machine.measure_tree`)
and words the queue with the scheduler's :meth:`~orcha.service.scheduler.Scheduler.explain`
(what ``status`` does for each request).

The data of a ``usage`` event (docs/json-output.rst documents it for users)::

    {"cpus": {"used", "capacity"}, "paused", "queued",
     "running": [{"id", "kind", "command", "group", "cpus", "mem", "gpus", "started",
                  "attempt", "paused", "progress", "cpu_percent", "rss", "processes"}],
     "waiting": [{"id", "kind", "command", "group", "cpus", "mem", "gpus", "priority",
                  "effective_priority", "submitted", "begin", "paused", "why"}],
     "gpus": [{"index", "petition"}], "groups": [as 'group ls']}
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orcha.defaults import USAGE_COMMAND_CHARS, USAGE_QUEUE_HEAD
from orcha.protocol import messages
from orcha.text import printable, shell_word

if TYPE_CHECKING:
    from orcha.service.job import Job
    from orcha.service.peer import Peer
    from orcha.service.queued import Waiting
    from orcha.service.scheduler import Scheduler
    from orcha.service.store import Store

log = logging.getLogger("orcha.service.usage")


class _Watcher:
    __slots__ = ("due", "ids", "interval")

    def __init__(self, interval: float, ids: frozenset[str] | None, due: float) -> None:
        self.interval = interval
        self.ids = ids
        self.due = due


def command_of(kind: str | None, params: Any) -> str:
    """A petition's command in one line: a shell petition's argv, else its kind and
    parameters (``hello counter=3``); cut to :data:`USAGE_COMMAND_CHARS`."""
    if isinstance(params, dict) and isinstance(params.get("argv"), list):
        text = " ".join(shell_word(str(a)) for a in params["argv"])
    else:
        words = [kind or "petition"]
        if isinstance(params, dict):
            words += [f"{k}={v}" for k, v in params.items()]
        text = " ".join(words)
    # One line (newlines in arguments would break rows), and nothing that could drive
    # the terminal 'orcha top' draws on (an escape sequence in an argument is shown).
    text = printable(" ".join(text.split()))
    if len(text) > USAGE_COMMAND_CHARS:
        text = text[: USAGE_COMMAND_CHARS - 1] + "…"
    return text


class UsageFeed:
    """The watchers that want ``usage`` events, and the thread that sends them."""

    def __init__(
        self,
        scheduler: Scheduler,
        store: Callable[[], Store | None],
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``store()``: the records (for petitions' commands), None before they open;
        ``clock``: the time stamped on events; ``monotonic``: the ticks' time."""
        self.scheduler = scheduler
        self._store = store
        self._clock = clock
        self._monotonic = monotonic
        self._watchers: dict[Peer, _Watcher] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        # Per running job (by seq): (monotonic time, CPU seconds) of its last measure,
        # so CPU % is over the last interval. Per live job: its command, read once.
        self._last: dict[int, tuple[float, float]] = {}
        self._commands: dict[int, str] = {}

    def __bool__(self) -> bool:
        return bool(self._watchers)

    def add(self, peer: Peer, interval: float, ids: frozenset[str] | None) -> None:
        """``peer`` gets a ``usage`` event now, then every ``interval`` seconds."""
        with self._cond:
            self._watchers[peer] = _Watcher(interval, ids, self._monotonic())
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="usage", daemon=True)
                self._thread.start()
            self._cond.notify()

    def remove(self, peer: Peer) -> None:
        with self._cond:
            self._watchers.pop(peer, None)

    def _loop(self) -> None:
        """Send each watcher its events when due; without watchers, wait for one."""
        while True:
            with self._cond:
                while not self._watchers:
                    self._cond.wait()
                now = self._monotonic()
                due = [(p, w) for p, w in self._watchers.items() if w.due <= now]
                if not due:
                    self._cond.wait(min(w.due for w in self._watchers.values()) - now)
                    continue
                for _, watcher in due:
                    watcher.due = now + watcher.interval
            try:
                self.tick([(p, w.ids) for p, w in due])
            except Exception:
                log.exception("sending usage events failed")

    def tick(self, peers: list[tuple[Peer, frozenset[str] | None]]) -> None:
        """Measure once and send each of ``peers`` its ``usage`` event (of its IDs)."""
        data = self.snapshot()
        stamp = self._clock()
        for peer, ids in peers:
            mine = data if ids is None else _only(data, ids)
            frame = messages.encode({"event": "usage", "petition": None, "kind": "",
                                     "timestamp": stamp, "data": mine})  # fmt: skip
            peer.deliver_event(frame, droppable=True)

    # -- the snapshot ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The data of a ``usage`` event now (see the module docstring)."""
        scheduler = self.scheduler
        with scheduler.lock:
            running = scheduler.running()
            waiting = scheduler.waiting_views()  # read only: compact entries stay so
            used, capacity = scheduler.used_cpus, scheduler.capacity
            paused = scheduler.paused_all
            groups = scheduler.groups()
        head = waiting[:USAGE_QUEUE_HEAD]
        why = scheduler.explain() if head else {}
        live = {job.seq for job in running} | {job.seq for job in head}
        for seq in set(self._commands) - live:
            del self._commands[seq]
        for seq in set(self._last) - live:
            del self._last[seq]
        holders = {gpu: job.id for job in running for gpu in job.gpu_ids}
        return {
            "cpus": {"used": used, "capacity": capacity},
            "paused": paused,
            "queued": len(waiting),
            "running": [self._running(job) for job in running],
            "waiting": [self._waiting(job, why.get(job.seq, "")) for job in head],
            "gpus": [{"index": g, "petition": holders.get(g)} for g in scheduler.inventory],
            "groups": groups,
        }

    def _common(self, job: Waiting) -> dict[str, Any]:
        schedule = job.schedule
        return {
            "id": job.id,
            "kind": job.kind or "",
            "command": self._command(job),
            "group": schedule.group,
            "cpus": schedule.cpus,
            "mem": schedule.mem,
            "paused": bool(job.paused or job.stopped),
        }

    def _running(self, job: Job) -> dict[str, Any]:
        out = self._common(job)
        out.update(gpus=list(job.gpu_ids), started=job.started, attempt=job.attempt,
                   progress=dict(job.progress) if job.progress is not None else None)  # fmt: skip
        out.update(self._measure(job))
        return out

    def _waiting(self, job: Waiting, why: str) -> dict[str, Any]:
        out = self._common(job)
        out.update(gpus=job.schedule.gpus, priority=job.priority,
                   effective_priority=round(self.scheduler.effective_priority(job), 3) + 0.0,
                   submitted=job.created, begin=job.schedule.begin, why=why)  # fmt: skip
        return out

    def _measure(self, job: Job) -> dict[str, Any]:
        """``cpu_percent`` (of one CPU, over the last interval; since it started at the
        first measure), ``rss`` (bytes) and ``processes`` of its tree; None each if its
        machine cannot say."""
        if job.machine is None:
            return {"cpu_percent": None, "rss": None, "processes": None}
        try:
            usage = job.machine.measure_tree(job)
        except Exception:  # its tree changes under the measure; the next tick says more
            log.debug("measuring petition %s failed", job.id, exc_info=True)
            usage = {}
        if not usage:  # or its machine does not measure (a Dask worker): unknown, not 0
            return {"cpu_percent": None, "rss": None, "processes": None}
        now, cpu = self._monotonic(), float(usage.get("cpu_seconds", 0.0))
        last = self._last.get(job.seq)
        self._last[job.seq] = (now, cpu)
        if last is not None and now > last[0]:
            # A process that exited takes its CPU time with it: never below 0.
            percent: float | None = max(0.0, (cpu - last[1]) / (now - last[0]) * 100)
        elif job.started is not None and self._clock() > job.started:
            percent = cpu / (self._clock() - job.started) * 100
        else:
            percent = None
        return {
            "cpu_percent": None if percent is None else round(percent, 1),
            "rss": int(usage.get("rss", 0)),
            "processes": int(usage.get("processes", 0)),
        }

    def _command(self, job: Waiting) -> str:
        command = self._commands.get(job.seq)
        if command is None:
            store = self._store()
            try:
                record = store.get(job.seq) if store is not None and job.seq else None
            except Exception:  # the records cannot be read now: the next tick tries again
                return command_of(job.kind, None)
            params = record.get("params") if record is not None else None
            command = self._commands[job.seq] = command_of(job.kind, params)
        return command


def _only(data: dict[str, Any], ids: frozenset[str]) -> dict[str, Any]:
    """``data`` with only the running and waiting petitions among ``ids``."""
    return {
        **data,
        "running": [p for p in data["running"] if p["id"] in ids],
        "waiting": [p for p in data["waiting"] if p["id"] in ids],
    }


def recent_ended(store: Store, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` records that ended last, newest first: ``id``, ``kind``, ``state``,
    ``code``, ``message``, ``started``, ``ended`` (what ``orcha top`` starts with).

    One query with a limit (a scan: ``ended`` has no index; once per watcher), through
    the store's reading connection and its overlay of changes not committed yet (an end
    not committed is in the overlay only, so those rows are read too)."""
    cols = "seq, id, kind, state, code, message, started, ended"
    unsaved = store.saver.pending_seqs()
    extra = f" OR seq IN ({', '.join('?' for _ in unsaved)})" if unsaved else ""
    records = store._records(  # the store's own read path, overlay included
        lambda db: db.execute(
            f"SELECT {cols} FROM petitions WHERE ended IS NOT NULL{extra} "
            "ORDER BY ended DESC LIMIT ?",
            (*unsaved, limit + len(unsaved)),
        ).fetchall()
    )
    ended = [r for r in records if r.get("ended") is not None]
    ended.sort(key=lambda r: r["ended"], reverse=True)
    return [{k: v for k, v in r.items() if k != "seq"} for r in ended[:limit]]
