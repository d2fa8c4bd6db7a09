"""Handlers of the petition operations: submit, send, cancel, status, logs, clean."""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from orcha.defaults import CANCEL_REPLY_WAIT_SECONDS, OUTPUT_BUFFER_BYTES
from orcha.errors import ExitCode, NotSavedError, PetitionError
from orcha.protocol import messages
from orcha.protocol.outputs import DISCARD, OutputQueue
from orcha.protocol.schedule import DEFAULT_GROUP
from orcha.protocol.selection import first_queued, select
from orcha.service import arrays, bulk, listing
from orcha.service.listing import STATUS_COLUMNS
from orcha.service.logs import last_lines, read_log
from orcha.service.peer import Reply
from orcha.service.references import resolve, resolve_all
from orcha.states import FINISHED, State, transition
from orcha.text import quoted

if TYPE_CHECKING:
    from orcha.protocol.messages import SubmitRequest
    from orcha.protocol.requests import (
        CancelRequest,
        CleanRequest,
        LogsRequest,
        MessageRequest,
        StatusRequest,
    )
    from orcha.service.handlers import Handler
    from orcha.service.job import Job
    from orcha.service.peer import Peer
    from orcha.service.service import Service
    from orcha.service.store import Store

log = logging.getLogger("orcha.service.session")

#: Rows few enough to name in one query (SQLite's oldest limit is 999 variables).
_FEW = 900


def submit(service: Service, peer: Peer, request: SubmitRequest) -> dict[str, Any]:
    """Queue a petition; an attached client reads its output through the handle."""
    queue: Any = OutputQueue(max_bytes=OUTPUT_BUFFER_BYTES) if request.attach else DISCARD
    try:
        job = service.submit(request, queue, peer)
    except PetitionError:
        queue.close()
        raise
    if not request.attach:
        return {"id": job.id, "state": str(job.state)}
    handle = peer.attach(job, queue)
    return {"handle": handle, "id": job.id, "state": str(job.state)}


def send(service: Service, peer: Peer, request: MessageRequest) -> dict[str, Any]:
    """Queue a petition from a message of the original Orcha API."""
    try:
        job = service.submit_message(request.message, peer)
    except PetitionError:
        raise
    except Exception as e:
        log.warning("rejected a malformed message: %s", e)
        raise PetitionError(f"malformed message: {e}", ExitCode.REFUSED) from None
    peer.submitted.add(job)
    return {"id": job.id, "state": str(job.state)}


def cancel(service: Service, peer: Peer, request: CancelRequest) -> dict[str, Any]:
    """Cancel (or, with ``signal``, signal) the petitions ``ids`` name and those the
    filters select, saying, for each, what was done or why not; or the one petition
    ``id`` (refused if it is not queued or running)."""
    if request.ids is None:
        found = resolve(str(request.id), service.scheduler, service.store)
        job = found[-1].job if found else None
        kept = _kept(service, found[-1].record) if found and job is None else None
        if kept is not None:
            done = _cancel_kept(service, kept)
            if done != "cancelled":
                raise PetitionError(done, ExitCode.NOT_SAVED)
            return {"id": kept["id"]}
        if job is None:
            raise PetitionError(
                f"no queued or running petition has ID {quoted(str(request.id))}", ExitCode.REFUSED
            )
        if not (service.cancel(job, "cancelled by a client", by_client=job.session is peer)
                or job.cancel_requested):  # fmt: skip
            raise PetitionError(f"petition {job.id!r} has already ended", ExitCode.REFUSED)
        return {"id": job.id}
    results: dict[str, str] = {}
    jobs: list[Job] = []
    given: dict[Job, str] = {}  # a job named on the command line: the reference used
    # An array's name stands for its members still queued or running: the ended ones
    # are left out quietly (as 'scancel' of a job array, and as 'orcha pause' does).
    order, named = arrays.expand(service, request.ids)
    members = {member for of in named.values() for member in of}
    for petition_id in order:
        found = resolve(petition_id, service.scheduler, service.store)
        job = found[-1].job if found else None
        record = found[-1].record if found and job is None else None
        kept = _kept(service, record)
        if kept is not None:
            results[petition_id] = _cancel_kept(service, kept)
            continue
        if job is None and petition_id in members and petition_id not in request.ids:
            continue
        if job is None:
            results[petition_id] = (
                f"petition {petition_id!r} has already ended ({record['state']})"
                if record else f"no petition has ID {quoted(petition_id)}"
            )  # fmt: skip
            continue
        jobs.append(job)
        given.setdefault(job, petition_id)
    for name, of in named.items():
        if not any(job.id in of for job in jobs) and "cancelled" not in {
            results.get(member) for member in of
        }:
            results[name] = f"array {name!r} has no queued or running petition"
    if request.selects:
        scheduler = service.scheduler  # what the filters select is built, not the rest
        jobs += [scheduler.job(j) for j in bulk.selected(scheduler.views(), request.groups,
                                                          request.states)]  # fmt: skip
    if request.signal is not None:
        results.update(bulk.signal(jobs, request.signal))
        return {"results": results}
    stopping: list[Job] = []
    ended: list[Job] = []  # its process had exited on its own: its outcome stands

    def cancel_one(job: Job) -> None:
        by_client = job.session is peer
        if job.state is State.RUNNING:
            stopping.append(job)
        if not (service.cancel(job, "cancelled with 'orcha cancel'" if not by_client
                               else "cancelled by its client", by_client=by_client)
                or job.cancel_requested):  # fmt: skip
            ended.append(job)
            return
        if request.force and job.state is State.RUNNING:
            service.runner.cancel_running(job, force=True)
        results[given.get(job, job.id)] = "cancelled"

    to_cancel = bulk.cancel_order(jobs)
    # The queued ones with nothing starting meanwhile: one a cancelled one held back (by
    # priority, backfill or a dependency) would start only to be stopped.
    with service.scheduler.holding():
        queued = {job for job in to_cancel if job.state is State.QUEUED}
        for job in to_cancel:
            if job in queued:
                cancel_one(job)
    for job in to_cancel:
        if job not in queued:
            cancel_one(job)
    # The reply comes once what was running has ended (its ID free for a new petition:
    # 'orcha cancel build; orcha run build -- ...'), or after the grace period and a bit.
    deadline = time.monotonic() + service.runner.grace + CANCEL_REPLY_WAIT_SECONDS
    for job in stopping:
        job.wait_released(max(0.0, deadline - time.monotonic()))
    for job in ended:
        state = f" ({job.state})" if job.state in FINISHED else ""
        results[given.get(job, job.id)] = f"petition {job.id!r} has already ended{state}"
    # In the order the IDs were given, then what the filters selected.
    shown = [*request.ids, *order]
    return {"results": {**{i: results[i] for i in shown if i in results}, **results}}


def _kept(service: Service, record: dict[str, Any] | None) -> dict[str, Any] | None:
    """``record`` if it is of a queued petition a stopping service has put away for its
    next start (its Job is gone; only its record is left), else None."""
    if record is None or not service.stopping or record.get("state") != str(State.QUEUED):
        return None
    return record


def _cancel_kept(service: Service, record: dict[str, Any]) -> str:
    """Cancel a queued petition a stopping service keeps (:func:`_kept`) in its record, so
    that it does not run at the next start; announced as any end. ``"cancelled"``, or
    why not (its end could not be saved)."""
    assert service.store is not None  # a record was found
    end: dict[str, Any] = {
        "state": str(transition(State.QUEUED, State.CANCELLED)),
        "ended": service.clock(),
        "message": "cancelled with 'orcha cancel' while the service was stopping",
    }
    try:
        service.store.update(record["seq"], wait=service.store.sync_wait, **end)
    except NotSavedError as e:
        return e.message
    log.info("petition %s (record %s) cancelled while stopping", record["id"], record["seq"])
    service.events.ended_at_restart({**record, **end})
    return "cancelled"


def status(service: Service, peer: Peer, request: StatusRequest) -> dict[str, Any]:
    """Records of the given petitions (all if none given), with why waiting ones wait."""
    if request.page is not None and request.text:
        return listing.page_reply(service, peer, request)  # already encoded, in pages
    ids, named = arrays.expand(service, request.ids)  # an array's name: its members
    store, scheduler = service.store, service.scheduler
    if store is None:
        return {"petitions": [], "missing": list(ids), "arrays": named, "hidden": 0}
    # No flush: reads include the changes not committed yet, and never wait for them.
    targets, unknown = resolve_all(ids, scheduler, store) if ids else ([], [])
    seqs = [t.seq for t in targets if t.seq is not None] if ids else None
    default_view = not (ids or request.states or request.groups) and request.last is None
    nxt = None
    if request.page is not None:
        if request.after is None or peer.listing is None:  # its first page
            peer.listing = scheduler.explain()
        rows, nxt = store.page(request.after, request.page, request.states, STATUS_COLUMNS)
        rows, hidden, hidden_queued = select(rows, request.groups)[0], 0, 0
        reasons = peer.listing
        if nxt is None:
            peer.listing = None  # the last page
    elif default_view and request.ended is not None:
        # The default view: through indexes, never reading what it leaves out.
        rows, hidden, hidden_queued = store.recent(request.ended, STATUS_COLUMNS, request.queued)
    else:
        rows = store.find(states=request.states, columns=STATUS_COLUMNS, seqs=seqs)
        rows, hidden = select(rows, request.groups, request.last, request.ended)
        rows, hidden_queued = first_queued(rows, request.queued)
    if request.page is None:
        reasons = scheduler.explain(request.queued)
    # A parent's children (IDs), for the records of parents: all of them at once (by
    # the rows' numbers if they are few: a view of a long history or queue).
    few = ids or len(rows) <= _FEW
    children = store.children([r["seq"] for r in rows] if few else None)
    now = service.clock()
    out = [listing.record_of(row, children, scheduler, reasons, now, bool(ids)) for row in rows]
    more: dict[str, Any] = {"hidden_queued": hidden_queued} if request.queued is not None else {}
    if request.page is not None:
        more["next"] = nxt
    return {"petitions": out, "missing": unknown, "arrays": named, "hidden": hidden, **more}


def logs(service: Service, peer: Peer, request: LogsRequest) -> Reply:
    """The stored output of a petition (its last ``tail`` lines if given), then how it
    ended."""
    record = service.events.ended_record(request.id)
    if record is None:
        raise PetitionError(
            f"no petition has ID {quoted(request.id)}; see 'orcha status'",
            ExitCode.NO_PETITION,
        )
    frames = list(read_log(record["log_path"]))
    if request.tail is not None:
        frames = last_lines(frames, request.tail)
    if record.get("log_truncated"):
        # The disk could not take this note when the log broke off: it is added here.
        note = f"orcha: the log of {request.id} is incomplete: {record['log_truncated']}\n"
        frames.append((messages.STDERR, note.encode()))
    return Reply(
        {"state": record["state"], "code": record["code"]},
        before=[messages.output_frame(stream, 0, data) for stream, data in frames],
    )


def clean(service: Service, peer: Peer, request: CleanRequest) -> dict[str, Any]:
    """Drop ended records and their logs: those of the IDs given (an array's name: its
    members; for each ID not cleaned, why), or all, narrowed by states, groups and the
    time since they ended. While the records cannot be saved, each ended petition so
    chosen whose end is not saved yet has its log removed first (:func:`_free_unsaved`)."""
    store = service.store
    if store is None:
        return {"removed": 0, "results": {}}
    older = request.older_than
    before = service.clock() - older if older is not None else None
    seqs: list[int] | None = None
    results: dict[str, str] = {}
    given: dict[int, str] = {}  # record number -> the ID given for it
    if request.ids:
        seqs = []
        for petition_id in arrays.expand(service, request.ids)[0]:
            found = resolve(petition_id, service.scheduler, store)
            record = found[-1].record if found else None
            if record is None:
                results[petition_id] = f"no petition has ID {quoted(petition_id)}"
            elif record["state"] in (str(State.QUEUED), str(State.RUNNING)):
                results[petition_id] = (
                    f"petition {petition_id!r} is {record['state'].lower()}; cancel it first"
                )
            else:
                seqs.append(record["seq"])
                given[record["seq"]] = petition_id
    unsaved = _unsaved_ends(store, request, before, given if request.ids else None)
    freed = _free_unsaved(unsaved)
    try:
        removed = store.remove_finished(
            before, seqs=seqs, states=request.states, groups=request.groups
        )
    except NotSavedError as e:
        if not freed:
            raise
        raise NotSavedError(
            e.reason, f"nothing was removed but the output log of {', '.join(freed)}, to free space"
        ) from None
    for row in removed:
        _unlink(row["log_path"])
    gone = {row["seq"] for row in removed}
    problem = store.outage.problem or "the database was busy"
    for seq, (name, record) in unsaved.items():
        if seq not in gone:  # its end is still not saved
            how = "; its output log was removed to free space" if record.get("log_path") else ""
            results[name] = (
                f"petition {name!r} has ended but its end is not saved yet ({problem}){how}: "
                "clean it again once 'orcha health' says the service saves again"
            )
    return {"removed": len(removed), "results": results}


def _unsaved_ends(
    store: Store, request: CleanRequest, before: float | None, given: dict[int, str] | None
) -> dict[int, tuple[str, dict[str, Any]]]:
    """While the records cannot be saved, the ended petitions this clean would remove
    (those ``given``, by record number, else every one) but whose ends are not saved yet
    (Store.remove_finished keeps them until they are): record number -> (the ID to name
    it by, its record with the changes not saved yet)."""
    if store.outage.problem is None:
        return {}  # what is not saved yet will be: remove_finished waits for it
    out: dict[int, tuple[str, dict[str, Any]]] = {}
    for seq in store.saver.pending_seqs():
        if given is not None and seq not in given:
            continue
        r = store.get(seq)  # with its changes not saved yet
        if (
            r is None
            or r["state"] in (str(State.QUEUED), str(State.RUNNING))
            or (request.states and r["state"] not in request.states)
            or (
                request.groups
                and (r["schedule"] or {}).get("group", DEFAULT_GROUP) not in request.groups
            )
            or (before is not None and (r["ended"] or 0) >= before)
        ):
            continue
        out[seq] = (given[seq] if given is not None else r["id"], r)
    return out


def _free_unsaved(unsaved: dict[int, tuple[str, dict[str, Any]]]) -> list[str]:
    """Remove the output logs of the ended petitions ``unsaved`` (whose ends are not
    saved yet: their records cannot be removed before they are); their IDs. On a full
    disk that is often the very log that filled it: removed, the end can be saved and
    the record removed with it, now."""
    freed = [name for name, record in unsaved.values() if record.get("log_path")]
    for _, record in unsaved.values():
        _unlink(record.get("log_path"))
    if freed:
        log.warning("clean: removed the output log of %s to free space", ", ".join(freed))
    return freed


def _unlink(path: str | None) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


HANDLERS: dict[str, Handler] = {
    "submit": submit,
    "send": send,
    "cancel": cancel,
    "status": status,
    "logs": logs,
    "clean": clean,
}
