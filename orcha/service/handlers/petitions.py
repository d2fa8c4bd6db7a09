"""Handlers of the petition operations: submit, send, cancel, status, logs, clean."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from orcha.defaults import OUTPUT_BUFFER_BYTES
from orcha.errors import ExitCode, PetitionError
from orcha.protocol import messages
from orcha.protocol.outputs import DISCARD, OutputQueue
from orcha.protocol.selection import select
from orcha.service.logs import last_lines, read_log
from orcha.service.peer import Reply
from orcha.states import State

if TYPE_CHECKING:
    from orcha.protocol.operations import (
        CancelRequest,
        CleanRequest,
        LogsRequest,
        MessageRequest,
        StatusRequest,
        SubmitRequest,
    )
    from orcha.service.handlers import Handler
    from orcha.service.peer import Peer
    from orcha.service.service import Service

log = logging.getLogger("orcha.service.session")

#: The record fields ``status`` answers with (not env: big, and not shown).
_STATUS_COLUMNS = (
    "seq", "id", "kind", "state", "priority", "submitted", "started", "ended", "code",
    "message", "user", "host", "cwd", "params", "schedule", "attempt", "paused", "outcome",
    "notify_error", "machine", "parent", "leftovers", "log_truncated",
)  # fmt: skip


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
    """Cancel ``ids`` (saying, for each, whether it was cancelled or why not), or the one
    petition ``id`` (refused if it is not queued or running)."""
    if request.ids is None:
        job = service.scheduler.get(str(request.id))
        if job is None:
            raise PetitionError(
                f"no queued or running petition has ID {request.id!r}", ExitCode.REFUSED
            )
        service.cancel(job, "cancelled by a client", by_client=job.session is peer)
        return {"id": job.id}
    results: dict[str, str] = {}
    for petition_id in request.ids:
        job = service.scheduler.get(petition_id)
        if job is None:
            record = service.store.latest(petition_id) if service.store is not None else None
            results[petition_id] = (
                f"petition {petition_id!r} has already ended ({record['state']})"
                if record else f"there is no petition with ID {petition_id!r}"
            )  # fmt: skip
            continue
        by_client = job.session is peer
        service.cancel(job, "cancelled with 'orcha cancel'" if not by_client
                       else "cancelled by its client", by_client=by_client)  # fmt: skip
        if request.force and job.state is State.RUNNING:
            service.runner.cancel_running(job, force=True)
        results[petition_id] = "cancelled"
    return {"results": results}


def status(service: Service, peer: Peer, request: StatusRequest) -> dict[str, Any]:
    """Records of the given petitions (all if none given), with why waiting ones wait."""
    ids, store, scheduler = request.ids, service.store, service.scheduler
    if store is None:
        return {"petitions": [], "missing": list(ids), "hidden": 0}
    # No flush: reads include the changes not committed yet, and never wait for them.
    rows = store.find(ids, request.states, columns=_STATUS_COLUMNS)
    rows, hidden = select(rows, request.groups, request.last, request.ended)
    out = []
    reasons = scheduler.explain()
    # A parent's children (IDs), for the records of parents: all of them at once.
    children = store.children([r["seq"] for r in rows] if ids else None)
    for row in rows:
        record = {name: row[name] for name in _STATUS_COLUMNS}
        if row["seq"] in children:
            record["children"] = children[row["seq"]]
        record["paused"] = bool(record["paused"])
        job = scheduler.get(row["id"])
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
                record["effective_priority"] = round(scheduler.effective_priority(job), 3) + 0.0
            elif job.stopped:
                record["waiting"] = f"stopped (SIGSTOP); 'orcha resume {job.id}' continues it"
        out.append(record)
    found = {r["id"] for r in rows}
    known = {r["id"] for r in store.find(ids, (), columns=("id",))} if request.states else found
    return {"petitions": out, "missing": [i for i in ids if i not in known], "hidden": hidden}


def logs(service: Service, peer: Peer, request: LogsRequest) -> Reply:
    """The stored output of a petition (its last ``tail`` lines if given), then how it
    ended."""
    record = service.events.ended_record(request.id)
    if record is None:
        raise PetitionError(
            f"no petition has ID {request.id!r}; see 'orcha status' for all",
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
    """Drop ended records (ended more than ``older_than`` seconds ago) and their logs."""
    if service.store is None:
        return {"removed": 0}
    older = request.older_than
    removed = service.store.remove_finished(service.clock() - older if older is not None else None)
    for row in removed:
        if row["log_path"]:
            try:
                os.unlink(row["log_path"])
            except OSError:
                pass
    return {"removed": len(removed)}


HANDLERS: dict[str, Handler] = {
    "submit": submit,
    "send": send,
    "cancel": cancel,
    "status": status,
    "logs": logs,
    "clean": clean,
}
