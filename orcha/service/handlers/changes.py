"""Handlers that change petitions after submission: release, edit, restart.

``release`` lets held or delayed petitions start; ``edit`` changes a queued petition's
priority and requests; ``restart`` runs ended petitions again, each as a new record
linked to its old one (``restart_of``). Every change of a waiting petition is saved in
its record, so it survives a restart of the service.

IDs are resolved through :mod:`orcha.service.references` in one place here
(:func:`live_job`, :func:`_named`), so what an ID names (record numbers, ``NAME~1``) is
read the same way by every change.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from orcha.errors import ExitCode, PetitionError
from orcha.protocol.outputs import DISCARD
from orcha.protocol.schedule import check_seconds
from orcha.service.references import resolve
from orcha.states import State
from orcha.text import quoted

if TYPE_CHECKING:
    from orcha.protocol.change_requests import EditRequest, ReleaseRequest, RestartRequest
    from orcha.protocol.schedule import Schedule
    from orcha.service.handlers import Handler
    from orcha.service.job import Job
    from orcha.service.peer import Peer
    from orcha.service.service import Service

log = logging.getLogger("orcha.service")


# -- what an ID names ------------------------------------------------------------------------
def live_job(service: Service, petition_id: str) -> Job | None:
    """The queued or running petition ``petition_id`` names, or None."""
    found = resolve(petition_id, service.scheduler, service.store)
    return found[-1].job if found else None


def _named(service: Service, petition_id: str) -> tuple[Job | None, dict[str, Any]]:
    """What ``petition_id`` names, resolved once: its queued or running job (None if it
    has ended) and its record (a name: its newest). PetitionError (NO_PETITION, one
    line) if it names none."""
    found = resolve(petition_id, service.scheduler, service.store)
    target = found[-1] if found else None
    record = target.record if target is not None else None
    if target is None or (target.job is None and record is None):
        raise PetitionError(
            f"no petition has ID {quoted(petition_id)}; see 'orcha status'",
            ExitCode.NO_PETITION,
        )
    return target.job, record if record is not None else {}


def _not_waiting(service: Service, petition_id: str, what: str) -> PetitionError:
    """Why petition ``petition_id`` cannot be ``what`` (released, edited), in one line.
    NO_PETITION whether none has that ID or it is not queued: no queued petition has it
    (as cancel of an ended one and clean of a live one)."""
    try:
        job, record = _named(service, petition_id)
    except PetitionError as e:
        return e
    if job is not None:
        return PetitionError(
            f"petition {petition_id!r} is {str(job.state).lower()}; only a queued one can be "
            f"{what}",
            ExitCode.NO_PETITION,
        )
    return PetitionError(
        f"petition {petition_id!r} has ended ({record['state']}); only a queued one can be "
        f"{what} ('orcha restart {petition_id}' runs it again)",
        ExitCode.NO_PETITION,
    )


def _refuse_while_stopping(service: Service, what: str) -> None:
    """PetitionError (REFUSED, one line) while the service stops: it has put its queued
    petitions away for its next start (their records), so none can be ``what`` (released,
    edited) now; without this, each would be said to have ended (QUEUED)."""
    if service.stopping:
        raise PetitionError(
            "the service is stopping; its queued petitions stay as they are for its next "
            f"start: {what} them once 'orcha serve' runs again",
            ExitCode.REFUSED,
        )


def _save(service: Service, job: Job, **fields: Any) -> None:
    """Keep a waiting job's changed request in its record (queued again after a restart
    with it), and whether its dependencies are met (new ones may not be)."""
    if service.store is not None and job.seq is not None:
        service.store.update_later(
            job.seq, schedule=job.schedule.to_wire(), deps_met=int(job.deps_ready), **fields
        )


# -- release ---------------------------------------------------------------------------------
def release(service: Service, peer: Peer, request: ReleaseRequest) -> dict[str, Any]:
    """Let held (``--hold``) or delayed (``--delay``, ``--at``) petitions start like any
    other: for each ID, ``"released"`` or why not. An array's name stands for its held
    or delayed members (the others are left out quietly, as 'scontrol release' does;
    an array with none says so under its name)."""
    from orcha.service import arrays

    _refuse_while_stopping(service, "release")
    scheduler, now = service.scheduler, service.clock()
    ids, named = arrays.expand(service, request.ids)
    members = {member for of in named.values() for member in of}
    results: dict[str, str] = {}
    for petition_id in ids:
        job = live_job(service, petition_id)
        if job is None or job.state is not State.QUEUED:
            if petition_id not in members:
                results[petition_id] = _not_waiting(service, petition_id, "released").message
            continue
        schedule = job.schedule
        if not schedule.hold and (schedule.begin is None or schedule.begin <= now):
            if petition_id not in members:
                results[petition_id] = f"petition {petition_id!r} is neither held nor delayed"
            continue
        if not scheduler.release(job):  # it started or ended meanwhile
            results[petition_id] = _not_waiting(service, petition_id, "released").message
            continue
        _save(service, job)
        service.events.watch_event(job, "released", {})
        log.info("petition %s released", job.id)
        results[petition_id] = "released"
    for name, of in named.items():
        if not any(results.get(member) == "released" for member in of):
            results[name] = f"array {name!r} has no held or delayed petition"
    return {"results": results}


# -- edit ------------------------------------------------------------------------------------
def _changed(schedule: Schedule, changes: dict[str, Any], now: float) -> Schedule:
    """``schedule`` with ``changes``; PetitionError (refused) if one is invalid. A
    ``delay`` becomes a start time counted from now (the later of it and a ``begin``
    given with it)."""
    changes = dict(changes)
    delay = changes.pop("delay", None)
    try:
        if delay is not None:
            delay = check_seconds(delay, "delay")  # as a submit's: a number, 10 years at most
        changed = schedule.replace(**changes)
        if delay:
            begin = max(changes.get("begin") or 0.0, now + delay)
            changed = changed.replace(begin=begin)
    except ValueError as e:
        raise PetitionError(f"invalid request: {e}", ExitCode.REFUSED) from None
    return changed


def edit(service: Service, peer: Peer, request: EditRequest) -> dict[str, Any]:
    """Change a queued petition's priority and requests (refused once it has started);
    its place in the queue follows its new priority. The new request must be one this
    service can ever meet, and its new dependencies must exist. An array's name stands
    for its queued members (as ``scontrol update`` of a job array): each is checked
    before any changes, the others are left out quietly; ``edited`` lists them."""
    from orcha.service import arrays

    _refuse_while_stopping(service, "edit")
    members, named = arrays.expand(service, [request.id])
    if not named:
        return _edit_one(service, request.id, request)
    now = service.clock()
    checked: dict[int, Schedule] = {}  # members share their schedule: checked once
    planned: list[tuple[Job, Schedule | None]] = []
    waits: dict[str, tuple[str, ...]] = {}  # what the members checked will run after
    for member in members:
        job = live_job(service, member)
        if job is None or job.state is not State.QUEUED:
            continue
        schedule = None
        if request.changes:
            schedule = checked.get(id(job.schedule))
            if schedule is None:
                schedule = _changed(job.schedule, request.changes, now)
                service.scheduler.check_feasible(schedule)
                checked[id(job.schedule)] = schedule
            # Each against what the members checked before it will run after, not what
            # they run after now.
            service.check_dependencies(job.id, schedule, waits)
            waits[job.id] = schedule.dependencies
        planned.append((job, schedule))
    edited = [job for job, schedule in planned if _apply(service, job, request, schedule)]
    if not edited:
        raise PetitionError(
            f"array {request.id!r} has no queued petition; only a queued one can be edited",
            ExitCode.NO_PETITION,
        )
    log.info("array %s: %d queued petition(s) edited", request.id, len(edited))
    first = edited[0]
    return {"id": request.id, "priority": first.priority,
            "schedule": first.schedule.to_wire(), "edited": [j.id for j in edited]}  # fmt: skip


def _edit_one(service: Service, petition_id: str, request: EditRequest) -> dict[str, Any]:
    job = live_job(service, petition_id)
    if job is None or job.state is not State.QUEUED:
        raise _not_waiting(service, petition_id, "edited")
    schedule = None
    if request.changes:
        schedule = _changed(job.schedule, request.changes, service.clock())
        service.scheduler.check_feasible(schedule)
        service.check_dependencies(job.id, schedule)
    if not _apply(service, job, request, schedule):
        raise _not_waiting(service, petition_id, "edited")
    log.info("petition %s edited: priority %s, %s", job.id, job.priority, job.schedule.to_wire())
    return {"id": job.id, "priority": job.priority, "schedule": job.schedule.to_wire()}


def _apply(service: Service, job: Job, request: EditRequest, schedule: Schedule | None) -> bool:
    """Give queued ``job`` the request's priority and ``schedule``, saved and announced;
    False if it is no longer queued (it started meanwhile)."""
    if not service.scheduler.change(job, priority=request.priority, schedule=schedule):
        return False
    _save(service, job, **({"priority": request.priority} if request.priority is not None else {}))
    service.events.watch_event(job, "edited", {"priority": job.priority,
                                               "schedule": job.schedule.to_wire()})  # fmt: skip
    return True


# -- restart ---------------------------------------------------------------------------------
#: The ended states ``restart --failed`` picks: failed, or cut short by the service's
#: death (not cancelled: someone meant that).
_FAILED = (str(State.FAILED), str(State.INTERRUPTED))


def _chosen(service: Service, request: RestartRequest) -> list[str]:
    """The IDs to restart: those given, or the failed ones (of a group), whose newest
    record failed and was not run again already (a record the service numbered is the
    only one of its ID: its restarts are numbered anew, linked by ``restart_of``)."""
    if request.ids:
        return list(dict.fromkeys(request.ids))
    store = service.store
    if store is None:
        return []
    failed = store.find((), _FAILED, columns=("seq", "id", "state", "schedule"))
    if request.group is not None:
        failed = [
            r for r in failed if (r["schedule"] or {}).get("group", "default") == request.group
        ]
    newest = {r["id"]: r["seq"] for r in store.find([r["id"] for r in failed], (), ("seq", "id"))}
    again = store.restarted()
    return list(
        dict.fromkeys(
            r["id"] for r in failed if newest.get(r["id"]) == r["seq"] and r["seq"] not in again
        )
    )


def _members(
    service: Service, request: RestartRequest
) -> tuple[list[str], dict[str, list[str]], dict[str, str]]:
    """:func:`_chosen`, each array's name replaced by its members that have ended (with
    ``failed``: failed or INTERRUPTED); the others are left out quietly, as cancel does.
    Also the arrays so replaced, with all their members; and the IDs named with
    ``failed`` whose newest run did not fail, with why they are not restarted."""
    from orcha.service import arrays

    ids, named = arrays.expand(service, _chosen(service, request))
    given = request.failed and bool(request.ids)  # else _chosen picked failed ones only
    if not named and not given:
        return ids, named, {}
    of_arrays = {member for members in named.values() for member in members}
    kept: list[str] = []
    skipped: dict[str, str] = {}
    for petition_id in ids:
        found = resolve(petition_id, service.scheduler, service.store)
        target = found[-1] if found else None
        record = target.record if target is not None else None
        ended = target is not None and target.job is None and record is not None
        if petition_id in of_arrays and not ended:
            continue
        if given and ended and record is not None and record.get("state") not in _FAILED:
            if petition_id not in of_arrays:
                skipped[petition_id] = (
                    f"petition {petition_id!r} did not fail ({record['state']}); not restarted"
                )
            continue
        kept.append(petition_id)
    return kept, named, skipped


def _restart_one(service: Service, petition_id: str, request: RestartRequest) -> dict[str, Any]:
    """Queue petition ``petition_id`` again (a new record, linked to the old); its new
    record's ``{"id", "seq", "restart_of"}``. PetitionError (one line) if it cannot."""
    from orcha.protocol.ids import is_number
    from orcha.protocol.messages import SubmitRequest
    from orcha.protocol.schedule import Schedule

    job, record = _named(service, petition_id)
    if job is not None:
        raise PetitionError(
            f"petition {petition_id!r} is still {str(job.state).lower()}; restart it once it "
            f"has ended (or 'orcha cancel {petition_id}' first)",
            ExitCode.DUPLICATE,
        )
    if record["state"] in (str(State.QUEUED), str(State.RUNNING)):
        raise PetitionError(
            f"petition {petition_id!r} is still {record['state'].lower()}", ExitCode.DUPLICATE
        )
    if not record["kind"] or not record["log_path"]:
        raise PetitionError(
            f"petition {petition_id!r} came through the original Orcha API; send it again instead",
            ExitCode.REFUSED,
        )
    try:
        old = Schedule.from_wire(record["schedule"])
    except ValueError as e:  # a record written by another version
        raise PetitionError(f"cannot restart {petition_id!r}: {e}", ExitCode.REFUSED) from None
    # Its old start time has passed and its hold was released: it runs now unless the
    # restart asks again (--hold, --delay, --at).
    schedule = _changed(old.replace(hold=False, begin=None), request.changes, service.clock())
    priority = request.priority if request.priority is not None else record["priority"]
    # The new record takes the old one's name, whatever named it ('build~1', its record
    # number); one the service numbered (no name given) is numbered again.
    name = record.get("id") or petition_id
    new_id = None if is_number(name) else name
    submit = SubmitRequest(
        record["kind"], new_id, record["params"] or {}, priority, record["cwd"] or "/",
        record["env"] or {}, attach=False, user=record["user"] or "", host=record["host"] or "",
        schedule=schedule,
    )  # fmt: skip
    job = service.submit(submit, DISCARD, None, restart_of=record["seq"])
    log.info("petition %s restarted (record %s, of record %s)", job.id, job.seq, record["seq"])
    return {"id": job.id, "seq": job.seq, "restart_of": record["seq"]}


def restart(service: Service, peer: Peer, request: RestartRequest) -> dict[str, Any]:
    """Run ended petitions again, detached: each with the same kind, parameters, working
    directory, environment and requests (``priority`` and ``changes`` override them),
    as a new record whose ``restart_of`` is the old one's number. For each ID,
    ``"restarted"`` or why not (one line); ``restarted``: the new records. An array's
    name restarts its members that have ended (with ``failed``: those that failed), each
    under its own name; they run as petitions of their own (the array's ``%N`` is not
    theirs)."""
    restarted: list[dict[str, Any]] = []
    ids, named, results = _members(service, request)
    again: set[int | None] = set()  # the records run again
    for petition_id in ids:
        found = resolve(petition_id, service.scheduler, service.store)
        if found and found[-1].seq in again:
            continue  # a record named twice ('w1' and its number) runs again once
        try:
            new = _restart_one(service, petition_id, request)
        except PetitionError as e:
            if len(request.ids) == 1 and not named:
                raise  # one ID: its refusal is the answer, with its exit code
            results[petition_id] = e.message
            continue
        results[petition_id] = "restarted"
        restarted.append(new)
        again.add(new["restart_of"])
    for name, members in named.items():
        if not any(results.get(member) == "restarted" for member in members):
            which = "failed" if request.failed else "ended"
            results[name] = f"array {name!r} has no {which} petition to restart"
    return {"results": results, "restarted": restarted}


HANDLERS: dict[str, Handler] = {
    "release": release,
    "edit": edit,
    "restart": restart,
}
