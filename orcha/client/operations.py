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

from collections.abc import Iterator
from typing import Any

from orcha.client.session import Session
from orcha.errors import NoPetitionError
from orcha.protocol.messages import SubmitRequest


def no_petition(ids: list[str], hint: str = "") -> NoPetitionError:
    """``no petition has ID 'a', 'b'`` (plus ``hint``): the error for unknown IDs."""
    return NoPetitionError(f"no petition has ID {', '.join(map(repr, ids))}{hint}")


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


def cancel(session: Session, ids: list[str], force: bool = False) -> dict[str, str]:
    """Cancel petitions: for each ID, ``"cancelled"`` or why not."""
    results: dict[str, str] = session.call("cancel", {"ids": ids, "force": force})["results"]
    return results


def status(session: Session, ids: list[str], states: list[str]) -> dict[str, Any]:
    """``{"petitions": [record, ...], "missing": [ID, ...]}`` (the ``status --json``
    document); no IDs means all, ``states`` (upper case) narrows."""
    reply = session.call("status", {"ids": ids, "states": states})
    return {"petitions": reply["petitions"], "missing": reply["missing"]}


def clean(session: Session, older_than: float | None) -> int:
    """Forget ended petitions (those that ended over ``older_than`` seconds ago):
    how many were removed."""
    removed: int = session.call("clean", {"older_than": older_than})["removed"]
    return removed


def wait(session: Session, ids: list[str]) -> Iterator[dict[str, Any]]:
    """The end summary ``{"id", "state", "code", "message"}`` of each petition, those
    already ended first, the others as they end. NoPetitionError for unknown IDs."""
    reply = session.call("wait", {"ids": ids})
    if reply["missing"]:
        raise no_petition(reply["missing"])
    wanted = set(ids)
    seen: set[str] = set()
    for summary in reply["ended"]:
        seen.add(summary["id"])
        yield summary
    if len(seen) >= len(wanted):
        return
    for item in items(session, reply["queue"]):
        if isinstance(item, dict) and item.get("event") == "ended":
            seen.add(item["id"])
            yield item
            if len(seen) >= len(wanted):
                return


def logs(session: Session, petition_id: str, tail: int | None) -> Iterator[tuple[str, bytes]]:
    """The stored output of a petition as ``(stream, data)`` chunks (its last ``tail``
    lines if given). PetitionError (no petition) if there is none."""
    reply = session.call("logs", {"id": petition_id, "tail": tail})
    yield from ((stream, data) for stream, data in reply["output"])


def follow(session: Session, ids: list[str]) -> tuple[dict[int, str], list[str], str]:
    """Start following petitions: (handle -> ID of those followed, unknown IDs, the
    served queue :func:`followed_items` reads)."""
    reply = session.call("follow", {"ids": ids})
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
    With IDs, it ends once each of them has finished. NoPetitionError for unknown IDs.
    A client that read too slowly gets ``{"event": "dropped", "petition": None,
    "data": {"count"}}`` where output and progress events were dropped."""
    reply = session.call("watch", {"ids": ids})
    if reply["missing"]:
        raise no_petition(reply["missing"])
    wanted, finished = set(ids), set[str]()
    if wanted and len(finished) >= len(wanted):
        return
    for item in items(session, reply["queue"]):
        if not isinstance(item, dict) or "petition" not in item:
            continue
        if item["event"] == "finished":
            finished.add(item["petition"])
        yield item
        if wanted and len(finished) >= len(wanted):
            return


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


def stdin(session: Session, handle: int, data: bytes, eof: bool = False) -> None:
    """Send ``data`` (and, with ``eof``, the end) to the stdin of the petition this
    session submitted attached, with ``stdin``, under ``handle``; without waiting for
    the answer (dropped when it arrives). Never more than STDIN_WINDOW_BYTES beyond
    what the petition has read: its ``stdin`` events say how much that is. (The lean
    foreground path, ``orcha.client.attach``, sends the same request.)"""
    session.send(None, "call", "stdin", {"handle": handle, "data": data, "eof": eof}, skip=True)
