"""Handler of ``submit_array``: many petitions in one request (``run --array``,
``run --each``); see :mod:`orcha.service.arrays`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orcha.service import arrays
from orcha.states import FINISHED

if TYPE_CHECKING:
    from orcha.protocol.arrays import ArrayRequest
    from orcha.service.handlers import Handler
    from orcha.service.peer import Peer
    from orcha.service.service import Service


def submit_array(service: Service, peer: Peer, request: ArrayRequest) -> dict[str, Any]:
    """Queue every member (all or none): the array's name and its members' IDs. An
    attached array's members end with this client (its client follows their output)."""
    attached = request.submit.attach
    name, jobs = arrays.submit_array(service, request, peer if attached else None)
    if attached:
        with service.peers_lock:
            # Those that have ended already were discarded by then: not added back. (An
            # attached array's members are Jobs: only detached ones are queued compactly.)
            peer.submitted.update(j for j in jobs if j.state not in FINISHED)  # type: ignore[misc]
    return {"name": name, "ids": [j.id for j in jobs]}


HANDLERS: dict[str, Handler] = {"submit_array": submit_array}
