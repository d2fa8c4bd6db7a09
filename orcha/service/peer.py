"""Peer: one client as the service core sees it.

What a client submitted, attached to, follows and waits for, and where frames pushed to
it go. :class:`orcha.service.session.Session` is the peer of a socket connection; tests
drive the handlers with an in-process peer that keeps its frames in memory. A
:class:`Reply` is what a handler answers a peer with when more than the reply goes out.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from orcha.protocol import messages

if TYPE_CHECKING:
    from orcha.service.job import Job
    from orcha.service.logs import PetitionLog


class Peer:
    """The client side of the service's bookkeeping. Subclasses define :meth:`deliver`
    (push a frame to the client, from any thread) and may watch attached queues."""

    def __init__(self) -> None:
        self.attached: dict[int, Job] = {}  # handle -> job whose output this client reads
        self.submitted: set[Job] = set()  # not yet ended (the service discards ended ones)
        self.legacy_ended: list[Job] = []  # ended original-API jobs whose queue to purge
        # The record numbers of the petitions this client follows or waits for (not
        # their Jobs: a queued one waited for has none; see Events.wait_for).
        self.subscribed: set[int] = set()
        self.closed = False
        # Clear while an attached petition has not told its client its end.
        self.idle = threading.Event()
        self.idle.set()
        self._next_handle = 1
        # A status listing in pages in progress: why its queued petitions wait (worded
        # once, at its first page, not once a page).
        self.listing: dict[int, str] | None = None

    def new_handle(self) -> int:
        """A number naming one petition's stream in this client's frames."""
        handle = self._next_handle
        self._next_handle += 1
        return handle

    def attach(self, job: Job, queue: Any) -> int:
        """The client reads ``job``'s output from ``queue`` (it submitted the job)."""
        handle = self.new_handle()
        self.attached[handle] = job
        self.submitted.add(job)
        self.idle.clear()
        self.watch_queue(handle, job, queue)
        return handle

    def detach(self, handle: int) -> None:
        """The client has had the end of the petition behind ``handle``."""
        del self.attached[handle]
        if not self.attached:
            self.idle.set()

    def watch_queue(self, handle: int, job: Job, queue: Any) -> None:
        """Start forwarding ``queue`` to the client (a socket peer selects on it)."""

    def deliver(self, frame: bytes) -> None:
        """Push a frame to the client (any thread)."""
        raise NotImplementedError

    def deliver_soon(self, frame: bytes) -> None:
        """Push a frame the client does not need at once (it waits for more): it may
        go with what follows it, within WAIT_BATCH_SECONDS."""
        self.deliver(frame)

    def deliver_event(self, frame: bytes, droppable: bool = False) -> None:
        """Push a watched event; a ``droppable`` one (output, progress) may be dropped
        for a client that reads too slowly (it is then told how many were)."""
        self.deliver(frame)

    def following(self, handle: int, log: PetitionLog) -> None:
        """The client follows the petition writing ``log`` under ``handle``: its live
        output from ``log.size`` on comes through :meth:`deliver_output` (called under
        the petition's output lock)."""

    def deliver_output(
        self, handle: int, stream: int, data: bytes, log: PetitionLog | None = None
    ) -> None:
        """Push output of a followed petition, just written to its ``log`` (a client
        that reads too slowly may catch up from there instead)."""
        self.deliver(messages.output_frame(stream, handle, data))


class Reply:
    """A handler's answer when more than the reply goes out: frames ``before`` it (the
    output ``logs`` sends) and ``after`` it (the log ``follow`` replays, read lazily)."""

    __slots__ = ("after", "before", "fields")

    def __init__(
        self,
        fields: dict[str, Any],
        before: Iterable[bytes] = (),
        after: Iterable[bytes] = (),
    ) -> None:
        self.fields = fields
        self.before = before
        self.after = after
