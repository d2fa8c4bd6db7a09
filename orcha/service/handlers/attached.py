"""Handlers of what a client sends to a petition it submitted attached: its stdin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orcha.errors import ExitCode, PetitionError

if TYPE_CHECKING:
    from orcha.protocol.messages import StdinRequest
    from orcha.service.handlers import Handler
    from orcha.service.peer import Peer
    from orcha.service.service import Service


def stdin(service: Service, peer: Peer, request: StdinRequest) -> dict[str, Any]:
    """Input for the stdin of the petition this peer submitted under ``handle``: kept
    (at most a window ahead of what it has read, see ``orcha.service.stdin``) and written
    as it reads; dropped if it has ended or stopped reading (its client learns that from
    its output stream). Refused for a petition submitted without ``stdin``, or beyond
    the window."""
    job = peer.attached.get(request.handle)
    if job is None:
        return {"buffered": 0}  # it has ended: this was in flight meanwhile
    if job.stdin is None:
        raise PetitionError(
            f"petition {job.id} was submitted without stdin: it reads /dev/null",
            ExitCode.REFUSED,
        )
    try:
        return {"buffered": job.stdin.put(request.data, request.eof)}
    except ValueError as e:
        raise PetitionError(str(e), ExitCode.REFUSED) from None


HANDLERS: dict[str, Handler] = {"stdin": stdin}
