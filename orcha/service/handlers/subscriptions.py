"""Handlers of the subscriptions: wait, follow, watch (the fan-out is orcha.service.events)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from orcha.protocol import messages
from orcha.service import arrays
from orcha.service.logs import last_lines, read_log
from orcha.service.peer import Reply

if TYPE_CHECKING:
    from orcha.protocol.requests import FollowRequest, IdsRequest, WatchRequest
    from orcha.service.handlers import Handler
    from orcha.service.peer import Peer
    from orcha.service.service import Service


def wait(service: Service, peer: Peer, request: IdsRequest) -> dict[str, Any]:
    """Which petitions have ended, which are pending (an ``ended`` event follows for
    each), which are unknown; and the arrays named, with their members."""
    ids, named = arrays.expand(service, request.ids)
    return {**service.events.wait_for(peer, ids), "arrays": named}


def follow(service: Service, peer: Peer, request: FollowRequest) -> Reply:
    """The handles first, then each log replayed (its last ``lines`` lines if given),
    then live output follows (the peer is subscribed exactly where the replay ends)."""
    plan, missing = service.events.follow(peer, arrays.expand(service, request.ids)[0])
    handles = {p["id"]: p["handle"] for p in plan}
    return Reply({"handles": handles, "missing": missing}, after=_replay(plan, request.lines))


def _replay(plan: list[dict[str, Any]], lines: int | None = None) -> Iterator[bytes]:
    """Each log up to where live output takes over (only its last ``lines`` lines if
    given), then the end of those that have ended."""
    for p in plan:
        frames: Iterable[tuple[int, bytes]] = read_log(p["log_path"], p["end"])
        if lines is not None:
            frames = last_lines(list(frames), lines)
        for stream, data in frames:
            yield messages.output_frame(stream, p["handle"], data)
        if p["ended"] is not None:
            yield messages.encode({"event": "end", "handle": p["handle"], **p["ended"]})


def watch(service: Service, peer: Peer, request: WatchRequest) -> dict[str, Any]:
    """Events of the given petitions (all if none), starting with the state of each;
    ``usage`` events too if asked (with the last ended records in the reply)."""
    ids = arrays.expand(service, request.ids)[0]  # an array's name: its members
    return service.events.watch(peer, ids, request.usage, request.output)


HANDLERS: dict[str, Handler] = {"wait": wait, "follow": follow, "watch": watch}
