"""A remote petition's output and input, between its worker and the service.

Each worker serves two comm handlers (installed by :class:`~.plugin.OrchaWorkerPlugin`)
on its own Dask server: the service opens a connection straight to the worker (through
the Dask client's connection pool, so with whatever TLS the client uses; nothing goes
through the scheduler) and

* ``orcha_output``: the worker pushes the petition's output as it comes, in messages of
  up to :data:`~orcha.defaults.DASK_READ_BYTES` (the data travels as raw frames, not
  pickled), then its end record. The service acknowledges what it has passed on; the
  worker keeps what it sent until then, so a connection that breaks is resumed from the
  last acknowledged byte (nothing lost, nothing twice), and what it keeps, sent or not,
  is bounded by :data:`~orcha.defaults.DASK_BUFFER_BYTES`: when that much is
  unacknowledged the worker stops reading the petition's pipes and the petition blocks,
  as on a full pipe. Backpressure end to end, with no round trip per chunk.
* ``orcha_input``: the service sends what the attached client gives the petition's stdin;
  the worker writes each chunk into the petition's stdin pipe before it reads the next
  one from the connection (TCP's own flow control bounds what is in flight).

Stream 0 of the output carries orcha's own records (JSON): the PID, a start error.
Each message may also carry the latest measure of the petition's tree (``usage``) and,
once, how much memory it was found using over its ``--mem`` (``over``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
from typing import Any

from orcha.defaults import DASK_BUFFER_BYTES, DASK_READ_BYTES

OUTPUT_OP = "orcha_output"
INPUT_OP = "orcha_input"


class Buffer:
    """One petition's output on its worker: what was not sent yet and what was sent but
    not acknowledged (offsets count bytes since the petition's start, records
    included). When it keeps ``limit`` bytes the pipes are no longer read."""

    def __init__(self, limit: int = DASK_BUFFER_BYTES) -> None:
        self.unsent: collections.deque[tuple[int, bytes]] = collections.deque()
        self.unacked: collections.deque[tuple[int, bytes]] = collections.deque()
        self.acked = 0  # everything before this offset is the service's
        self.sent = 0  # everything before this offset was sent on the current connection
        self.size = 0  # bytes kept (unacked and unsent)
        self.limit = limit
        self.code: int | None = None  # set once: the end record
        self.usage: dict[str, float] | None = None  # the latest measure, not sent yet
        self.over: int | None = None  # bytes used over its --mem, not sent yet
        self.moved = 0.0  # when its pipes were last read (the worker's loop time)
        self.changed = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()

    def put(self, stream: int, data: bytes) -> None:
        self.unsent.append((stream, data))
        self.size += len(data)
        if self.size >= self.limit:
            self.room.clear()
        self.changed.set()

    def end(self, code: int) -> None:
        self.code = code
        self.changed.set()

    def note(self, usage: dict[str, float] | None = None, over: int | None = None) -> None:
        """A measure of the tree (sent with the next message, replacing an older one)."""
        if usage is not None:
            self.usage = usage
        if over is not None:
            self.over = over
        self.changed.set()

    @property
    def pending(self) -> bool:
        """Whether there is something to send."""
        return (
            bool(self.unsent)
            or self.code is not None
            or self.usage is not None
            or (self.over is not None)
        )

    def take(self, most: int) -> dict[str, Any]:
        """The next message: up to ``most`` bytes of output from offset ``at`` (runs of
        one stream joined), and the exit code once nothing else is left to send."""
        at = self.sent
        out: list[list[Any]] = []
        taken = 0
        while self.unsent and (not out or taken + len(self.unsent[0][1]) <= most):
            item = self.unsent.popleft()
            self.unacked.append(item)
            taken += len(item[1])
            stream, data = item
            if out and stream and out[-1][0] == stream:
                out[-1][1].append(data)
            else:
                out.append([stream, [data]])
        self.sent += taken
        msg: dict[str, Any] = {
            "at": at,
            "out": [[s, parts[0] if len(parts) == 1 else b"".join(parts)] for s, parts in out],
            "code": None if self.unsent else self.code,
        }
        if self.usage is not None:
            msg["usage"], self.usage = self.usage, None
        if self.over is not None:
            msg["over"], self.over = self.over, None
        if not self.unsent:
            self.changed.clear()
        return msg

    def ack(self, offset: int) -> None:
        """The service has everything before ``offset``: forget it, make room."""
        while self.unacked and self.acked + len(self.unacked[0][1]) <= offset:
            n = len(self.unacked.popleft()[1])
            self.acked += n
            self.size -= n
        if self.size < self.limit:
            self.room.set()

    def rewind(self, offset: int) -> None:
        """A (new) connection wants everything from ``offset`` on."""
        self.ack(offset)
        self.unsent.extendleft(reversed(self.unacked))
        self.unacked.clear()
        self.sent = self.acked
        if self.pending:
            self.changed.set()

    @property
    def done(self) -> bool:
        """Ended, and all of it acknowledged."""
        return self.code is not None and not self.unsent and not self.unacked


async def serve_output(comm: Any, buffers: dict[str, Buffer], token: str, offset: int) -> Any:
    """The ``orcha_output`` handler: push petition ``token``'s output from ``offset`` on
    until its end record was sent and acknowledged (or the connection closes)."""
    from distributed.core import Status
    from distributed.protocol import to_serialize

    buffer = buffers.setdefault(token, Buffer())  # a connection may come before the task
    buffer.rewind(offset)
    closed = asyncio.Event()
    acks = asyncio.ensure_future(_read_acks(comm, buffer, closed))
    try:
        while not closed.is_set():
            if not buffer.pending:
                await buffer.changed.wait()
                continue
            msg = buffer.take(DASK_READ_BYTES)
            msg["out"] = [[s, to_serialize(d) if s else d] for s, d in msg["out"]]
            await comm.write(msg)
            if msg["code"] is not None:
                break
        await acks  # the service's last word (or the connection's end)
    except BaseException:
        comm.abort()
        raise
    finally:
        acks.cancel()
    if buffer.done and buffers.get(token) is buffer:
        del buffers[token]
    return Status.dont_reply


async def _read_acks(comm: Any, buffer: Buffer, closed: asyncio.Event) -> None:
    """Acknowledgements from the service, until its last (``done``) or the end of the
    connection; then wake the sender."""
    try:
        while True:
            msg = await comm.read()
            buffer.ack(int(msg.get("ack", 0)))
            if msg.get("done"):
                return
    except Exception:  # the connection closed: a later one resumes
        return
    finally:
        closed.set()
        buffer.changed.set()


async def serve_input(comm: Any, pipes: dict[str, asyncio.Future[int]], token: str) -> Any:
    """The ``orcha_input`` handler: write what comes into stream ``token``'s stdin (its
    pipe's write end, or -1 once the petition has ended), chunk by chunk, until ``eof``;
    close it then. If the petition closed its stdin (or ended), close the connection:
    the service's side stops sending."""
    from distributed.core import Status

    loop = asyncio.get_running_loop()
    fd = -1
    try:
        fd = await pipes.setdefault(token, loop.create_future())
        pipes.pop(token, None)  # this connection's now
        if fd < 0:
            raise BrokenPipeError("the petition has ended")
        while True:
            msg = await comm.read()
            data = msg.get("data")
            if data:
                await _write_all(loop, fd, memoryview(data))
            if msg.get("eof"):
                return Status.dont_reply
    except OSError:  # it stopped reading, ended, or never started; or the service went
        comm.abort()  # the service hears it when it sends more
        return Status.dont_reply
    finally:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


async def _write_all(loop: asyncio.AbstractEventLoop, fd: int, view: memoryview) -> None:
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            ready = loop.create_future()
            loop.add_writer(fd, ready.set_result, None)
            try:
                await ready
            finally:
                loop.remove_writer(fd)
            continue
        view = view[n:]
