"""Session: a client's connection to the service, speaking ``multiprocessing.managers``.

One authenticated connection that stays open (closing it cancels what it submitted
attached). Requests are the managers protocol's (``orcha.protocol.wire``): an operation
is ``call(name, request)`` on the server, one round trip; what streams after a reply is
read from the served queue the reply names, with ``get_batch``. Answers come back in the
order of the requests, so requests may be pipelined: :meth:`Session.send` queues one,
:meth:`Session.recv` reads the next answer.
"""

from __future__ import annotations

from orcha.errors import WIRE_ERRORS, AuthError, ExitCode, LostServiceError, PetitionError
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
    are read and dropped by :meth:`recv`.
    """

    def __init__(self, conn: Connection, trace: bool = False) -> None:
        """``trace``: say on stderr how long each :meth:`call` took (``-vv``)."""
        self.conn = conn
        self.trace = trace
        self._skip: list[bool] = []  # per request in flight: drop its answer?

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
        self._skip.append(skip)  # first: another thread may read its answer at once
        try:
            self.conn.send_bytes(request_frame(ident, method, args))
        except OSError as e:
            raise LostServiceError(str(e)) from e

    def recv(self, wait: bool = True, views: bool = False) -> Any:
        """The value of the next answer (those of ``skip`` requests are dropped); the
        PetitionError it stands for if it is a refusal; LostServiceError if the
        connection broke. Without ``wait``, :data:`NOTHING` once the answers that have
        arrived were all dropped (a caller that selects on the connection must not wait
        here for an answer that may come much later). With ``views``, a batch of output
        chunks holds views into the connection's buffer (not copies): valid until the
        next call."""
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
