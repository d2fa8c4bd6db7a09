"""Every orcha operation, client side: one function each.

This is the one module that knows what each request carries and what its reply and the
items after it look like (``orcha.protocol.operations`` declares the operations and names
these functions; the service's handlers are in ``orcha.service.handlers``).
:class:`orcha.Client` and the CLI call these functions and never build a request
themselves, so a change of wire touches only here (and the lean foreground path in
``orcha.client.attach``, kept apart for start-up speed).

Each function takes an open :class:`~orcha.client.session.Session`. Request-reply
operations return the reply's fields as plain data; streaming ones are generators that
read the served queue the reply names (``get_batch``) until the operation is over.
Refusals raise :class:`PetitionError` with the exit code the service named; a broken
connection raises :class:`LostServiceError`.
"""

from __future__ import annotations

from orcha.client.session import Session
from orcha.errors import LostServiceError, NoPetitionError, PetitionError
from orcha.protocol.messages import SubmitRequest
from orcha.text import quoted

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from collections.abc import Generator, Iterator
    from typing import Any

    from orcha.protocol.arrays import ArrayRequest


def no_petition(ids: list[str], hint: str = "") -> NoPetitionError:
    """``no petition has ID 'a', 'b'`` (plus ``hint``): the error for unknown IDs."""
    return NoPetitionError(f"no petition has ID {', '.join(map(quoted, ids))}{hint}")


def items(session: Session, queue: str) -> Iterator[Any]:
    """Every item of the served queue ``queue``, batch by batch (endless)."""
    while True:
        yield from session.get_batch(queue)


# -- petitions ---------------------------------------------------------------------------
def submit(session: Session, request: SubmitRequest) -> dict[str, Any]:
    """Queue a petition: ``{"id", "state"}`` (and ``"handle"`` and ``"queue"`` if
    attached: its output and end are then read with :func:`attached_items`)."""
    reply: dict[str, Any] = session.call("submit", request.to_wire())
    return reply


def send(session: Session, message: Any) -> dict[str, Any]:
    """Queue a petition from an original-API message: ``{"id", "state"}``."""
    reply: dict[str, Any] = session.call("send", message)
    return reply


def attached_items(session: Session, queue: str) -> Iterator[tuple[str, bytes] | dict[str, Any]]:
    """What an attached petition sends after its submit reply (``queue`` is the reply's):
    output chunks ``(stream, data)`` and the events ``queued`` (why it waits, while it
    waits), ``started``, ``progress``, ``stdin`` (if it was submitted with ``stdin``:
    how much of it the petition has read), then ``end`` or ``detached`` (the last
    item)."""
    for item in items(session, queue):
        yield item
        if isinstance(item, dict) and item.get("event") in ("end", "detached"):
            return


def request_cancel(session: Session, petition_id: str) -> None:
    """Ask to cancel ``petition_id`` without waiting for the answer (dropped when it
    arrives). When ``session`` is the one that submitted it, the petition ends as
    cancelled by its own client (exit code 130)."""
    session.send(None, "call", "cancel", {"id": petition_id}, skip=True)


def cancel(
    session: Session,
    ids: list[str],
    force: bool = False,
    groups: list[str] | None = None,
    states: list[str] | None = None,
    everything: bool = False,
    signal: int | None = None,
) -> dict[str, str]:
    """Cancel petitions (``ids``, and the queued or running ones of ``groups`` in
    ``states``, or ``everything``); with ``signal``, send it to the running trees
    instead: for each ID, ``"cancelled"`` (``"signalled"``) or why not."""
    request: dict[str, Any] = {"ids": ids, "force": force}
    if groups or states or everything:
        request.update(groups=groups or [], states=states or [], all=everything)
    if signal is not None:
        request["signal"] = signal
    results: dict[str, str] = session.call("cancel", request)["results"]
    return results


def status(
    session: Session,
    ids: list[str],
    states: list[str],
    groups: list[str] | None = None,
    last: int | None = None,
    ended: int | None = None,
    queued: int | None = None,
) -> dict[str, Any]:
    """``{"petitions": [record, ...], "missing": [ID, ...], "hidden": N}`` (the ``status
    --json`` document; ``"arrays": {name: [member IDs]}`` too if an array was named); no
    IDs means all, ``states`` (upper case) and ``groups`` narrow, ``last`` keeps the N
    last submitted, ``ended`` the N last ended (``hidden`` counts the ended ones left
    out; see :func:`orcha.protocol.selection.select`); ``queued`` keeps the N first
    submitted queued ones (``"hidden_queued"``: how many it left out)."""
    from orcha.protocol.selection import first_queued, select

    request: dict[str, Any] = {"ids": ids, "states": states}
    if groups:
        request["groups"] = list(groups)
    if last is not None:
        request["last"] = last
    if ended is not None:
        request["ended"] = ended
    if queued is not None:
        request["queued"] = queued
    reply = session.call("status", request)
    # Again here: a service older than these fields sent every record.
    rows, hidden = select(reply["petitions"], groups or (), last, ended)
    rows, more = first_queued(rows, queued)
    out = {"petitions": rows, "missing": reply["missing"],
           "hidden": int(reply.get("hidden") or 0) + hidden}  # fmt: skip
    if queued is not None:
        out["hidden_queued"] = int(reply.get("hidden_queued") or 0) + more
    if reply.get("arrays"):  # the arrays named, with their members (an array's name)
        out["arrays"] = reply["arrays"]
    return out


def status_pages(
    session: Session, states: list[str], groups: list[str] | None = None, page: int = 1000
) -> Iterator[list[dict[str, Any]]]:
    """Every record (in ``states`` and ``groups`` if given), oldest first, ``page`` at a
    time: a long listing crosses the wire, and is printed, a page at a time."""
    request: dict[str, Any] = {"ids": [], "states": states, "groups": list(groups or ()),
                               "page": page}  # fmt: skip
    while True:
        reply = session.call("status", request)
        yield reply["petitions"]
        if reply.get("next") is None:
            return
        request["after"] = reply["next"]


def status_texts(
    session: Session, states: list[str], groups: list[str] | None = None, page: int = 1000
) -> Generator[str, None, None]:
    """Every record (in ``states`` and ``groups`` if given), oldest first, as JSON text a
    page at a time: each record's ``json.dumps``, joined by ``", "`` (a page of none is
    ``""``). The service encodes them (a service that does not, its records are encoded
    here), so a long listing is never decoded and encoded again. The next page is asked
    for before a page is handed on: the service builds it while this one is written.
    Left early, the answer still on its way is read, so the session can be used on."""
    request: dict[str, Any] = {"ids": [], "states": states, "groups": list(groups or ()),
                               "page": page, "text": True}  # fmt: skip
    session.send(None, "call", "status", request)
    asked = False  # whether an answer nobody reads is on its way
    try:
        while True:
            asked = False  # the answer on its way is read here (a refusal too)
            reply = session.recv()
            if reply.get("next") is not None:
                request["after"] = reply["next"]
                session.send(None, "call", "status", request)
                asked = True
            text = reply.get("text")
            if text is None:  # a service from before pages as text: its records
                import json

                text = ", ".join(json.dumps(r) for r in reply["petitions"])
            yield text
            if not asked:
                return
    finally:
        if asked:  # left early (or failed) with a page asked for: its answer is dropped
            _drop_answer(session)


def _drop_answer(session: Session) -> None:
    """Read (and drop) the answer to a request sent on ``session``; nothing if the
    connection broke meanwhile (the next call says so)."""
    try:
        session.recv()
    except (PetitionError, LostServiceError, OSError):
        pass


def clean(
    session: Session,
    older_than: float | None,
    ids: list[str] | None = None,
    states: list[str] | None = None,
    groups: list[str] | None = None,
) -> dict[str, Any]:
    """Forget ended petitions (``ids``, or all; only in ``states``, of ``groups``, that
    ended over ``older_than`` seconds ago): ``{"removed": how many, "results": {ID: why
    it was not cleaned}}``."""
    reply = session.call("clean", {"older_than": older_than, "ids": ids or [],
                                   "states": states or [], "groups": groups or []})  # fmt: skip
    return {"removed": reply["removed"], "results": dict(reply.get("results") or {})}


def wait(
    session: Session,
    ids: list[str],
    deadline: float | None = None,
    asked: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """The end summary ``{"id", "state", "code", "message"}`` of each petition, those
    already ended first (with ``ref``, the reference it was named by, where that is not
    its ID: ``a~1``), the others as they end. An array's name stands for its members.
    NoPetitionError for unknown IDs. ``deadline`` (``time.monotonic()``): TimeoutError
    once it passes (the session is then unusable: close it). ``asked``, if given, is
    filled with ``"ids"`` (every petition waited for) and ``"arrays"`` (the arrays
    named, with their members' IDs)."""
    reply = session.call("wait", {"ids": ids})
    if reply["missing"]:
        raise no_petition(reply["missing"])
    # Each pending petition once, by its ID (several references may name one).
    pending = set(reply["pending"])
    if asked is not None:
        asked["ids"] = [s.get("ref", s["id"]) for s in reply["ended"]] + list(reply["pending"])
        asked["arrays"] = dict(reply.get("arrays") or {})
    yield from reply["ended"]
    if not pending:
        return
    for item in _items_until(session, reply["queue"], deadline):
        if isinstance(item, dict) and item.get("event") == "ended" and item["id"] in pending:
            pending.discard(item["id"])
            yield item
            if not pending:
                return


def _items_until(session: Session, queue: str, deadline: float | None) -> Iterator[Any]:
    """The items of the served queue ``queue`` until ``deadline`` (TimeoutError then)."""
    if deadline is None:
        yield from items(session, queue)
        return
    import select
    import time

    from orcha.units import capped_wait

    while True:
        session.send(queue, "get_batch")
        while True:  # in waits select takes (a timeout of years overflows it)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the deadline passed")
            if select.select([session.fileno()], [], [], capped_wait(remaining))[0]:
                break
        yield from session.recv()


def logs(
    session: Session, petition_id: str, tail: int | None
) -> Generator[tuple[str, bytes], None, dict[str, Any]]:
    """The stored output of a petition as ``(stream, data)`` chunks (its last ``tail``
    lines if given), then (returned) its ``{"state", "code"}`` as it is now.
    PetitionError (no petition) if there is none."""
    reply = session.call("logs", {"id": petition_id, "tail": tail})
    yield from ((stream, data) for stream, data in reply["output"])
    return {"state": reply.get("state"), "code": reply.get("code")}


def follow(
    session: Session, ids: list[str], lines: int | None = None
) -> tuple[dict[int, str], list[str], str]:
    """Start following petitions (from the last ``lines`` lines of each, if given):
    (handle -> ID of those followed, unknown IDs, the served queue
    :func:`followed_items` reads)."""
    request: dict[str, Any] = {"ids": ids}
    if lines is not None:
        request["lines"] = lines
    reply = session.call("follow", request)
    names = {h: i for i, h in reply["handles"].items()}
    return names, list(reply["missing"]), reply["queue"]


def followed_items(
    session: Session, queue: str
) -> Iterator[tuple[str, int, bytes] | dict[str, Any]]:
    """After :func:`follow`: output chunks ``(stream, handle, data)`` (the log from the
    start, then live) and, for each petition, an ``{"event": "end", "handle", "id",
    "state", "code", "message"}``. Endless: the caller stops after the last end. A
    client that read too slowly also gets ``{"event": "skipped", "handle", "message"}``
    where its output continues from the petition's log rather than live."""
    for item in items(session, queue):
        if isinstance(item, tuple) or item.get("event") in ("end", "skipped"):
            yield item


def watch(session: Session, ids: list[str]) -> Iterator[dict[str, Any]]:
    """Event envelopes ``{"event", "petition", "kind", "timestamp", "data"}``: the
    current state of each petition first, then submitted, started, output, finished...
    With IDs, it ends once each petition they name (an array: its members) has
    finished. NoPetitionError for unknown IDs.
    A client that read too slowly gets ``{"event": "dropped", "petition": None,
    "data": {"count"}}`` where output and progress events were dropped."""
    reply = session.call("watch", {"ids": ids})
    if reply["missing"]:
        raise no_petition(reply["missing"])
    # The ends each petition owes before the watch is over: the service says which
    # petitions the IDs named (an array's name: each of its members; two names of one
    # ID: two ends). An older service does not: as many ends as IDs given, of any.
    pending: dict[str, int] = {}
    for petition_id in reply.get("ends", ()):
        pending[petition_id] = pending.get(petition_id, 0) + 1
    left = len(ids) if "ends" not in reply else sum(pending.values())
    for item in items(session, reply["queue"]):
        if not isinstance(item, dict) or "petition" not in item:
            continue
        yield item
        if ids and item["event"] == "finished":
            if "ends" not in reply:
                left -= item["petition"] not in pending
                pending[item["petition"]] = 1
            elif pending.get(item["petition"], 0) > 0:
                pending[item["petition"]] -= 1
                left -= 1
            if left <= 0:
                return


def watch_usage(
    session: Session, interval: float, ids: list[str] | None = None
) -> tuple[list[dict[str, Any]], Iterator[dict[str, Any]]]:
    """Watch (``ids``, or every petition) with a ``usage`` event every ``interval``
    seconds and no ``output`` events, as ``orcha top`` does: (the last ended records,
    newest first; the event envelopes, endless). PetitionError (refused) from a service
    that sends no ``usage`` events."""
    from orcha.errors import ExitCode, PetitionError

    reply = session.call("watch", {"ids": ids or [], "usage": interval, "output": False})
    if reply["missing"]:
        raise no_petition(reply["missing"])
    if "recent" not in reply:
        raise PetitionError(
            "the service is too old to send usage events (for 'orcha top'); "
            "restart it with this version of orcha",
            ExitCode.REFUSED,
        )

    def events() -> Iterator[dict[str, Any]]:
        for item in items(session, reply["queue"]):
            if isinstance(item, dict) and "event" in item:
                yield item

    return list(reply["recent"]), events()


# -- admission ---------------------------------------------------------------------------
def group(
    session: Session, name: str | None = None, max_running: int | None = None
) -> list[dict[str, Any]]:
    """Every group ``{"name", "max_running", "running", "queued", "paused"}``; with a
    ``name``, after setting its limit (None removes it)."""
    request = {} if name is None else {"name": name, "max_running": max_running}
    listing: list[dict[str, Any]] = session.call("group", request)["groups"]
    return listing


def pause(
    session: Session, ids: list[str], groups: list[str], everything: bool, running: bool,
) -> dict[str, str]:  # fmt: skip
    """Pause petitions, groups or everything (``running``: stop their processes too):
    for each ID, ``"paused"`` or why not."""
    results: dict[str, str] = session.call("pause", {
        "ids": ids, "groups": groups, "all": everything, "running": running,
    })["results"]  # fmt: skip
    return results


def resume(session: Session, ids: list[str], groups: list[str], everything: bool) -> dict[str, str]:
    """Resume petitions, groups or everything: for each ID, ``"resumed"`` or why not."""
    results: dict[str, str] = session.call(
        "resume", {"ids": ids, "groups": groups, "all": everything}
    )["results"]
    return results


# -- the service ---------------------------------------------------------------------------
def info(session: Session) -> dict[str, Any]:
    """The service's own account of itself (petitions, sessions, served objects)."""
    reply: dict[str, Any] = session.call("info")
    return reply


def workers(session: Session) -> dict[str, Any]:
    """``{"executor": "local" | "dask", "scheduler", "dashboard", "workers": [...]}``: where
    petitions run (``orcha workers --json``)."""
    reply: dict[str, Any] = session.call("workers")
    return reply


def health(session: Session) -> dict[str, Any]:
    """``{"healthy", "queued", "running", "cpus_in_use", "capacity", "paused",
    "plugins": {name: {"healthy", "details"}}}``."""
    reply: dict[str, Any] = session.call("health")
    return reply


def state(session: Session, action: str, plugin: str, **fields: Any) -> dict[str, Any]:
    """A plugin's stored state: ``action`` ls (``{"state"}``), get (``{"value"}``), set,
    or rm (``{"removed"}``); ``fields`` are ``key`` and ``value``."""
    reply: dict[str, Any] = session.call("state", {"action": action, "plugin": plugin,
                                                   **fields})  # fmt: skip
    return reply


def kinds(session: Session, action: str = "ls", **fields: Any) -> dict[str, Any]:
    """Runtime kinds: ``action`` ls (``{"kinds"}``), add (``name``, ``from``, ``set``;
    ``{"kind"}``) or rm (``name``; ``{"removed"}``)."""
    reply: dict[str, Any] = session.call("kinds", {"action": action, **fields})
    return reply


def reload(session: Session) -> dict[str, Any]:
    """Ask the service to read its configuration file again: ``{"path", "changed":
    [lines], "restart": [settings that need one], "warnings": [lines]}``; PetitionError
    (REFUSED) with the reason if the file is invalid (the service keeps its own)."""
    reply: dict[str, Any] = session.call("reload")
    return reply


def shutdown(session: Session, force: bool = False) -> dict[str, Any]:
    """Ask the service to stop, as SIGTERM does (``force``: as a second one, every
    running tree killed at once): ``{"pid", "running", "queued", "stopping"}`` (the
    running ones are cancelled, the queued ones kept for its next start; ``stopping``:
    it was stopping already)."""
    reply: dict[str, Any] = session.call("shutdown", {"force": force} if force else None)
    return reply


# -- changes after submission ----------------------------------------------------------------
def release(session: Session, ids: list[str]) -> dict[str, str]:
    """Let held or delayed petitions start: for each ID, ``"released"`` or why not."""
    results: dict[str, str] = session.call("release", {"ids": ids})["results"]
    return results


def edit(
    session: Session, petition_id: str, priority: int | None, changes: dict[str, Any]
) -> dict[str, Any]:
    """Change a queued petition's priority and requests (``changes``: schedule fields):
    ``{"id", "priority", "schedule"}`` as they are now, and for an array's name
    ``"edited"``, its queued members. PetitionError (one line) if it is not queued."""
    reply: dict[str, Any] = session.call(
        "edit", {"id": petition_id, "priority": priority, "changes": changes}
    )
    return {k: reply[k] for k in ("id", "priority", "schedule", "edited") if k in reply}


def restart(
    session: Session,
    ids: list[str],
    failed: bool = False,
    group: str | None = None,
    priority: int | None = None,
    changes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ended petitions again (the given IDs, or the failed ones, of ``group`` if
    given), detached, with ``priority`` and ``changes`` overriding their requests:
    ``{"results": {ID: "restarted" or why not}, "restarted": [{"id", "seq",
    "restart_of"}, ...]}``. With one ID, its refusal raises PetitionError."""
    reply = session.call("restart", {
        "ids": ids, "failed": failed, "group": group, "priority": priority,
        "changes": changes or {},
    })  # fmt: skip
    return {"results": reply["results"], "restarted": reply["restarted"]}


# -- arrays --------------------------------------------------------------------------------
def submit_array(session: Session, request: ArrayRequest) -> dict[str, Any]:
    """Queue every member of an array in one request (all or none): ``{"name", "ids"}``.
    An attached array's members end with this session; read their output with
    :func:`follow`."""
    reply: dict[str, Any] = session.call("submit_array", request.to_wire())
    return {"name": reply["name"], "ids": list(reply["ids"])}


def stdin(session: Session, handle: int, data: bytes, eof: bool = False) -> None:
    """Send ``data`` (and, with ``eof``, the end) to the stdin of the petition this
    session submitted attached, with ``stdin``, under ``handle``; without waiting for
    the answer (dropped when it arrives). Never more than STDIN_WINDOW_BYTES beyond
    what the petition has read: its ``stdin`` events say how much that is. (The lean
    foreground path, ``orcha.client.attach``, sends the same request.)"""
    session.send(None, "call", "stdin", {"handle": handle, "data": data, "eof": eof}, skip=True)
