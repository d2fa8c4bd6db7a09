"""Session: the service side of one connection, speaking the ``multiprocessing.managers``
protocol.

Every request is a pickled ``(ident, method, args, kwds)`` and every answer a pickled
``(kind, value)``, in request order, as ``multiprocessing.managers`` defines them. With
``ident`` None, ``method`` is one of the server's methods (``create``, ``incref``,
``decref``, ``accept_connection``... and ``call``, see :meth:`Session.call`); otherwise it
is a method of the served object with that id (a ``Queue``'s ``get``, a stream's
``get_batch``). Unlike the standard server, one connection may carry any number of both
kinds, and a ``get_batch`` that has nothing to return yet does not block the connection:
later requests are read and carried out meanwhile (a first Ctrl+C's cancel reaches the
service while its client waits for output), their answers sent after it.

When the connection closes (the client exited, was killed, or its terminal closed) every
petition it submitted attached and that has not ended is cancelled, exactly as if the
client had pressed Ctrl+C.
"""

from __future__ import annotations

import logging
import pickle
import selectors
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from orcha.defaults import MAX_REQUEST_BYTES
from orcha.errors import PetitionError, wire_name
from orcha.protocol import messages
from orcha.protocol.batch import answer_pieces, write_pieces
from orcha.service.handlers import operation_named, perform
from orcha.service.peer import Peer
from orcha.service.streams import EventStream, PetitionStream
from orcha.units import capped_wait

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from orcha.service.job import Job
    from orcha.service.logs import PetitionLog
    from orcha.service.server import ManagerServer

log = logging.getLogger("orcha.service.session")

#: Answers a session holds back behind a waiting ``get_batch`` before it stops reading
#: requests (a client that sends without reading cannot grow the service's memory).
_MAX_PENDING = 256


def refusal(error: PetitionError) -> RuntimeError:
    """How a refusal travels: a builtin exception (a plain BaseManager program unpickles
    it without orcha) whose args are the error's wire name and its message."""
    return RuntimeError(wire_name(error.exit_code), error.message)


class StreamPeer(Peer):
    """A peer whose pushed events and attached petitions' output are served queues."""

    def __init__(self, server: ManagerServer) -> None:
        super().__init__()
        self.server = server
        self.service = server.service
        self.events = EventStream()
        self.events_ident: str | None = None
        self.streams: dict[int, PetitionStream] = {}

    def deliver(self, frame: bytes) -> None:
        """Queue a frame for this client (any thread)."""
        if not self.closed:
            self.events.push(frame)

    def deliver_soon(self, frame: bytes) -> None:
        if not self.closed:
            self.events.push(frame, soon=True)

    def deliver_event(self, frame: bytes, droppable: bool = False) -> None:
        if not self.closed:
            self.events.push(frame, droppable)

    def following(self, handle: int, log: PetitionLog) -> None:
        self.events.follow(handle, log.path, log.size)

    def deliver_output(
        self, handle: int, stream: int, data: bytes, log: PetitionLog | None = None
    ) -> None:
        """Output of a followed petition (under its output lock, just logged)."""
        if not self.closed:
            frame = messages.output_frame(stream, handle, data)
            self.events.push_output(handle, frame, None if log is None else log.size)

    def watch_queue(self, handle: int, job: Job, queue: Any) -> None:
        stream = PetitionStream(self, handle, job, queue)
        stream.ident = self.server.serve(stream)
        self.streams[handle] = stream

    def stream_ended(self, stream: PetitionStream) -> None:
        """Its end has been read: the client is done with it."""
        self.streams.pop(stream.handle, None)
        self.server.release(stream.ident)
        self.detach(stream.handle)

    def call(self, name: str, raw: Any) -> dict[str, Any]:
        """Carry out operation ``name`` for this peer: the reply's fields, naming (in
        ``"queue"``) the served stream its items follow on. PetitionError if refused."""
        operation = operation_named(name)
        fields, after = perform(self.service, self, operation, raw)
        if operation.stream == "output" and "handle" in fields:
            fields["queue"] = self.streams[fields["handle"]].ident
        elif operation.stream == "events":
            if after:
                self.events.replay(after)
            if self.events_ident is None:
                self.events_ident = self.server.serve(self.events)
            fields["queue"] = self.events_ident
        return fields

    def close(self) -> None:
        """Nobody will read this peer's queues: release them; the service forgets it."""
        self.closed = True
        self.events.close()
        if self.events_ident is not None:
            self.server.release(self.events_ident)
        for stream in list(self.streams.values()):
            stream.close()
            self.server.release(stream.ident)
        self.streams.clear()
        self.attached.clear()
        self.service.peer_closed(self)
        self.idle.set()


class _Waiting:
    """A ``get_batch`` whose stream had nothing yet (answered once it has)."""

    __slots__ = ("deadline", "stream")

    def __init__(self, stream: Any, timeout: float | None = None) -> None:
        self.stream = stream
        self.deadline = None if timeout is None else time.monotonic() + timeout


class Session(StreamPeer):
    """Serves one connection until it closes."""

    def __init__(self, conn: Connection, server: ManagerServer) -> None:
        super().__init__(server)
        self.conn = conn
        self._answers: deque[tuple[str, Any] | _Waiting] = deque()

    def serve(self) -> None:
        self.service.peer_opened(self)
        sel = selectors.DefaultSelector()
        socket_fd = self.conn.fileno()
        # The stream the first answer waits for, and its descriptor as registered. Compared
        # by stream, not by number: an ended stream's descriptor is closed (which drops it
        # from epoll) and its number may come back as the next stream's.
        watched: Any = None
        watched_fd: int | None = None
        reading = True
        sel.register(socket_fd, selectors.EVENT_READ)
        try:
            while True:
                timeout = self._flush()
                head = self._answers[0] if self._answers else None
                stream = head.stream if isinstance(head, _Waiting) else None
                # _flush answered any wait on a closed stream: a closed stream has no
                # descriptor to wait on (asking would leak a new one).
                fd = stream.fileno() if stream is not None else None
                if stream is not watched or fd != watched_fd:
                    if watched_fd is not None:
                        sel.unregister(watched_fd)  # a closed one is ignored
                    if fd is not None:
                        sel.register(fd, selectors.EVENT_READ)
                    watched, watched_fd = stream, fd
                want_read = len(self._answers) < _MAX_PENDING
                if want_read != reading:
                    if want_read:
                        sel.register(socket_fd, selectors.EVENT_READ)
                    else:
                        sel.unregister(socket_fd)
                    reading = want_read
                # A client's get_batch(timeout) may be any number: a day at most, then
                # again (epoll refuses more than ~24.8 days).
                for key, _ in sel.select(None if timeout is None else capped_wait(timeout)):
                    if key.fd == socket_fd:
                        self._request(self.conn.recv_bytes(MAX_REQUEST_BYTES))
        except (EOFError, OSError):
            pass  # the client went away
        finally:
            sel.close()
            self.close()

    def _flush(self) -> float | None:
        """Send the answers that are ready, in order; how long the first waiting one may
        still wait (None: no limit)."""
        answers = self._answers
        while answers:
            head = answers[0]
            stream = None
            if isinstance(head, _Waiting):
                stream = head.stream
                items = stream.take()
                # A read after the end (the client keeps two in flight) gets an empty
                # batch at once: nothing will ever come.
                if not items and not stream.closed:
                    if head.deadline is None:
                        return None
                    left = head.deadline - time.monotonic()
                    if left > 0:
                        return left
                head = ("#RETURN", items)
            answers.popleft()
            self._send(head)
            if stream is not None:
                stream.release()  # written: its output no longer counts against the bound
        return None

    def _send(self, msg: tuple[str, Any]) -> None:
        # A batch of output goes out without being copied into a pickle first.
        try:
            batch = msg[0] == "#RETURN" and type(msg[1]) is list
            pieces = answer_pieces(msg[1]) if batch else None
        except Exception:  # an item that does not pickle: the ordinary path says so
            pieces = None
        if pieces is not None:
            write_pieces(self.conn.fileno(), pieces)
            return
        try:
            self.conn.send(msg)
        except (OSError, EOFError):
            raise
        except Exception as e:  # the value does not pickle
            self.conn.send(("#UNSERIALIZABLE", f"{type(e).__name__}: {e}"))

    def _request(self, frame: bytes) -> None:
        """Read one request and queue its answer (or its wait)."""
        try:
            ident, method, args, kwds = pickle.loads(frame)
            if not isinstance(args, tuple) or not isinstance(kwds, dict):
                raise ValueError("args must be a tuple and kwds a dict")
        except Exception as e:
            log.warning("rejected a malformed request: %s", e)
            self._answers.append(("#ERROR", ValueError(f"malformed request: {e}")))
            return
        try:
            if ident is None:
                self._answers.append(("#RETURN", self._server_method(method, args, kwds)))
            else:
                self._object_method(ident, method, args, kwds)
        except PetitionError as e:
            self._answers.append(("#ERROR", refusal(e)))
        except Exception as e:
            self._answers.append(("#ERROR", e))

    def _server_method(self, method: str, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        if method == "call":
            return self.call(*args, **kwds)
        if method == "accept_connection":
            return None  # this connection serves object methods already
        if method not in self.server.public or not isinstance(method, str):
            raise ValueError(f"{method!r} is not a request this service serves")
        return getattr(self.server, method)(self.conn, *args, **kwds)

    def _object_method(self, ident: str, method: str, args: tuple[Any, ...],
                       kwds: dict[str, Any]) -> None:  # fmt: skip
        obj, exposed = self.server.lookup(ident)
        if method == "#GETVALUE":
            self._answers.append(("#RETURN", obj))
            return
        if method not in exposed:
            raise AttributeError(f"method {method!r} of {type(obj).__name__} is not exposed")
        if method == "get_batch" and hasattr(obj, "take"):
            self._answers.append(_Waiting(obj, *args, **kwds))
            return
        self._answers.append(("#RETURN", getattr(obj, method)(*args, **kwds)))


def serve_call(server: ManagerServer, name: str, raw: Any) -> Any:
    """``create`` of an operation's typeid (a plain ``BaseManager`` program's
    ``manager.status(...)``): the operation carried out for a peer of its own, whose
    result is a served :class:`Call`."""
    from orcha.service.streams import Call

    peer = StreamPeer(server)
    fields = peer.call(name, raw)
    if name == "send":
        # Not tied to any connection (a create's closes at once): finish cancels it.
        peer.submitted.clear()
    return Call(peer, fields)
