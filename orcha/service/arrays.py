"""Arrays in the service: taking one (all members, one transaction), their ``%N``
limit (again after a restart), and what an array's name stands for in other requests.

An array's members are ordinary petitions ``NAME_INDEX`` whose records say which array
they belong to (``array``, ``array_index``, ``array_limit``); the members of one
submission share their submission time, which tells them from those of an older array
of the same name. See :mod:`orcha.protocol.arrays` for what a client sends.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from orcha.protocol.arrays import member_id, member_params, params_vary
from orcha.protocol.messages import SubmitRequest
from orcha.service.environments import member_environment

if TYPE_CHECKING:
    from orcha.protocol.arrays import ArrayRequest
    from orcha.service.job import Job
    from orcha.service.peer import Peer
    from orcha.service.queued import Waiting
    from orcha.service.service import Service

log = logging.getLogger("orcha.service")

#: The prefix of the names the service gives arrays submitted without one.
_AUTO_NAME = "array"
#: Held by a nameless array from choosing its name until its members are recorded: two
#: submitted at once would otherwise choose the same free name, and one be refused.
_NAMING = threading.Lock()


def _limit_key(name: str, submitted: float) -> str:
    """What tells one submission of array ``name`` from another (for its ``%N``)."""
    return f"{name}@{submitted!r}"


def submit_array(
    service: Service, request: ArrayRequest, peer: Peer | None
) -> tuple[str, list[Waiting]]:
    """Queue every member of ``request`` (recorded in one transaction, all or none):
    (the array's name, its members). ``peer``: the client they end with (attached), or
    None. A nameless array gets the first free name ``arrayN``. Raises PetitionError
    if refused."""
    if request.submit.id:
        return _submit(service, request, peer, request.submit.id)
    with _NAMING:
        return _submit(service, request, peer, _free_name(service))


def _submit(
    service: Service, request: ArrayRequest, peer: Peer | None, name: str
) -> tuple[str, list[Waiting]]:
    """:func:`submit_array` of ``request`` as array ``name``."""
    template = request.submit
    count = len(request.members)
    size = str(count)
    # Members with the template's very parameters share them (read-only), so that the
    # service checks them once for all (submit_many), not once per member.
    vary = params_vary(template.params, request.members)
    requests = [
        SubmitRequest(
            template.kind,
            member_id(name, member[0]),
            member_params(template.params, member) if vary else template.params,
            template.priority,
            template.cwd,
            member_environment(template.env, name, member[0], size),  # one shared env
            attach=template.attach,
            user=template.user,
            host=template.host,
            schedule=template.schedule,
        )
        for member in request.members
    ]
    fields: list[dict[str, Any]] = [
        {"array": name, "array_index": index, "array_limit": request.limit}
        for index, _ in request.members
    ]
    limit = request.limit

    def limited(job: Waiting) -> None:
        if limit is not None:
            job.array = (_limit_key(name, job.created), name, limit)

    jobs = service.submit_many(requests, peer, fields, prepare=limited, name=name)
    log.info("array %s: %d member(s) queued%s", name, count,
             f", at most {limit} at once" if limit else "")  # fmt: skip
    return name, jobs


def _free_name(service: Service) -> str:
    taken = service.store.array_names() if service.store is not None else set()
    n = 1
    # Not one a queued or running petition has either: the array would be refused.
    while f"{_AUTO_NAME}{n}" in taken or service.scheduler.peek(f"{_AUTO_NAME}{n}") is not None:
        n += 1
    return f"{_AUTO_NAME}{n}"


def restored(job: Job, row: dict[str, Any]) -> None:
    """A member queued again after a restart (``row``, its record) keeps its array's
    ``%N`` limit. Called before it is queued."""
    job.array = limit_of(row.get("array"), row["submitted"], row.get("array_limit"))


def limit_of(name: str | None, submitted: float, limit: int | None) -> tuple[str, str, int] | None:
    """The ``%N`` limit (:attr:`Job.array <orcha.service.job.Job.array>`) of a member of
    array ``name`` submitted at ``submitted``; None without one."""
    if not name or not limit:
        return None
    return (_limit_key(name, submitted), name, int(limit))


def expand(service: Service, ids: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """``ids`` with each array's name replaced by references to its members (by index),
    and the names so replaced with their members. A member is named by its ID, unless a
    newer record has that ID: then by its record number, so that a petition submitted
    later under a member's name is not taken for it (see Store.array_refs; a member run
    again by ``orcha restart`` is its newest run). A name is an array's when the newest
    array of that name is newer than the newest petition with that very ID (the newest
    wins, as for IDs shared by several records). Order is kept; an ID given twice counts
    once.

    A separate step so that other resolutions of what users type (``NAME~1``, record
    numbers) can be chained before or after it."""
    store = service.store
    if store is None or not ids:
        return list(ids), {}
    out: list[str] = []
    arrays: dict[str, list[str]] = {}
    for given in ids:
        found = store.array_refs(given)
        if found is not None:
            newest, members = found
            own = store.named(given, 0)
            if own is None or own["seq"] < newest:
                arrays[given] = members
                out.extend(members)
                continue
        out.append(given)
    return list(dict.fromkeys(out)), arrays
