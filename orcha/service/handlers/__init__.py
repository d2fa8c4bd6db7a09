"""Handlers: the service's answer to each operation of ``orcha.protocol.operations``.

One handler per operation, registered by name in :data:`HANDLERS` (built once, here). A
handler takes the service, the peer that asked and the checked request, and returns the
reply's fields (a dict, or a :class:`~orcha.service.peer.Reply` when frames go out
around the reply) or raises :class:`orcha.errors.PetitionError`, whose exit code names
the error on the wire. :func:`respond` turns one request frame into its answer frames:
what a session sends back, and what tests drive in process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from orcha.errors import PetitionError, wire_name
from orcha.protocol import messages
from orcha.protocol.operations import OPERATIONS, OPS, Operation
from orcha.service.handlers import control, petitions, subscriptions
from orcha.service.peer import Reply

if TYPE_CHECKING:
    from orcha.service.peer import Peer
    from orcha.service.service import Service

#: A handler: (service, peer, checked request) -> the reply's fields.
Handler = Callable[["Service", "Peer", Any], "dict[str, Any] | Reply"]

#: The handler of each operation, by name.
HANDLERS: dict[str, Handler] = {**petitions.HANDLERS, **subscriptions.HANDLERS, **control.HANDLERS}

log = logging.getLogger("orcha.service.session")


def respond(service: Service, peer: Peer, frame: bytes) -> Iterator[bytes]:
    """The frames that answer one request frame, in order (read lazily: a ``follow``
    replays its logs as they are sent)."""
    if frame[:1] == bytes((messages.LEGACY,)):
        yield from answer(service, peer, OPERATIONS["send"], frame[1:])
        return
    try:
        request = messages.decode(frame)
    except ValueError as e:
        log.warning("rejected a malformed request: %s", e)
        yield messages.error_reply("?", "refused", f"malformed request: {e}")
        return
    name = request.get("op")
    operation = OPERATIONS.get(name) if isinstance(name, str) else None
    if operation is None or operation.framing != "json":
        legal = ", ".join(sorted(OPS))
        yield messages.error_reply(str(name), "refused", f"unknown operation {name!r} ({legal})")
        return
    yield from answer(service, peer, operation, request)


def answer(service: Service, peer: Peer, operation: Operation, raw: Any) -> Iterator[bytes]:
    """Check ``raw`` against ``operation``, call its handler, and frame what it says."""
    try:
        request = operation.parse(raw)
    except ValueError as e:
        yield messages.error_reply(operation.name, "refused", str(e))
        return
    try:
        result = service.handlers[operation.name](service, peer, request)
    except PetitionError as e:
        yield messages.error_reply(operation.name, wire_name(e.exit_code), e.message)
        return
    if isinstance(result, Reply):
        yield from result.before
        yield messages.reply(operation.name, **result.fields)
        yield from result.after
    else:
        yield messages.reply(operation.name, **result)
