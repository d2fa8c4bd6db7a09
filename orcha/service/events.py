"""Events: who hears about a petition besides its own client.

The fan-out of petition events, apart from the petition's record (the Job): sessions
that ``wait`` for or ``follow`` a petition, sessions that ``watch`` events, webhooks,
plugins' event sinks and ``on_finish`` hooks. A Job reaches it as ``job.events`` (its
output and progress go to watchers through :meth:`Events.watch_event`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orcha.defaults import STREAM_EVENTS
from orcha.protocol import messages
from orcha.protocol.ids import split
from orcha.service.notify import EventSinks, FinishHooks, Webhooks
from orcha.service.queued import Queued
from orcha.service.references import labeller, resolve, resolve_all
from orcha.service.usage import UsageFeed, recent_ended
from orcha.states import State

if TYPE_CHECKING:
    from orcha.service.job import Job
    from orcha.service.peer import Peer
    from orcha.service.queued import Waiting
    from orcha.service.references import Target
    from orcha.service.scheduler import Scheduler
    from orcha.service.store import Store

log = logging.getLogger("orcha.service.events")

#: The fields of an ended petition's record that subscribers get (as Job.summary gives).
_ENDED = ("id", "state", "code", "message")

#: How many references a wait resolves and subscribes to at a time, under one hold of
#: the scheduler's lock (a wait on a long array does not hold up admission for all of
#: them at once, nor hold all their targets).
_LOCKED_BATCH = 1000


def _unsubscribed(peer: Peer, seq: int) -> None:
    """``peer`` follows or waits for record ``seq`` no more (under Events._subs_lock)."""
    subscribed = peer.subscribed
    subscribed.discard(seq)
    if not subscribed and subscribed.__sizeof__() > 1024:
        peer.subscribed = set()  # a set does not shrink: a long array's table goes


class Events:
    """Subscriptions and deliveries of petition events (thread-safe)."""

    def __init__(
        self,
        scheduler: Scheduler,
        webhooks: list[dict[str, Any]] | None = None,
        on_finish: str | None = None,
        sinks: list[tuple[str, Any]] | None = None,
        clock: Callable[[], float] = time.time,
        secret: bytes | None = None,
    ) -> None:
        """``webhooks``: [{"url", "events", "secret"}] for every petition; ``on_finish``:
        the hook command template; ``secret``: what signs the bodies of the petitions' own
        webhooks (``--notify``) (all from the configuration file); ``sinks``: (plugin
        name, callable) receiving every event envelope."""
        self.scheduler = scheduler  # also for kinds' contexts (the GPU inventory)
        self.store: Store | None = None  # set once the service opens its records
        self.webhooks = Webhooks(webhooks, failed=self._webhook_failed, secret=secret)
        self.finish_hooks = FinishHooks(on_finish)
        self.sinks = EventSinks(sinks or [])
        self._clock = clock
        self._watchers: dict[Peer, frozenset[str] | None] = {}
        self._mute: set[Peer] = set()  # watchers that want no output events
        self.usage = UsageFeed(scheduler, lambda: self.store, clock=clock)
        # Who waits for each petition's end, by record number: one peer, or a list of
        # several (a wait on a 100,000-member array costs a dict entry a member, and
        # builds no Job: see wait_for). Changed under _subs_lock.
        self._waiters: dict[int, Peer | list[Peer]] = {}
        # Who follows each petition's output (peer -> handle), by record number: changed
        # under the petition's output lock (feed reads it there) and _subs_lock.
        self._followers: dict[int, dict[Peer, int]] = {}
        # Guards _waiters, _followers and the peers' ``subscribed``; the innermost lock
        # (taken under a petition's output lock or the scheduler's; nothing under it).
        self._subs_lock = threading.Lock()
        self._lock = threading.Lock()
        # Output and progress events are built only if someone wants them.
        self._hooks_want_stream = bool(self.sinks.sinks) or any(
            {"output", "progress"} & w["events"] for w in self.webhooks.everyone
        )

    def configure(
        self, webhooks: list[dict[str, Any]], on_finish: str | None, secret: bytes | None
    ) -> None:
        """New webhooks, hook and secret (a configuration reload), for events from now on."""
        self.webhooks.everyone = webhooks
        self.webhooks.secret = secret
        self.finish_hooks.on_finish = on_finish
        self._hooks_want_stream = bool(self.sinks.sinks) or any(
            {"output", "progress"} & w["events"] for w in webhooks
        )

    # -- events --------------------------------------------------------------------------
    @property
    def watching(self) -> bool:
        """Whether anyone wants output and progress events (so building them is worth it)."""
        return bool(self._watchers) or self._hooks_want_stream

    @property
    def wants_output(self) -> bool:
        """Whether anyone wants output events (``orcha top`` watches without them)."""
        return len(self._watchers) > len(self._mute) or self._hooks_want_stream

    def watch_event(self, job: Waiting, event: str, data: dict[str, Any]) -> None:
        """The one event envelope ``{event, petition, kind, timestamp, data}`` about
        ``job``: to every peer watching it, and to the webhooks that want it."""
        hooked = bool(self.webhooks.everyone or job.schedule.notify)
        if not self._watchers and not hooked and not self.sinks.sinks:
            return
        envelope = {"event": event, "petition": job.id, "kind": job.kind or "",
                    "timestamp": self._clock(), "data": data}  # fmt: skip
        if hooked:
            self.webhooks.event(job, envelope)
        self.sinks.event(envelope)
        if not self._watchers:
            return
        frame = messages.encode(envelope)
        with self._lock:
            watchers = list(self._watchers.items())
        droppable = event in STREAM_EVENTS  # a slow watcher is told how many it missed
        mute = self._mute if event == "output" else ()
        for peer, ids in watchers:
            if (ids is None or job.id in ids) and peer not in mute:
                peer.deliver_event(frame, droppable)

    def ended(self, job: Job) -> None:
        """``job`` has ended (its record written): tell its waiters, followers, watchers
        and the on_finish hook. Who subscribes from now on is told at once."""
        seq = job.seq
        with job.output_lock:
            job.announced = True
            with self._subs_lock:
                found = self._waiters.pop(seq, None)
                if found is not None and not self._waiters:
                    self._waiters = {}  # a dict does not shrink: see _drop_waiter
                waiters: list[Peer] = (
                    [] if found is None else found if isinstance(found, list) else [found]
                )
                followers = self._followers.pop(seq, None) or {}
                # Its subscribers' peers forget it too: a long-lived client that waits
                # for or follows petition after petition would otherwise keep them all.
                for peer in (*waiters, *followers):
                    _unsubscribed(peer, seq)
                # A waiter still subscribed to others needs this end only with theirs.
                waiting_more = [p for p in waiters if p.subscribed]
        summary = job.summary()
        if waiters:
            frame = messages.encode({"event": "ended", **summary})
            for peer in waiters:
                if peer in waiting_more:
                    peer.deliver_soon(frame)
                else:
                    peer.deliver(frame)
        for peer, handle in followers.items():
            peer.deliver(messages.encode({"event": "end", "handle": handle, **summary}))
        self.watch_event(job, "finished", summary)
        self.finish_hooks.finished(job)

    def ended_at_restart(self, row: dict[str, Any]) -> None:
        """A petition ended without a Job (a restart found it INTERRUPTED or CANCELLED
        it; a stopping service's queued one was cancelled): ``row`` is its record as
        updated. Its webhooks, the event sinks and the on_finish hook hear of
        it as of a live end (no session can be waiting for it yet)."""
        from types import SimpleNamespace

        from orcha.protocol.schedule import Schedule

        try:
            schedule = Schedule.from_wire(row.get("schedule") or {})
        except Exception:  # a record that cannot be read again: hooks still hear of it
            schedule = Schedule()
        envelope = {"event": "finished", "petition": row["id"], "kind": row.get("kind") or "",
                    "timestamp": row.get("ended") or self._clock(),
                    "data": {k: row.get(k) for k in (*_ENDED, "attempt", "outcome")}}  # fmt: skip
        if self.webhooks.everyone or schedule.notify:
            job = SimpleNamespace(id=row["id"], seq=row.get("seq"), schedule=schedule)
            self.webhooks.event(job, envelope)
        self.sinks.event(envelope)
        self.finish_hooks.record_ended(row, schedule.group)

    def feed(self, job: Job, stream: int, data: bytes) -> None:
        """Output of ``job`` to the clients following it (its emit calls this under its
        output lock, right after writing its log)."""
        followers = self._followers.get(job.seq)
        if followers is not None:
            for peer, handle in followers.items():
                peer.deliver_output(handle, stream, data, job.log)

    def _add_waiter(self, seq: int, peer: Peer) -> None:
        # Under _subs_lock, and under what keeps the petition from being announced
        # meanwhile (its output lock, or the scheduler's lock while it has no Job).
        found = self._waiters.get(seq)
        if found is None:
            self._waiters[seq] = peer
        elif isinstance(found, list):
            if peer not in found:
                found.append(peer)
        elif found is not peer:
            self._waiters[seq] = [found, peer]
        peer.subscribed.add(seq)

    def _drop_waiter(self, seq: int, peer: Peer) -> None:
        # Under _subs_lock.
        found = self._waiters.get(seq)
        if found is peer:
            del self._waiters[seq]
            if not self._waiters:
                self._waiters = {}  # a dict does not shrink: a long array's table goes
        elif isinstance(found, list) and peer in found:
            found.remove(peer)
            if len(found) == 1:
                self._waiters[seq] = found[0]

    def _webhook_failed(self, job: Job, message: str) -> None:
        """A webhook delivery finally failed: kept in the petition's record."""
        if self.store is not None and job.seq:
            self.store.update_later(job.seq, notify_error=message)

    def finish_deliveries(self, timeout: float) -> list[str]:
        """Let queued webhooks, hooks and sink events go out within ``timeout`` seconds in
        all (webhooks are tried again without pauses, each receiver's in parallel with
        the others'); what is still queued then, one line each with its count (webhooks:
        how many to which URL); nothing if all went out."""
        deadline = time.monotonic() + timeout
        self.webhooks.hurry()
        left = []
        if not self.webhooks.idle(max(0.0, deadline - time.monotonic())):
            pending = self.webhooks.pending()
            if pending:
                urls = ", ".join(f"{n} to {url}" for url, n in sorted(pending.items()))
                left.append(f"{sum(pending.values())} webhook deliveries ({urls})")
        queues = (("on_finish hook runs", self.finish_hooks),
                  ("events for the plugins' event sinks", self.sinks))  # fmt: skip
        for what, queue in queues:
            if not queue.idle(max(0.0, deadline - time.monotonic())) and queue.pending():
                left.append(f"{queue.pending()} {what}")
        return left

    # -- subscriptions ---------------------------------------------------------------------
    def ended_record(self, petition_id: str) -> dict[str, Any] | None:
        """The record ``petition_id`` names (a reference: see
        :mod:`orcha.service.references`); None without one, or without records."""
        if self.store is None:
            return None
        found = resolve(petition_id, self.scheduler, self.store)
        return found[-1].record if found else None  # with its changes not committed yet

    def wait_for(self, peer: Peer, ids: list[str]) -> dict[str, Any]:
        """Which of the petitions ``ids`` name have ended, which are pending (the peer
        is told when each ends; each petition once, by its ID), and which references
        name none.

        A petition queued compactly (:mod:`orcha.service.queued`) is waited for by its
        record number, without building its Job: under the scheduler's lock, an entry
        not built yet cannot have ended (its end needs its Job), and the Job built later
        announces its end by that number. So a wait on a queued 100,000-member array
        keeps the queue as compact as it was."""
        ended: list[dict[str, Any]] = []
        pending: list[str] = []
        missing: list[str] = []
        seen: set[int] = set()  # record numbers: several references may name one
        # In batches: a batch's targets, not 100,000 of them, are held at a time, and
        # the scheduler's lock is not held up for all of them at once.
        for start in range(0, len(ids), _LOCKED_BATCH):
            targets, unknown = resolve_all(
                ids[start : start + _LOCKED_BATCH], self.scheduler, self.store
            )
            missing += unknown
            targets = [t for t in targets if t.seq is None or t.seq not in seen]
            seen.update(t.seq for t in targets if t.seq is not None)
            self._wait_batch(peer, targets, ended, pending, missing)
        return {"ended": ended, "pending": pending, "missing": missing}

    def _wait_batch(
        self, peer: Peer, targets: list[Target], ended: list[dict[str, Any]],
        pending: list[str], missing: list[str],
    ) -> None:  # fmt: skip
        """wait_for's work on some of its targets (the lists are its reply's)."""
        scheduler = self.scheduler
        # Each target's Job, or the ID it is waited for by (subscribed by number).
        held: list[Job | str | None] = []
        with scheduler.lock, self._subs_lock:
            for target in targets:
                found = target.held
                if found is not None and target.seq is not None:
                    found = scheduler.held(target.seq) or found  # as it is now
                if type(found) is Queued:
                    if found.built is None:
                        self._add_waiter(found.seq, peer)
                        held.append(found.id)
                        continue
                    found = found.built
                held.append(found)  # type: ignore[arg-type]  # a Job, or None
        for target, job in zip(targets, held, strict=True):
            if isinstance(job, str):
                pending.append(job)
            elif job is not None:
                with job.output_lock:
                    if not job.announced:
                        with self._subs_lock:
                            self._add_waiter(job.seq, peer)
                        pending.append(job.id)
                        continue
                ended.append(_as_asked(job.summary(), target))
            elif (record := target.record) is None:
                missing.append(target.ref)
            else:
                ended.append(_as_asked({k: record[k] for k in _ENDED}, target))

    def follow(self, peer: Peer, ids: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
        """For each petition ``ids`` name, what to replay from its log and whether it
        has ended; live ones are subscribed exactly where the replay stops. Each is
        named as the reference given (see references.label)."""
        plan: list[dict[str, Any]] = []
        targets, missing = resolve_all(ids, self.scheduler, self.store)
        label = labeller(targets)
        for target in targets:
            job = target.job
            if job is not None and job.log is not None:
                handle = peer.new_handle()
                with job.output_lock:
                    if not job.announced:
                        with self._subs_lock:
                            self._followers.setdefault(job.seq, {})[peer] = handle
                            peer.subscribed.add(job.seq)
                        peer.following(handle, job.log)
                        plan.append({"id": label(target), "handle": handle,
                                     "log_path": job.log.path, "end": job.log.size,
                                     "ended": None})  # fmt: skip
                        continue
                plan.append({"id": label(target), "handle": handle,
                             "log_path": job.log.path, "end": None,
                             "ended": job.summary()})  # fmt: skip
                continue
            record = target.record
            if record is None or record["state"] in (str(State.QUEUED), str(State.RUNNING)):
                missing.append(target.ref)  # unknown, or of the original API (no log)
                continue
            plan.append({
                "id": label(target), "handle": peer.new_handle(),
                "log_path": record["log_path"], "end": None,
                "ended": {k: record[k] for k in _ENDED},
            })  # fmt: skip
        return plan, missing

    def watch(
        self, peer: Peer, ids: list[str], usage: float | None = None, output: bool = True
    ) -> dict[str, Any]:
        """Subscribe ``peer`` to events (of ``ids``, or all); it first gets the current
        state of each, so a watcher that starts late misses nothing. With ``usage``, it
        also gets a ``usage`` event now and every ``usage`` seconds (see
        :mod:`orcha.service.usage`), and the reply has the ``recent`` ended records;
        without ``output``, no ``output`` events."""
        targets, missing = resolve_all(ids, self.scheduler, self.store)
        # Watched by name: a name belongs to one live petition at most. Not the name of
        # an ended record named by its number or as NAME~N (an array's member whose ID
        # a later petition took, an older run): that record has no more events (its end
        # is told below), and the name is another's.
        wanted = frozenset(t.id for t in targets if t.live or _newest(t.ref)) or None
        if ids and wanted is None:
            wanted = frozenset()
        with self._lock:
            self._watchers[peer] = wanted  # a peer's new watch replaces its old one
            if output:
                self._mute.discard(peer)
            else:
                self._mute.add(peer)
        live = {job.id: job for job in self.scheduler.views()}
        for job in live.values():
            if wanted is not None and job.id not in wanted:
                continue
            if job.announced:
                # Its "finished" went out before this peer watched (the scheduler forgets
                # a job just after its end is announced): tell it here, or a watcher of
                # this ID would wait forever. At worst it hears the end twice.
                peer.deliver(messages.encode({
                    "event": "finished", "petition": job.id, "kind": job.kind or "",
                    "timestamp": job.ended or self._clock(), "data": job.summary(),
                }))  # fmt: skip
            else:
                # To this peer only: the others (and webhooks) knew it already.
                peer.deliver(messages.encode({
                    "event": "state", "petition": job.id, "kind": job.kind or "",
                    "timestamp": self._clock(),
                    "data": {"state": str(job.state), "priority": job.priority},
                }))  # fmt: skip
        for target in targets:
            held = live.get(target.id)  # by record number: reading builds no Job
            if held is not None and held.seq == target.seq:
                continue
            record = target.record
            if record is None:
                missing.append(target.ref)
                continue
            peer.deliver(messages.encode({
                "event": "finished", "petition": record["id"], "kind": record["kind"],
                "timestamp": record["ended"],
                # The same fields as a finish seen live (Job.summary).
                "data": {k: record.get(k) for k in (*_ENDED, "attempt", "outcome")},
            }))  # fmt: skip
        if usage is None:
            self.usage.remove(peer)
            if not ids:
                return {"missing": missing}
            # The "finished" events that end this watch: one per petition found (an
            # array's name stands for each of its members).
            return {"missing": missing, "ends": [t.id for t in targets if t.ref not in missing]}
        self.usage.add(peer, usage, wanted)  # after the state events: its first comes now
        return {"missing": missing, "recent": self._recent(wanted)}

    def _recent(self, wanted: frozenset[str] | None) -> list[dict[str, Any]]:
        """The last ended records (of ``wanted``), newest first, without their seq."""
        from orcha.defaults import USAGE_RECENT

        if self.store is None:
            return []
        try:
            records = recent_ended(
                self.store, USAGE_RECENT if wanted is None else 10 * USAGE_RECENT
            )
        except Exception:  # the records cannot be read now: a watcher can do without them
            log.warning("reading the last ended petitions failed", exc_info=True)
            return []
        return [r for r in records if wanted is None or r["id"] in wanted][:USAGE_RECENT]

    def unsubscribe(self, peer: Peer) -> None:
        """``peer`` has gone: it follows, waits for and watches nothing any more."""
        with self._subs_lock:
            seqs = list(peer.subscribed)  # only its own subscriptions, not the queue
        for seq in seqs:
            job = self.scheduler.built(seq)
            if job is None:
                # Not built (only waited for: a follower builds it), or ended: its end
                # took its subscribers already, or will take them.
                with self._subs_lock:
                    self._drop_waiter(seq, peer)
                    _unsubscribed(peer, seq)
                continue
            with job.output_lock, self._subs_lock:  # feed reads the followers under it
                self._drop_waiter(seq, peer)
                followers = self._followers.get(seq)
                if followers is not None:
                    followers.pop(peer, None)
                    if not followers:
                        del self._followers[seq]
                _unsubscribed(peer, seq)
        with self._lock:
            self._watchers.pop(peer, None)
            self._mute.discard(peer)
        self.usage.remove(peer)


def _newest(ref: str) -> bool:
    """Whether ``ref`` names the newest record of its name (``NAME``, ``NAME~0``), not a
    record number nor an older record (``NAME~N``)."""
    parts = split(ref)
    return parts is not None and parts[1] == 0


def _as_asked(summary: dict[str, Any], target: Target) -> dict[str, Any]:
    """An ended petition's summary for a waiter, with the ``ref`` it was asked for by
    where that is not its ID (``a~1``, ``#12``): two records of one reused ID are told
    apart."""
    if target.ref != summary["id"]:
        summary["ref"] = target.ref
    return summary
