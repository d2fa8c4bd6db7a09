"""Session: the service side of one orcha client connection.

One thread per session waits, with no timeout, on the client's socket and on the output
queues of the petitions the client is attached to. Requests are answered in order (by
``orcha.service.handlers.respond``); output is forwarded as it arrives. When the socket
closes (the client exited, was killed, or its terminal closed) every petition the session
submitted and that has not ended is cancelled, exactly as if the client had pressed
Ctrl+C.
"""

from __future__ import annotations

import selectors
from typing import TYPE_CHECKING, Any

from orcha.defaults import MAX_REQUEST_BYTES
from orcha.protocol import messages
from orcha.protocol.messages import STDERR, STDOUT
from orcha.protocol.outputs import OutputQueue
from orcha.service.handlers import respond
from orcha.service.job import Detached, End, Job, Progress, Started
from orcha.service.peer import Peer

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from orcha.service.service import Service

#: Output of one petition is sent in frames of at most this many bytes.
_FRAME_LIMIT = 4 << 20


class Session(Peer):
    """Serves one client connection until it closes."""

    def __init__(self, conn: Connection, service: Service) -> None:
        super().__init__()
        self.conn = conn
        self.service = service
        self._sel = selectors.DefaultSelector()
        # Frames the service pushes to this client (follow, wait, watch), sent in order by
        # this session's thread.
        self.mailbox = OutputQueue()

    def serve(self) -> None:
        self.service.peer_opened(self)
        self._sel.register(self.conn.fileno(), selectors.EVENT_READ, None)
        self._sel.register(self.mailbox.fileno(), selectors.EVENT_READ, "mail")
        try:
            while True:
                for key, _ in self._sel.select():
                    if key.data is None:
                        self._read_request()
                    elif key.data == "mail":
                        for frame in self.mailbox.drain():
                            self.conn.send_bytes(frame)
                    else:
                        self._forward(*key.data)
        except (EOFError, OSError):
            pass  # the client went away
        finally:
            self._close()

    def _read_request(self) -> None:
        """Answer one request: the operations table checks it, its handler answers."""
        frame = self.conn.recv_bytes(MAX_REQUEST_BYTES)
        for answer in respond(self.service, self, frame):
            self.conn.send_bytes(answer)

    def deliver(self, frame: bytes) -> None:
        """Queue a frame for this client (any thread)."""
        if not self.closed:
            self.mailbox.put(frame)

    def watch_queue(self, handle: int, job: Job, queue: Any) -> None:
        self._sel.register(queue.fileno(), selectors.EVENT_READ, (handle, job))

    # -- output ------------------------------------------------------------------------
    def _forward(self, handle: int, job: Job) -> None:
        queue: OutputQueue = job.queue
        frames: list[bytes] = []
        chunks: list[bytes] = []  # the run of same-stream data being coalesced
        tag, size = -1, 0

        def flush() -> None:
            nonlocal tag, chunks, size
            if chunks:
                frames.append(messages.output_frame(tag, handle, b"".join(chunks)))
            tag, chunks, size = -1, [], 0

        ended: Detached | End | None = None
        items = queue.drain()
        # Only the newest of the progress reports drained together is worth sending.
        last_progress = max((i for i, x in enumerate(items) if isinstance(x, Progress)),
                            default=-1)  # fmt: skip
        for index, item in enumerate(items):
            if isinstance(item, tuple) and len(item) == 2 and item[0] in (STDOUT, STDERR):
                stream, data = item
            elif isinstance(item, (bytes, bytearray)):
                stream, data = STDOUT, bytes(item)
            elif isinstance(item, str):
                stream, data = STDOUT, item.encode()
            else:
                flush()
                if isinstance(item, Progress):
                    if index == last_progress:
                        frames.append(messages.encode({
                            "event": "progress", "handle": handle, "id": job.id,
                            "value": item.value, "target": item.target, "unit": item.unit,
                        }))  # fmt: skip
                elif isinstance(item, Started):
                    frames.append(
                        messages.encode({"event": "started", "handle": handle, "id": job.id})
                    )
                elif isinstance(item, Detached):
                    ended = item
                    detached = {"event": "detached", "handle": handle, "id": job.id}
                    frames.append(messages.encode({**detached, "message": item.message}))
                elif isinstance(item, End):
                    ended = item
                    frames.append(
                        messages.encode(
                            {
                                "event": "end",
                                "handle": handle,
                                "id": job.id,
                                "state": str(item.state),
                                "code": item.code,
                                "message": item.message,
                                "by_client": item.by_client,
                                "outcome": item.outcome,
                            }
                        )
                    )
                continue
            if stream != tag or size + len(data) > _FRAME_LIMIT:
                flush()
                tag = stream
            chunks.append(data)
            size += len(data)
        flush()
        for frame in frames:
            self.conn.send_bytes(frame)
        if ended is not None:
            self._sel.unregister(queue.fileno())
            queue.close()
            self.detach(handle)

    # -- end ---------------------------------------------------------------------------
    def _close(self) -> None:
        self.closed = True
        self._sel.close()
        self.mailbox.close()
        for job in list(self.attached.values()):
            job.queue.close()
        self.attached.clear()
        self.service.peer_closed(self)
        self.idle.set()
