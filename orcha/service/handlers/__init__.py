"""Handlers: the service's answer to each operation of ``orcha.protocol.operations``.

One handler per operation, registered by name in :data:`HANDLERS` (built once, here). A
handler takes the service, the peer that asked and the checked request, and returns the
reply's fields (a dict, or a :class:`~orcha.service.peer.Reply` when frames go out
around the reply) or raises :class:`orcha.errors.PetitionError`, whose exit code names
the error on the wire. :func:`perform` checks a request against its operation, calls the
handler and gives the reply as plain data: what a session answers a ``call`` or a
``create`` with, and what tests drive in process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from orcha.errors import ExitCode, PetitionError
from orcha.protocol.messages import item
from orcha.protocol.operations import OPERATIONS
from orcha.service.handlers import arrays, attached, changes, control, petitions, subscriptions
from orcha.service.peer import Reply

if TYPE_CHECKING:
    from orcha.protocol.operations import Operation
    from orcha.service.peer import Peer
    from orcha.service.service import Service

#: A handler: (service, peer, checked request) -> the reply's fields.
Handler = Callable[["Service", "Peer", Any], "dict[str, Any] | Reply"]

#: The handler modules; each declares ``HANDLERS``, its operations' handlers by name.
MODULES = (petitions, subscriptions, control, changes, arrays, attached)

#: The handler of each operation, by name.
HANDLERS: dict[str, Handler] = {
    name: handler for module in MODULES for name, handler in module.HANDLERS.items()
}

log = logging.getLogger("orcha.service.session")


def operation_named(name: object) -> Operation:
    """The declared operation ``name``; PetitionError (refused) listing them otherwise."""
    operation = OPERATIONS.get(name) if isinstance(name, str) else None
    if operation is None:
        legal = ", ".join(sorted(OPERATIONS))
        raise PetitionError(f"unknown operation {name!r} ({legal})", ExitCode.REFUSED)
    return operation


def perform(
    service: Service, peer: Peer, operation: Operation, raw: Any
) -> tuple[dict[str, Any], Iterable[bytes]]:
    """Check ``raw`` against ``operation`` and call its handler: (the reply's fields,
    the frames to push to the peer after it, read lazily: a ``follow``'s replay). Output
    a handler sends before its reply (``logs``) is in the reply, as ``"output"``:
    ``[(stream, data), ...]``. PetitionError if the request is invalid or refused."""
    try:
        request = operation.parse(raw)
    except ValueError as e:
        raise PetitionError(str(e), ExitCode.REFUSED) from None
    result = service.handlers[operation.handler](service, peer, request)
    if not isinstance(result, Reply):
        return result, ()
    fields = dict(result.fields)
    before = [item(frame) for frame in result.before]
    if before:
        fields["output"] = [(x[0], x[2]) for x in before if isinstance(x, tuple)]
    elif "output" in operation.reply:
        fields["output"] = []
    return fields, result.after
