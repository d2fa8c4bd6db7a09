"""Served streams: what a client reads after a reply, one batch per request.

A stream is a served object with ``get_batch()``: every item queued so far, waiting until
there is at least one. A session answers it without blocking its connection (it selects
on :meth:`fileno` and calls :meth:`take`). Items are plain data, so a plain
``multiprocessing.managers`` client can read them without orcha's classes:

* :class:`PetitionStream`, an attached petition's output: ``("stdout"|"stderr", data)``
  chunks (consecutive chunks of one stream joined), ``{"event": "started"}``,
  ``{"event": "progress", ...}`` (the newest of a batch), then ``{"event": "end", ...}``
  or ``{"event": "detached", ...}``, the last item.
* :class:`EventStream`, what the service pushes to one client (``wait``, ``follow``,
  ``watch``): event dicts and, for ``follow``, ``(stream, handle, data)`` chunks.
* :class:`Call`, what ``create`` of an operation's typeid serves: its reply (``value()``)
  and, if it streams, its stream.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from orcha.defaults import STREAM_BATCH_BYTES
from orcha.protocol.messages import STDOUT, STREAM_NAMES, item
from orcha.protocol.outputs import OutputQueue
from orcha.service.job import Detached, End, Progress, Started

if TYPE_CHECKING:
    from orcha.service.job import Job
    from orcha.service.session import StreamPeer


class PetitionStream:
    """The output queue of a petition submitted attached, read in batches."""

    _exposed_ = ("get_batch",)

    def __init__(self, peer: StreamPeer, handle: int, job: Job, queue: OutputQueue) -> None:
        self.peer = peer
        self.handle = handle
        self.job = job
        self.queue = queue
        self.ident = ""
        self.ended = False

    @property
    def closed(self) -> bool:
        """Its end has been taken (or the client is gone): nothing more to wait for."""
        return self.queue.closed

    def fileno(self) -> int:
        return self.queue.fileno()

    def take(self) -> list[Any]:
        """The items queued now, as plain data (none: an empty list)."""
        raw = self.queue.drain()
        if not raw:
            return []
        items: list[Any] = []
        chunks: list[bytes] = []
        tag = -1
        last_progress = max((i for i, x in enumerate(raw) if isinstance(x, Progress)),
                            default=-1)  # fmt: skip
        for index, x in enumerate(raw):
            if isinstance(x, tuple) and len(x) == 2 and x[0] in STREAM_NAMES:
                stream, data = x
            elif isinstance(x, (bytes, bytearray)):
                stream, data = STDOUT, bytes(x)
            else:
                if chunks:
                    items.append((STREAM_NAMES[tag], b"".join(chunks)))
                    chunks, tag = [], -1
                event = self._event(x, index == last_progress)
                if event is not None:
                    items.append(event)
                continue
            if stream != tag and chunks:
                items.append((STREAM_NAMES[tag], b"".join(chunks)))
                chunks = []
            tag = stream
            chunks.append(data)
        if chunks:
            items.append((STREAM_NAMES[tag], b"".join(chunks)))
        if self.ended:
            self.queue.close()
            self.peer.stream_ended(self)
        return items

    def _event(self, x: Any, newest: bool) -> dict[str, Any] | None:
        petition_id = self.job.id
        if isinstance(x, Progress):
            if not newest:
                return None
            return {"event": "progress", "id": petition_id, "value": x.value,
                    "target": x.target, "unit": x.unit}  # fmt: skip
        if isinstance(x, Started):
            return {"event": "started", "id": petition_id}
        if isinstance(x, Detached):
            self.ended = True
            return {"event": "detached", "id": petition_id, "message": x.message}
        if isinstance(x, End):
            self.ended = True
            return {"event": "end", "id": petition_id, "state": str(x.state),
                    "code": x.code, "message": x.message, "by_client": x.by_client,
                    "outcome": x.outcome}  # fmt: skip
        return None

    def close(self) -> None:
        self.queue.close()


class EventStream:
    """What the service pushes to one client, read in batches: the replay of a
    ``follow`` first (read lazily, in order), then what was pushed."""

    _exposed_ = ("get_batch",)

    def __init__(self) -> None:
        self.queue = OutputQueue()
        self._replays: deque[Iterator[bytes]] = deque()

    def push(self, frame: bytes) -> None:
        self.queue.put(frame)

    def replay(self, frames: Iterable[bytes]) -> None:
        """Frames to deliver before anything pushed after now."""
        self._replays.append(iter(frames))

    @property
    def closed(self) -> bool:
        return self.queue.closed

    def fileno(self) -> int:
        return self.queue.fileno()

    def take(self) -> list[Any]:
        items: list[Any] = []
        size = 0
        while self._replays and size < STREAM_BATCH_BYTES:
            for frame in self._replays[0]:
                items.append(item(frame))
                size += len(frame)
                if size >= STREAM_BATCH_BYTES:
                    break
            else:
                self._replays.popleft()
        if not self._replays:
            items.extend(item(frame) for frame in self.queue.drain())
        return items

    def close(self) -> None:
        self._replays.clear()
        self.queue.close()


class Call:
    """An operation carried out through ``create``: ``value()`` is its reply;
    ``get_batch()`` reads what follows it (an attached submit's output, or the events of
    ``wait``, ``follow`` and ``watch``); ``close()`` lets go (cancels an attached
    petition not yet ended). Released by the client's last proxy, it closes itself."""

    _exposed_: tuple[str, ...] = ("value", "get_batch", "close")

    def __init__(self, peer: StreamPeer, fields: dict[str, Any]) -> None:
        self.peer = peer
        self.fields = fields
        queue = fields.get("queue")
        self._stream: Any = None
        if queue is not None:
            self._stream, _ = peer.server.lookup(queue)
        else:
            self._exposed_: tuple[str, ...] = ("value", "close")

    def value(self) -> dict[str, Any]:
        return self.fields

    @property
    def closed(self) -> bool:
        return self._stream is None or bool(self._stream.closed)

    def fileno(self) -> int:
        if self._stream is None:
            raise ValueError("this operation has nothing to read")
        fd: int = self._stream.fileno()
        return fd

    def take(self) -> list[Any]:
        if self._stream is None:
            raise ValueError("this operation has nothing to read")
        items: list[Any] = self._stream.take()
        return items

    def close(self) -> None:
        if not self.peer.closed:
            self.peer.close()

    released = close
