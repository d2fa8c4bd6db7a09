"""Served streams: what a client reads after a reply, one batch per request.

A stream is a served object with ``get_batch()``: every item queued so far, waiting until
there is at least one. A session answers it without blocking its connection (it selects
on :meth:`fileno` and calls :meth:`take`). Items are plain data, so a plain
``multiprocessing.managers`` client can read them without orcha's classes:

* :class:`PetitionStream`, an attached petition's output: ``("stdout"|"stderr", data)``
  chunks (consecutive small chunks of one stream joined, up to JOIN_BELOW_BYTES: large
  ones go as they were read, never copied), ``{"event": "started"}``,
  ``{"event": "progress", ...}`` (the newest of a batch), ``{"event": "stdin", "read":
  N, "closed": bool}`` for a petition whose client sends its stdin (the newest of a
  batch: see :mod:`orcha.service.stdin`), ``{"event": "queued", "reason": ...}`` while
  it waits (when the reason changes; see :mod:`orcha.service.queued_notices`), then
  ``{"event": "end", ...}`` or ``{"event": "detached", ...}``, the last item.
* :class:`EventStream`, what the service pushes to one client (``wait``, ``follow``,
  ``watch``): event dicts and, for ``follow``, ``(stream, handle, data)`` chunks.
* :class:`Call`, what ``create`` of an operation's typeid serves: its reply (``value()``)
  and, if it streams, its stream.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from orcha.defaults import (
    JOIN_BELOW_BYTES,
    OUTPUT_MALLOC_MMAP_BYTES,
    OUTPUT_MALLOC_TRIM_BYTES,
    STREAM_BATCH_BYTES,
    SUBSCRIBER_BUFFER_BYTES,
)
from orcha.protocol import messages
from orcha.protocol.messages import STDOUT, STREAM_NAMES, item
from orcha.protocol.outputs import OutputQueue
from orcha.service.job import Detached, End, Progress, Queued, Started, StdinRead
from orcha.service.late_wakes import LATE_WAKES
from orcha.service.logs import read_log

if TYPE_CHECKING:
    from orcha.service.job import Job
    from orcha.service.session import StreamPeer


def reuse_output_buffers() -> bool:
    """Let the C allocator reuse the memory of output chunks freed once they are sent
    (glibc only; False where it cannot be told).

    Each read of a petition's pipe is a new bytes object of up to PIPE_CHUNK. By default
    glibc serves blocks that large with a fresh ``mmap`` and unmaps them when freed, so
    every chunk paid for faulting in its pages anew: about 0.3 s of service CPU per GiB
    streamed, more than the copy itself. Above OUTPUT_MALLOC_MMAP_BYTES blocks are still
    mapped on their own, and free memory beyond OUTPUT_MALLOC_TRIM_BYTES is still given
    back to the system, so what is kept is bounded.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (AttributeError, OSError):  # not glibc (musl, macOS): nothing to tune
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    return bool(
        mallopt(m_mmap_threshold, OUTPUT_MALLOC_MMAP_BYTES)
        and mallopt(m_trim_threshold, OUTPUT_MALLOC_TRIM_BYTES)
    )


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
        raw = self.queue.lend()  # held against the bound until written (release)
        if not raw:
            return []
        items: list[Any] = []
        chunks: list[bytes] = []
        pending = 0  # bytes in chunks
        tag = -1
        last_progress = max((i for i, x in enumerate(raw) if isinstance(x, Progress)),
                            default=-1)  # fmt: skip
        last_read = max((i for i, x in enumerate(raw) if isinstance(x, StdinRead)),
                        default=-1)  # fmt: skip
        for index, x in enumerate(raw):
            if isinstance(x, tuple) and len(x) == 2 and x[0] in STREAM_NAMES:
                stream, data = x
            elif isinstance(x, (bytes, bytearray)):
                stream, data = STDOUT, bytes(x)
            else:
                event = self._event(x, index in (last_progress, last_read))
                if event is None:
                    continue  # an older progress or stdin report: the newest follows
                if chunks:
                    items.append((STREAM_NAMES[tag], b"".join(chunks)))
                    chunks, pending, tag = [], 0, -1
                items.append(event)
                continue
            if chunks and (stream != tag or pending >= JOIN_BELOW_BYTES):
                items.append((STREAM_NAMES[tag], b"".join(chunks)))
                chunks, pending = [], 0
            tag = stream
            chunks.append(data)
            pending += len(data)
        if chunks:
            items.append((STREAM_NAMES[tag], b"".join(chunks)))
        if self.ended:
            self.queue.close()
            self.peer.stream_ended(self)
        return items

    def release(self) -> None:
        """The batch last taken has been written to the client."""
        self.queue.release()

    def _event(self, x: Any, newest: bool) -> dict[str, Any] | None:
        petition_id = self.job.id
        if isinstance(x, Progress):
            if not newest:
                return None
            return {"event": "progress", "id": petition_id, "value": x.value,
                    "target": x.target, "unit": x.unit}  # fmt: skip
        if isinstance(x, StdinRead):
            if not newest:
                return None
            return {"event": "stdin", "id": petition_id, "read": x.read, "closed": x.closed}
        if isinstance(x, Started):
            return {"event": "started", "id": petition_id}
        if isinstance(x, Queued):
            return {"event": "queued", "id": petition_id, "reason": x.reason}
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


class _Followed:
    """Where one followed petition's output stands for this client: queued up to log
    byte ``end``; while ``behind``, later output is left in the log (up to ``latest``)."""

    __slots__ = ("behind", "end", "held_end", "latest", "path")

    def __init__(self, path: str, end: int) -> None:
        self.path = path
        self.end = end
        self.behind = False
        self.latest = end
        self.held_end: bytes | None = None  # the petition's end, due after the catch-up


class EventStream:
    """What the service pushes to one client, read in batches: the replay of a
    ``follow`` first (read lazily, in order), then what was pushed.

    At most ``max_bytes`` are buffered (SUBSCRIBER_BUFFER_BYTES), so a client that
    reads slower than petitions write cannot grow the service's memory, and the
    petitions and other clients never wait for it. Beyond the bound:

    * a followed petition's output is no longer queued: once the client has read what
      was, it gets ``{"event": "skipped", "handle", "id"}`` and the rest from the
      petition's log (what the log kept: see its cap), then live output again;
    * watched output and progress events are dropped: once the client has read what was
      queued, it gets ``{"event": "dropped", "petition": None, "data": {"count": N}}``;
    * everything else (ends, state changes) is always queued: it is small and is what
      lets a client finish.
    """

    _exposed_ = ("get_batch",)

    def __init__(self, max_bytes: int = SUBSCRIBER_BUFFER_BYTES) -> None:
        self.queue = OutputQueue(max_bytes)
        self._replays: deque[Iterator[bytes]] = deque()
        self._lock = threading.Lock()  # the fields below: pushers and the reader
        self._followed: dict[int, _Followed] = {}
        self._behind = 0  # followed handles behind
        self._dropping = False  # droppable events are dropped until the client catches up
        self._dropped = 0  # how many, not told yet
        self.skips = 0  # times a follower fell behind (for tests and logs)

    def push(self, frame: bytes, droppable: bool = False, soon: bool = False) -> None:
        """Queue a frame; a ``droppable`` one is dropped (and counted) while the client
        is behind. One that is wanted only ``soon`` reaches the client with what is
        pushed next, or within WAIT_BATCH_SECONDS (see :mod:`orcha.service.late_wakes`)."""
        with self._lock:
            if droppable:
                if self._dropping or not self.queue.offer(frame):
                    self._dropping = True
                    self._dropped += 1
                return
            if self._dropped:  # the client hears of them before what came after them
                self.queue.put(_dropped(self._dropped), block=False)
                self._dropped = 0
            if self._behind and frame[:1] == b"{":
                held = self._followed_end(frame)
                if held is not None:
                    held.held_end = frame  # after what it has still to read of the log
                    return
            self.queue.put(frame, block=False, wake=not soon)
        if soon:
            LATE_WAKES.later(self.queue)

    def follow(self, handle: int, path: str, end: int) -> None:
        """Output of ``handle`` pushed from now on is written to the log at ``path``
        after byte ``end`` (the live output follows the replay up to there)."""
        with self._lock:
            self._followed[handle] = _Followed(path, end)

    def push_output(self, handle: int, frame: bytes, end: int | None) -> None:
        """Queue an output frame of ``handle``, whose data ends at byte ``end`` of its
        log; left in the log (the client catches up later) if the buffer is full."""
        with self._lock:
            followed = self._followed.get(handle)
            if followed is None or end is None:
                self.queue.put(frame, block=False)
                return
            if not followed.behind:
                if self.queue.offer(frame):
                    followed.end = followed.latest = end
                    return
                followed.behind = True
                self._behind += 1
                self.skips += 1
            followed.latest = end

    def _followed_end(self, frame: bytes) -> _Followed | None:
        # Under the lock, only while some handle is behind (rare): is it its end?
        try:
            event = messages.decode(frame)
        except ValueError:
            return None
        followed = self._followed.get(event.get("handle"))  # type: ignore[arg-type]
        if event.get("event") == "end" and followed is not None and followed.behind:
            return followed
        return None

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
            with self._lock:
                frames = self.queue.drain()
                dropped = self._catch_up()
            items.extend(item(frame) for frame in frames)
            if dropped:
                items.append(item(_dropped(dropped)))
        return items

    def release(self) -> None:
        """The batch last taken has been written to the client."""
        self.queue.release()

    def _catch_up(self) -> int:
        """Under the lock, the queue just drained: whatever fell behind resumes after it.
        How many droppable events were dropped."""
        dropped, self._dropped, self._dropping = self._dropped, 0, False
        if not self._behind:
            return dropped
        for handle, followed in self._followed.items():
            if followed.behind:
                self._replays.append(_from_log(handle, followed, followed.end, followed.latest))
                followed.end = followed.latest
                followed.behind = False
                if followed.held_end is not None:
                    self._replays.append(iter((followed.held_end,)))
                    followed.held_end = None
        self._behind = 0
        return dropped

    def close(self) -> None:
        self._replays.clear()
        self.queue.close()


def _dropped(count: int) -> bytes:
    return messages.encode({"event": "dropped", "petition": None, "kind": "",
                            "timestamp": time.time(), "data": {"count": count}})  # fmt: skip


def _from_log(handle: int, followed: _Followed, start: int, end: int) -> Iterator[bytes]:
    """What a follower that fell behind missed: a note, then the log from ``start``."""
    yield messages.encode({"event": "skipped", "handle": handle,
                           "message": "this client fell behind; its output continues "
                           "from the petition's log"})  # fmt: skip
    for stream, data in read_log(followed.path, end, start):
        yield messages.output_frame(stream, handle, data)


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

    def release(self) -> None:
        if self._stream is not None:
            self._stream.release()

    def close(self) -> None:
        if not self.peer.closed:
            self.peer.close()

    released = close
