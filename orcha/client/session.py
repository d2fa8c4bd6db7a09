"""Session: a client's connection to the service, speaking ``multiprocessing.managers``.

One authenticated connection that stays open (closing it cancels what it submitted
attached). Requests are the managers protocol's (``orcha.protocol.wire``): an operation
is ``call(name, request)`` on the server, one round trip; what streams after a reply is
read from the served queue the reply names, with ``get_batch``. Answers come back in the
order of the requests, so requests may be pipelined: :meth:`Session.send` queues one,
:meth:`Session.recv` reads the next answer.
"""

from __future__ import annotations

from _thread import RLock, allocate_lock  # threading's C module: threading.py costs start-up

from orcha.errors import (
    WIRE_ERRORS,
    AuthError,
    ConcurrentUseError,
    ExitCode,
    LostServiceError,
    PetitionError,
)
from orcha.protocol import transport
from orcha.protocol.batch import output_batch
from orcha.protocol.wire import RemoteError, answer, request_frame

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from typing import Any

    from orcha.protocol.wire import WireConnection as Connection
    from orcha.settings import Settings


#: What :meth:`Session.recv` returns without ``wait`` when no answer was there to keep.
NOTHING = object()


def error_of(e: BaseException) -> PetitionError:
    """The PetitionError an exception the service answered with stands for: a refusal
    travels as ``RuntimeError(wire error name, message)``."""
    args: tuple[Any, ...] = getattr(e, "args", ())
    if isinstance(e, RuntimeError) and len(args) == 2 and args[0] in WIRE_ERRORS:
        return PetitionError(str(args[1]), WIRE_ERRORS[args[0]])
    return PetitionError(str(e) or type(e).__name__, ExitCode.REFUSED)


class Session:
    """One authenticated connection; answers are read in request order.

    Answers of requests sent with ``skip`` (a cancel sent while output is being read)
    are read and dropped by :meth:`recv`. Any thread may :meth:`send` at any time (a
    cancel from another thread while one reads); one thread at a time may read: a
    second reader raises ConcurrentUseError at once (it would take the other's answers).
    """

    def __init__(self, conn: Connection, trace: bool = False) -> None:
        """``trace``: say on stderr how long each :meth:`call` took (``-vv``)."""
        self.conn = conn
        self.trace = trace
        self._skip: list[bool] = []  # per request in flight: drop its answer?
        # A request's skip flag and its frame go in the same order: answers come back in
        # the order the frames were sent. Reentrant: a signal handler may send a cancel.
        self._sending = RLock()
        self._reading = allocate_lock()

    @classmethod
    def open(cls, settings: Settings) -> Session:
        """Connect to the service. Raises NoServiceError or AuthError. With
        ``settings.verbose`` 2 or more, says on stderr how long connecting took, and
        each call its own time."""
        trace = getattr(settings, "verbose", 0) >= 2  # a stand-in may have none
        started = _now() if trace else 0.0
        key = settings.client_key()
        try:
            session = cls(transport.connect(settings.address, key), trace)
        except AuthError:
            # No key file when we looked, a listening service when we connected: one
            # that was just starting (it writes its key file before it listens). Look
            # again before telling the user they have no key.
            if key is not None or (key := settings.client_key()) is None:
                raise
            session = cls(transport.connect(settings.address, key), trace)
        if trace:
            _say(f"connected and authenticated in {_ms(started)}")
        return session

    def fileno(self) -> int:
        return self.conn.fileno()

    def send(self, ident: str | None, method: str, *args: Any, skip: bool = False) -> None:
        """Send one request without waiting for its answer."""
        frame = request_frame(ident, method, args)
        with self._sending:
            self._skip.append(skip)  # first: another thread may read its answer at once
            try:
                self.conn.send_bytes(frame)
            except OSError as e:
                raise LostServiceError(str(e)) from e

    def recv(self, wait: bool = True, views: bool = False) -> Any:
        """The value of the next answer (those of ``skip`` requests are dropped); the
        PetitionError it stands for if it is a refusal; LostServiceError if the
        connection broke. Without ``wait``, :data:`NOTHING` once the answers that have
        arrived were all dropped (a caller that selects on the connection must not wait
        here for an answer that may come much later). With ``views``, a batch of output
        chunks holds views into the connection's buffer (not copies): valid until the
        next call. ConcurrentUseError if another thread is reading this connection."""
        if not self._reading.acquire(False):
            raise ConcurrentUseError(
                "this connection is being read by another thread: read a petition's "
                "output, a follow or a watch from one thread at a time (make a Client, "
                "or a handle, per thread)"
            )
        try:
            return self._recv(wait, views)
        finally:
            self._reading.release()

    def _recv(self, wait: bool, views: bool) -> Any:
        dropped = False
        while True:
            if dropped and not wait and not self.conn.readable():
                return NOTHING
            try:
                frame = self.conn.recv_frame()
            except (EOFError, OSError) as e:
                raise LostServiceError(str(e) or "connection closed") from e
            skip = self._skip.pop(0) if self._skip else False
            dropped = skip
            try:
                value: Any = output_batch(frame) if views else None
                if value is None:
                    value = answer(frame)
            except RemoteError as e:
                if not skip:
                    raise PetitionError(str(e), ExitCode.REFUSED) from None
                continue
            except Exception as e:
                if not skip:
                    raise error_of(e) from None
                continue
            if not skip:
                return value

    def call(self, name: str, request: Any = None) -> Any:
        """Carry out operation ``name`` with ``request`` (plain data, a dict): its reply.
        PetitionError if refused."""
        started = _now() if self.trace else 0.0
        self.send(None, "call", name, request if request is not None else {})
        if not self.trace:
            return self.recv()
        try:
            return self.recv()
        finally:
            _say(f"operation {name}: answered in {_ms(started)}")

    def get_batch(self, queue: str) -> list[Any]:
        """Every item queued in the served queue ``queue``, waiting for at least one."""
        self.send(queue, "get_batch")
        items: list[Any] = self.recv()
        return items

    def close(self) -> None:
        self.conn.close()


class Connections:
    """A client's sessions, thread-safe: those open (all closed by :meth:`close`) and,
    of those that carry request-reply operations, the idle ones to reuse. A thread that
    needs one while all are in use by others gets a new one: threads never wait for
    each other's answers, and never read each other's."""

    def __init__(self, settings: Settings, timeout: float | None = None) -> None:
        """``timeout``: seconds each answer may take at most (LostServiceError past it)."""
        self.settings, self.timeout = settings, timeout
        self._lock = allocate_lock()  # held for list changes only, never over I/O
        self._open: list[Session] = []
        self._idle: list[Session] = []

    def open(self) -> Session:
        """A new session of the caller's own (output streams, attached petitions)."""
        session = Session.open(self.settings)
        if self.timeout:
            transport.set_recv_timeout(session.fileno(), self.timeout)
        with self._lock:
            self._open.append(session)
        return session

    def borrow(self) -> Session:
        """An idle session for request-reply operations (a new one if none is idle):
        the caller's alone until it :meth:`give_back` it (or :meth:`forget` it)."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self.open()

    def give_back(self, session: Session) -> None:
        """``session`` is idle again (not if it was forgotten or closed meanwhile)."""
        with self._lock:
            if session in self._open:
                self._idle.append(session)

    def forget(self, session: Session) -> None:
        """Close ``session`` (a broken one, or a stream that has ended)."""
        with self._lock:
            if session in self._open:
                self._open.remove(session)
            if session in self._idle:
                self._idle.remove(session)
        session.close()

    def close(self) -> None:
        """Close every session."""
        with self._lock:
            sessions, self._open, self._idle = self._open, [], []
        for session in sessions:
            session.close()


def _now() -> float:
    import time

    return time.perf_counter()


def _ms(started: float) -> str:
    return f"{(_now() - started) * 1000:.1f} ms"


def _say(text: str) -> None:
    import sys

    try:
        sys.stderr.write(f"orcha: {text}\n")
        sys.stderr.flush()
    except OSError:
        pass
