"""Every orcha operation, client side: one function each.

This is the one module that knows what each request carries and what its reply and the
frames after it look like (``orcha.protocol.messages`` defines the frames; the service's
handlers are in ``orcha.service.session``). :class:`orcha.Client` and the CLI call these
functions and never build a request themselves, so a change of wire touches only here
(and the lean foreground path in ``orcha.client.attach``, kept apart for start-up speed).

Each function takes an open :class:`~orcha.client.session.Session`. Request-reply
operations return the reply's fields as plain data; streaming ones are generators that
read the session until the operation is over. Refusals raise :class:`PetitionError`
with the exit code the service named; a broken connection raises
:class:`LostServiceError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from orcha.client.session import Session
from orcha.errors import WIRE_ERRORS, ExitCode, NoPetitionError, PetitionError
from orcha.protocol import messages
from orcha.protocol.messages import STDERR, STDOUT, SubmitRequest

#: The stream names of output chunks, by the tag byte of their frame.
STREAMS = {STDOUT: "stdout", STDERR: "stderr"}

#: An item of a stream of frames: an output chunk (stream, handle, data) or a JSON object.
Item = tuple[str, int, bytes] | dict[str, Any]


def read(session: Session) -> Item:
    """The next frame of ``session``: an output chunk as ``(stream, handle, data)``, or
    a JSON reply or event as a dict. An error reply raises its PetitionError."""
    frame = session.recv()
    tag = frame[0]
    if tag in STREAMS:
        _, handle, data = messages.split_output(frame)
        return STREAMS[tag], handle, bytes(data)
    obj = messages.decode(frame)
    if "re" in obj and not obj.get("ok"):
        raise refusal(obj)
    return obj


def refusal(answer: dict[str, Any]) -> PetitionError:
    """The PetitionError an error reply stands for."""
    code = WIRE_ERRORS.get(answer.get("error", ""), ExitCode.REFUSED)
    return PetitionError(str(answer.get("message")), code)


def no_petition(ids: list[str], hint: str = "") -> NoPetitionError:
    """``no petition has ID 'a', 'b'`` (plus ``hint``): the error for unknown IDs."""
    return NoPetitionError(f"no petition has ID {', '.join(map(repr, ids))}{hint}")


def _fields(reply: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in reply.items() if k not in ("re", "ok")}


# -- petitions ---------------------------------------------------------------------------
def submit(session: Session, request: SubmitRequest) -> dict[str, Any]:
    """Queue a petition: ``{"id", "state"}`` (and ``"handle"`` if attached: its output
    and end then arrive on this session, see :func:`attached_items`)."""
    return _fields(session.submit(request))


def attached_items(session: Session) -> Iterator[tuple[str, bytes] | dict[str, Any]]:
    """What an attached petition sends after its submit reply: output chunks
    ``(stream, data)`` and the events ``started``, ``progress``, then ``end`` or
    ``detached`` (the last item). Replies (to :func:`request_cancel`) are skipped."""
    while True:
        frame = session.recv()
        tag = frame[0]
        if tag in STREAMS:
            yield STREAMS[tag], bytes(messages.split_output(frame)[2])
            continue
        obj = messages.decode(frame)
        event = obj.get("event")
        if event is None:
            continue  # a reply to our cancel: the end event says how it went
        yield obj
        if event in ("end", "detached"):
            return


def request_cancel(session: Session, petition_id: str) -> None:
    """Ask to cancel ``petition_id`` without waiting for the reply (the reply arrives
    among its output; :func:`attached_items` skips it). When ``session`` is the one that
    submitted it, the petition ends as cancelled by its own client (exit code 130)."""
    session.send(messages.encode({"op": "cancel", "id": petition_id}))


def cancel(session: Session, ids: list[str], force: bool = False) -> dict[str, str]:
    """Cancel petitions: for each ID, ``"cancelled"`` or why not."""
    reply = session.request({"op": "cancel", "ids": ids, "force": force})
    results: dict[str, str] = reply["results"]
    return results


def status(session: Session, ids: list[str], states: list[str]) -> dict[str, Any]:
    """``{"petitions": [record, ...], "missing": [ID, ...]}`` (the ``status --json``
    document); no IDs means all, ``states`` (upper case) narrows."""
    reply = session.request({"op": "status", "ids": ids, "states": states})
    return {"petitions": reply["petitions"], "missing": reply["missing"]}


def clean(session: Session, older_than: float | None) -> int:
    """Forget ended petitions (those that ended over ``older_than`` seconds ago):
    how many were removed."""
    removed: int = session.request({"op": "clean", "older_than": older_than})["removed"]
    return removed


def wait(session: Session, ids: list[str]) -> Iterator[dict[str, Any]]:
    """The end summary ``{"id", "state", "code", "message"}`` of each petition, those
    already ended first, the others as they end. NoPetitionError for unknown IDs."""
    reply = session.request({"op": "wait", "ids": ids})
    if reply["missing"]:
        raise no_petition(reply["missing"])
    wanted = set(ids)
    seen: set[str] = set()
    for summary in reply["ended"]:
        seen.add(summary["id"])
        yield summary
    while len(seen) < len(wanted):
        item = read(session)
        if isinstance(item, dict) and item.get("event") == "ended":
            seen.add(item["id"])
            yield item


def logs(session: Session, petition_id: str, tail: int | None) -> Iterator[tuple[str, bytes]]:
    """The stored output of a petition as ``(stream, data)`` chunks (its last ``tail``
    lines if given). PetitionError (no petition) if there is none."""
    session.send(messages.encode({"op": "logs", "id": petition_id, "tail": tail}))
    while True:
        item = read(session)
        if isinstance(item, tuple):
            yield item[0], item[2]
        elif item.get("re") == "logs":
            return


def follow(session: Session, ids: list[str]) -> tuple[dict[int, str], list[str]]:
    """Start following petitions: (handle -> ID of those followed, unknown IDs). Then
    :func:`followed_items` reads their output and ends."""
    reply = session.request({"op": "follow", "ids": ids})
    return {h: i for i, h in reply["handles"].items()}, list(reply["missing"])


def followed_items(session: Session) -> Iterator[tuple[str, int, bytes] | dict[str, Any]]:
    """After :func:`follow`: output chunks ``(stream, handle, data)`` (the log from the
    start, then live) and, for each petition, an ``{"event": "end", "handle", "id",
    "state", "code", "message"}``. Endless: the caller stops after the last end."""
    while True:
        item = read(session)
        if isinstance(item, tuple) or item.get("event") == "end":
            yield item


def watch(session: Session, ids: list[str]) -> Iterator[dict[str, Any]]:
    """Event envelopes ``{"event", "petition", "kind", "timestamp", "data"}``: the
    current state of each petition first, then submitted, started, output, finished...
    With IDs, it ends once each of them has finished. NoPetitionError for unknown IDs."""
    session.send(messages.encode({"op": "watch", "ids": ids}))
    wanted, finished = set(ids), set[str]()
    while not wanted or len(finished) < len(wanted):
        item = read(session)
        if not isinstance(item, dict):
            continue
        if item.get("re") == "watch":
            if item["missing"]:
                raise no_petition(item["missing"])
            continue
        if "petition" not in item:
            continue
        if item["event"] == "finished":
            finished.add(item["petition"])
        yield item


# -- admission ---------------------------------------------------------------------------
def groups(session: Session) -> list[dict[str, Any]]:
    """Every group: ``{"name", "max_running", "running", "queued", "paused"}``."""
    listing: list[dict[str, Any]] = session.request({"op": "group"})["groups"]
    return listing


def set_group(session: Session, name: str, max_running: int | None) -> list[dict[str, Any]]:
    """Set group ``name``'s limit (None removes it); the groups afterwards."""
    listing: list[dict[str, Any]] = session.request(
        {"op": "group", "name": name, "max_running": max_running}
    )["groups"]
    return listing


def pause(
    session: Session, ids: list[str], groups: list[str], everything: bool, running: bool,
    resume: bool = False,
) -> dict[str, str]:  # fmt: skip
    """Pause (or with ``resume``, resume) petitions, groups or everything: for each ID,
    ``"paused"``/``"resumed"`` or why not."""
    results: dict[str, str] = session.request({
        "op": "resume" if resume else "pause", "ids": ids, "groups": groups,
        "all": everything, "running": running,
    })["results"]  # fmt: skip
    return results


# -- the service ---------------------------------------------------------------------------
def info(session: Session) -> dict[str, Any]:
    """The service's own account of itself (petitions, sessions, served objects)."""
    return _fields(session.info())


def health(session: Session) -> dict[str, Any]:
    """``{"healthy", "queued", "running", "cpus_in_use", "capacity", "paused",
    "plugins": {name: {"healthy", "details"}}}``."""
    return _fields(session.request({"op": "health"}))


def state(session: Session, action: str, plugin: str, **fields: Any) -> dict[str, Any]:
    """A plugin's stored state: ``action`` ls (``{"state"}``), get (``{"value"}``), set,
    or rm (``{"removed"}``); ``fields`` are ``key`` and ``value``."""
    return _fields(session.request({"op": "state", "action": action, "plugin": plugin,
                                    **fields}))  # fmt: skip


def kinds(session: Session, action: str = "ls", **fields: Any) -> dict[str, Any]:
    """Runtime kinds: ``action`` ls (``{"kinds"}``), add (``name``, ``from``, ``set``;
    ``{"kind"}``) or rm (``name``; ``{"removed"}``)."""
    return _fields(session.request({"op": "kinds", "action": action, **fields}))
