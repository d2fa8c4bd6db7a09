"""Intake: how the service takes petitions of orcha's kinds into its records and queue.

Mixed into :class:`~orcha.service.service.Service`: the ID reservation, the record and
the queueing that one submission (``Service._enqueue``) and a batch (an array's members,
:meth:`Intake.submit_many`: all or none, one transaction) share.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orcha.defaults import STORE_SYNC_WAIT
from orcha.errors import DuplicateIdError, ExitCode, PetitionError
from orcha.protocol.ids import is_number
from orcha.protocol.outputs import DISCARD
from orcha.protocol.schedule import Schedule
from orcha.service.job import Job
from orcha.service.queued import queue_many
from orcha.states import State

if TYPE_CHECKING:
    from orcha.model import Petition
    from orcha.protocol.messages import SubmitRequest
    from orcha.service.children import Family
    from orcha.service.dependencies import Planned
    from orcha.service.events import Events
    from orcha.service.kinds import RuntimeKinds
    from orcha.service.logs import PetitionLog
    from orcha.service.manager import Manager
    from orcha.service.peer import Peer
    from orcha.service.queued import Waiting
    from orcha.service.scheduler import Scheduler
    from orcha.service.store import Store
    from orcha.settings import Settings

log = logging.getLogger("orcha.service")


class Intake:
    """The parts of intake :class:`~orcha.service.service.Service` shares between one
    submission and a batch (it provides the attributes and methods declared here)."""

    scheduler: Scheduler
    events: Events
    store: Store | None
    settings: Settings
    manager: Manager
    runtime_kinds: RuntimeKinds
    clock: Callable[[], float]
    token_prefix: str
    wake_on_submit: bool
    _intake: set[str]
    _recorded: threading.Condition

    def _check_accepting(self) -> None:
        raise NotImplementedError

    def _check_dependencies(self, petition_id: str, schedule: Schedule) -> None:
        """Refuse (PetitionError) dependencies on itself, on references that name no
        petition or that close a cycle; keep the others pinned (see dependencies.check)."""
        self.check_dependencies(petition_id, schedule, mine=(petition_id,))

    def check_dependencies(
        self,
        petition_id: str,
        schedule: Schedule,
        planned: Planned | None = None,
        mine: tuple[str, ...] = (),
    ) -> None:
        """:meth:`_check_dependencies`, also for a request changed after submission
        (``orcha edit``); ``planned``: the new dependencies of others changed with it.
        A dependency being recorded (an array's members take a while) is waited for,
        but for the IDs this request is recording itself (``mine``)."""
        from orcha.service import dependencies

        waited = [d for d in schedule.dependencies if d not in mine]
        if waited:
            self._await_recorded(waited)
        dependencies.check(petition_id, schedule, self.scheduler, self.store, planned)

    def _await_recorded(self, ids: list[str]) -> None:
        """Until none of ``ids`` is being recorded (at most STORE_SYNC_WAIT seconds, the
        longest a record is waited for): until then they name nothing to run after."""
        deadline = time.monotonic() + STORE_SYNC_WAIT
        with self._recorded:
            while any(i in self._intake for i in ids):
                left = deadline - time.monotonic()
                if left <= 0:
                    return  # refused as naming nothing, if it still does not
                self._recorded.wait(left)

    def array_members(self, name: str) -> list[str] | None:
        """References to the members of the newest array ``name`` (by its name in
        ``--after``: see orcha.service.array_ends), None if it names no array."""
        from orcha.service import arrays

        if self.store is None or is_number(name):
            return None
        return arrays.expand(self, [name])[1].get(name)  # type: ignore[arg-type]

    def open_log(self, job: Job, path: str) -> PetitionLog:
        raise NotImplementedError

    def log_path(self, uid: str) -> str:
        raise NotImplementedError

    def wake(self) -> None:
        raise NotImplementedError

    def submit_many(
        self,
        requests: list[SubmitRequest],
        peer: Peer | None,
        fields: list[dict[str, Any]],
        prepare: Callable[[Waiting], None] | None = None,
        name: str | None = None,
    ) -> list[Waiting]:
        """Queue several petitions of orcha's kinds at once (an array's members), all or
        none: every ID is checked, every petition built and every record added (with
        its own extra ``fields``) in one transaction before any is queued;
        ``prepare(job)`` is called on each before it is queued. Their output is
        kept in their logs only (followers read it); ``peer``, if given, is the client
        they end with; ``name``, the array's, taken with their IDs (refused while a
        petition or another array of that name is queued or running). Raises
        PetitionError if refused (nothing is recorded then)."""
        self._check_accepting()
        ids = [r.id or "" for r in requests]  # members are always named
        built: list[tuple[Petition, SubmitRequest, Schedule]] = []
        # Members sharing one parameters object (an array's, arrays.py) are checked once;
        # those sharing a schedule keep sharing it once timed (one wire form below).
        # Keyed by id(): every request, so every key's object, lives until we return.
        checked: dict[int, dict[str, Any]] = {}
        timed: dict[int, Schedule] = {}
        default = Schedule()
        now = self.clock()
        for request in requests:
            resolved = self.runtime_kinds.resolve(request)
            memo = checked.get(id(resolved.params))
            petition = self.manager.petition_from_request(resolved, DISCARD, checked=memo)
            if memo is None:
                checked[id(resolved.params)] = dict(petition.params)  # type: ignore[attr-defined]
            schedule = request.schedule or default
            if id(schedule) not in timed:
                timed[id(schedule)] = timed_schedule(schedule, now)
            built.append((petition, resolved, timed[id(schedule)]))
        for schedule in {id(s): s for _, _, s in built}.values():
            self.scheduler.check_feasible(schedule)
        taken = [*ids, name] if name else ids
        self._take_ids(taken, None)
        try:
            if name:
                self.check_no_live_array(name)
            for petition_id, (_, _, schedule) in zip(ids, built, strict=True):
                if name and name in schedule.dependencies:
                    raise PetitionError(
                        f"array {name!r} cannot run after itself; check --after",
                        ExitCode.REFUSED,
                    )
                if schedule.dependencies:
                    self.check_dependencies(petition_id, schedule, mine=tuple(taken))
            named = []
            for _ in built:
                uid = os.urandom(8).hex()
                named.append((f"{self.token_prefix}-{uid}", self.log_path(uid)))
            seqs: list[int | None] = [None] * len(built)
            if self.store is not None:
                # Members share their schedule: one wire form for all.
                wires = {id(s): s.to_wire() for _, _, s in built}
                records = [
                    {**self._new_record(petition, True, request.kind, resolved, schedule,
                                        None, now, token, log_path, wires[id(schedule)]),
                     **extra}
                    for (petition, resolved, schedule), (token, log_path), request, extra
                    in zip(built, named, requests, fields, strict=True)
                ]  # fmt: skip
                seqs = list(self.store.add_many(records, "nothing was submitted"))
            jobs: list[Waiting] = []
            scheduler = self.scheduler
            # Queued together and admitted once (not once per member, which walks the
            # queue each time): the scheduler's lock is held, so no one sees it paused.
            with scheduler.holding(settle=True):  # then starts what may start
                if peer is None and self.store is not None:  # no Job until needed
                    jobs += queue_many(self, built, named, requests, seqs, now, prepare)  # type: ignore[arg-type]
                else:
                    for (petition, _, schedule), (token, log_path), request, seq in zip(
                        built, named, requests, seqs, strict=True
                    ):
                        jobs.append(
                            self._queue_recorded(petition, True, request.kind, schedule,
                                                 peer, None, seq, token, log_path, now,
                                                 prepare)
                        )  # fmt: skip
            if name:  # before its name is free: a dependant waits for that
                scheduler.array_queued(name)
        finally:
            self._release_ids(taken)
        log.info("%d petitions (%s) queued together", len(jobs), ", ".join(ids[:3]) +
                 (", ..." if len(ids) > 3 else ""))  # fmt: skip
        if self.wake_on_submit:
            self.wake()
        return jobs

    def _take_ids(self, ids: list[str], parent: Job | None) -> None:
        """Reserve ``ids`` for petitions being recorded (under the scheduler's lock, so
        concurrent submits of one ID see each other); DuplicateIdError if one is queued,
        running, being recorded, or given twice."""
        with self.scheduler.lock:
            seen: set[str] = set()
            for petition_id in ids:
                if not petition_id:  # named by its record number once recorded
                    continue
                if (self.scheduler.peek(petition_id) is not None or petition_id in self._intake
                        or petition_id in seen):  # fmt: skip
                    raise DuplicateIdError(petition_id)
                seen.add(petition_id)
            if parent is not None and parent.family is not None:
                parent.family.check_open()
            self._intake.update(ids)

    def check_no_live_array(self, name: str) -> None:
        """DuplicateIdError if a member of array ``name`` is queued or running: a name
        belongs to one queued or running petition, or array, at a time (else ``status
        NAME`` and ``cancel NAME`` would reach only one of them). Called with ``name``
        taken (:meth:`_take_ids`): an array recorded meanwhile has been queued. A member
        referred to by its record number has a newer record of its ID (the live one, if
        any): it is not live itself."""
        found = self.store.array_refs(name) if self.store is not None and name else None
        live = self.scheduler.peek_each([r for r in found[1] if not is_number(r)] if found else [])
        if any(m is not None for m in live):
            raise DuplicateIdError(name, array=True)

    def _release_ids(self, ids: list[str]) -> None:
        with self.scheduler.lock:
            self._intake.difference_update(ids)
        with self._recorded:  # dependants of theirs may look them up now
            self._recorded.notify_all()

    def _new_record(
        self,
        petition: Petition,
        native: bool,
        kind: str | None,
        request: SubmitRequest | None,
        schedule: Schedule,
        parent: Job | None,
        now: float,
        token: str,
        log_path: str,
        schedule_wire: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The record of a petition being queued (QUEUED); ``schedule_wire``:
        ``schedule.to_wire()`` if the caller has it."""
        return {
            "service": str(self.settings.address),
            "id": str(petition.id) or None,  # None: named by its record number
            "kind": kind or "",
            "runs_as": request.kind if request and request.kind != kind else None,
            "params": request.params if request else {},
            "priority": int(getattr(petition, "priority", 0) or 0),
            "state": str(State.QUEUED),
            "submitted": now,
            "user": (request.user if request else "") or _user(),
            "host": (request.host if request else "") or socket.gethostname(),
            "cwd": request.cwd if request else "",
            "env": request.env if request else {},
            "token": token,
            "log_path": log_path if native else None,
            "schedule": schedule.to_wire() if schedule_wire is None else schedule_wire,
            **({"stdin": 1} if request is not None and request.stdin else {}),
            **(
                {"parent": parent.id, "parent_seq": parent.seq}
                if parent is not None else {}
            ),
        }  # fmt: skip

    def _queue_recorded(
        self,
        petition: Petition,
        native: bool,
        kind: str | None,
        schedule: Schedule,
        peer: Peer | None,
        parent: Job | None,
        seq: int | None,
        token: str,
        log_path: str,
        now: float,
        prepare: Callable[[Job], None] | None = None,
    ) -> Job:
        """Queue a petition whose record (``seq``) was added (a parent cancelled
        meanwhile refuses it: its record then says CANCELLED)."""
        family: Family | None = parent.family if parent is not None else None
        job = Job(
            petition, native=native, token_prefix=self.token_prefix, kind=kind, seq=seq,
            token=token, schedule=schedule, created=now,
        )  # fmt: skip
        if not job.id:  # no ID given: named by its record number
            job.id = petition.id = str(job.seq)
            if self.scheduler.peek(job.id) is not None:  # an original-API message's ID
                if self.store is not None and seq is not None:
                    self.store.update_later(seq, state="CANCELLED", ended=now)
                raise DuplicateIdError(job.id)
        job.session = peer
        job.events = self.events
        if prepare is not None:
            prepare(job)
        with self.scheduler.lock:
            if family is not None:
                try:
                    family.check_open()
                except PetitionError:  # recorded, not queued: its record says so
                    if self.store is not None and seq is not None:
                        self.store.update_later(seq, state="CANCELLED", ended=now)
                    raise
                job.parent = parent
                family.adopt(job)
            if self.store is not None and native:
                job.log = self.open_log(job, log_path)
            # Before submit(): it may start the petition at once, and watchers must
            # see "submitted" before "started".
            self.events.watch_event(job, "submitted", {"priority": job.priority})
            self.scheduler.submit(job)
        return job


@functools.cache
def _user() -> str:
    """The service's user (once: a lookup per record of an array cost more than it)."""
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def timed_schedule(schedule: Schedule, now: float) -> Schedule:
    """``schedule`` with its ``--delay`` turned into a start time on the service's clock
    (kept in the record as a time, so a restart keeps it)."""
    if not schedule.delay:
        return schedule
    begin = max(schedule.begin or 0.0, now + schedule.delay)
    return schedule.replace(begin=begin, delay=0.0)
