"""The service's ``multiprocessing.managers`` server, hardened.

Its registry (``orcha.protocol.managed``) holds the original API's typeids (``Queue``,
``send``, ``finish``) and one typeid per operation of ``orcha.protocol.operations``, so a
plain ``BaseManager`` program with the key can use every operation (``create`` of the
typeid carries it out; see :func:`orcha.service.session.serve_call`). Beside the standard
methods it serves ``call(name, request)``: the operation carried out and its reply
returned in one round trip, on a connection that stays open. That is how orcha's own
clients talk (one connection per client, whose end cancels what it submitted attached);
``create`` would take a connection per operation and a proxy per reply.

The standard ``Server`` authenticates inside its single accept thread (one silent or
wrong-key client stalls or kills all intake) and polls a stop event once a second. Here
the service's event loop accepts (:meth:`ManagerServer.accept_pending`), and each
connection is authenticated in its own thread, then served by a
:class:`~orcha.service.session.Session`. Until it is authenticated a connection belongs
to the :class:`Intake`, which bounds what keyless clients can hold: a deadline on the
whole handshake, a cap on how many are pending, and a throttled log.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing import managers, process
from typing import TYPE_CHECKING, Any

from orcha.defaults import (
    ACCEPT_BACKOFF,
    HANDSHAKE_TIMEOUT,
    MAX_UNAUTHENTICATED,
    REFUSAL_LOG_INTERVAL,
)
from orcha.errors import AuthError, ExitCode, PetitionError
from orcha.protocol import transport
from orcha.protocol.transport import authenticate

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from orcha.service.service import Service

log = logging.getLogger("orcha.service.server")

#: Why the intake closed connections, as its log lines say.
TOO_MANY = "too many unauthenticated connections"
TOO_SLOW = "handshake not finished in time"
NO_THREAD = "no thread could be started for it"
WRONG_KEY = "wrong key"
LEFT = "left before authenticating"
NO_DESCRIPTORS = "the service has no file descriptor left"


class Pending:
    """One accepted connection not yet authenticated."""

    __slots__ = ("challenge", "conn", "deadline", "dropped")

    def __init__(self, conn: Connection, deadline: float, challenge: bytes | None = None) -> None:
        self.conn = conn
        self.deadline = deadline
        self.challenge = challenge  # the message already sent to it, if any
        self.dropped = False  # closed by the intake (its thread is not to log it)


def _start_thread(target: Callable[[], None]) -> None:
    threading.Thread(target=target, name="client", daemon=True).start()


def _hang_up(conn: Connection) -> None:
    """Shut the connection down so a thread blocked reading it returns at once (the
    thread closes it). Without a new descriptor: there may be none left."""
    sock = socket.socket(fileno=conn.fileno())
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the peer is gone already
    finally:
        sock.detach()


class Intake:
    """The connections accepted and not yet authenticated (thread-safe).

    Each gets a thread running ``handle(conn, pending)``, which must call :meth:`done`
    once the handshake is over (either way) and before it closes the connection. The
    intake guarantees:

    * at most ``limit`` are pending: admitting one more first hangs up the oldest;
    * each is hung up ``deadline`` seconds after it was accepted if its handshake has not
      ended (the whole handshake, however slowly its bytes come);
    * a thread that cannot be started costs the connection only (it is closed);
    * what it closes is logged at most once every ``log_interval`` seconds, with counts.

    ``clock`` and ``start_thread`` are seams for tests; with ``reaper`` False nobody
    enforces deadlines but calls to :meth:`expire`.
    """

    def __init__(
        self,
        handle: Callable[[Connection, Pending], None],
        limit: int = MAX_UNAUTHENTICATED,
        deadline: float = HANDSHAKE_TIMEOUT,
        log_interval: float = REFUSAL_LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        start_thread: Callable[[Callable[[], None]], None] = _start_thread,
        hang_up: Callable[[Connection], None] = _hang_up,
        reaper: bool = True,
    ) -> None:
        self._handle = handle
        self.limit = limit
        self.deadline = deadline
        self.log_interval = log_interval
        self._clock = clock
        self._start_thread = start_thread
        self._hang_up = hang_up
        self._pending: dict[int, Pending] = {}  # by id, oldest first
        self._closed: Counter[str] = Counter()  # since the last log line
        self._logged_at: float | None = None
        self._cond = threading.Condition()
        self._reaper = reaper
        self._reaper_started = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._pending)

    def admit(self, conn: Connection, challenge: bytes | None = None) -> None:
        """Take an accepted connection (``challenge``: the message already sent to it):
        its handshake runs in a thread of its own."""
        with self._cond:
            self._expire()
            while len(self._pending) >= self.limit:
                self._drop(next(iter(self._pending.values())), TOO_MANY)
            pending = Pending(conn, self._clock() + self.deadline, challenge)
            self._pending[id(pending)] = pending
            self._cond.notify()
        try:
            self._start_thread(lambda: self._handle(conn, pending))
        except Exception as e:  # RuntimeError: can't start new thread (nproc, memory)
            with self._cond:
                self._pending.pop(id(pending), None)
                self._note(NO_THREAD, e)
            conn.close()
            return
        self._start_reaper()

    def done(self, pending: Pending, outcome: str | None = None) -> None:
        """The handshake of ``pending`` is over; ``outcome`` says why it failed (None:
        authenticated, or already closed by the intake)."""
        with self._cond:
            self._pending.pop(id(pending), None)
            if outcome is not None and not pending.dropped:
                self._note(outcome)

    def note(self, reason: str, error: BaseException | None = None) -> None:
        """Count a connection closed before authentication (logged, throttled)."""
        with self._cond:
            self._note(reason, error)

    def drop_oldest(self, reason: str) -> bool:
        """Hang up the oldest pending connection; False if none is pending."""
        with self._cond:
            if not self._pending:
                return False
            self._drop(next(iter(self._pending.values())), reason)
            return True

    def expire(self) -> None:
        """Hang up every connection whose handshake is past its deadline."""
        with self._cond:
            self._expire()

    # -- under the lock -----------------------------------------------------------------
    def _expire(self) -> None:
        now = self._clock()
        for pending in list(self._pending.values()):
            if pending.deadline > now:
                break  # oldest first: the later ones are not due either
            self._drop(pending, TOO_SLOW)
        if self._closed and self._due(now):
            self._log(now)

    def _drop(self, pending: Pending, reason: str) -> None:
        # Under the lock and while it is pending, so its thread has not closed the
        # connection (done() comes first): the descriptor is still this connection's.
        del self._pending[id(pending)]
        pending.dropped = True
        self._hang_up(pending.conn)
        self._note(reason)

    def _note(self, reason: str, error: BaseException | None = None) -> None:
        self._closed[f"{reason} ({error})" if error is not None else reason] += 1
        now = self._clock()
        if self._due(now):
            self._log(now)

    def _due(self, now: float) -> bool:
        return self._logged_at is None or now - self._logged_at >= self.log_interval

    def _log(self, now: float) -> None:
        total = sum(self._closed.values())
        why = ", ".join(f"{n} {reason}" for reason, n in self._closed.most_common())
        # Clients that only looked (a second 'orcha serve' probing the socket) are news
        # only when something else happened too.
        level = logging.INFO if set(self._closed) == {LEFT} else logging.WARNING
        if self._logged_at is None:
            log.log(level, "closed a connection before authentication: %s (more are counted, "
                    "logged at most every %g s)", why, self.log_interval)  # fmt: skip
        else:
            log.log(level, "closed %d connection%s before authentication in the last %.0f s: %s",
                    total, "" if total == 1 else "s", now - self._logged_at, why)  # fmt: skip
        self._closed.clear()
        self._logged_at = now

    # -- the reaper ---------------------------------------------------------------------
    def _start_reaper(self) -> None:
        with self._cond:
            if not self._reaper or self._reaper_started:
                return
            self._reaper_started = True
        try:
            threading.Thread(target=self._reap, name="intake", daemon=True).start()
        except RuntimeError as e:  # admit() still expires overdue ones: retry later
            with self._cond:
                self._reaper_started = False
                self._note(NO_THREAD, e)

    def _reap(self) -> None:
        """Thread body: hang up overdue handshakes, flush counts due to be logged."""
        with self._cond:
            while True:
                self._expire()
                waits = [p.deadline for p in list(self._pending.values())[:1]]
                if self._closed and self._logged_at is not None:
                    waits.append(self._logged_at + self.log_interval)
                timeout = max(0.01, min(waits) - self._clock()) if waits else None
                self._cond.wait(timeout)


class ManagerServer(managers.Server):
    """Serves the registry of ``orcha.protocol.managed`` and ``call``."""

    # 'shutdown' is left out: only signals stop the service.
    public = ["create", "call", "accept_connection", "get_methods", "dummy", "incref",
              "decref", "number_of_objects"]  # fmt: skip

    def __init__(
        self, registry: dict[str, Any], address: Any, authkey: bytes, service: Service
    ) -> None:
        # Not calling super().__init__: it would bind a Listener of its own.
        self.registry = registry
        self.authkey = process.AuthenticationString(authkey)  # type: ignore[attr-defined]
        self.address = address
        self.id_to_obj: dict[str, Any] = {"0": (None, ())}
        self.id_to_refcount: dict[str, int] = {}
        self.id_to_local_proxy_obj: dict[str, Any] = {}
        self.mutex = threading.Lock()
        self.stop_event = threading.Event()
        self.service = service

        self.intake = Intake(self.handle_connection)

    def accept_pending(self, listener: Any) -> None:
        """Accept every connection waiting at ``listener`` into the intake (the event
        loop calls this when it is readable). Never raises.

        Out of descriptors (EMFILE, ENFILE), the oldest unauthenticated connection is
        hung up to make room and accepting pauses ACCEPT_BACKOFF seconds, so the loop
        neither spins nor logs a line per try. At most MAX_UNAUTHENTICATED are taken per
        call, so a flood cannot keep the loop from its signals and timers."""
        for _ in range(self.intake.limit):
            try:
                conn = transport.accept(listener)
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.intake.drop_oldest(NO_DESCRIPTORS)
                    self.intake.note("accept failed", e)
                    time.sleep(ACCEPT_BACKOFF)
                else:  # e.g. the client reset before it was accepted
                    self.intake.note("accept failed", e)
                return
            if conn is None:
                return
            # The challenge goes out now, not from the connection's thread: the client
            # works out its answer while that thread starts.
            try:
                message = transport.challenge(conn)
            except OSError:
                self.intake.note(LEFT)  # it went away at once (a probe)
                conn.close()
                continue
            self.intake.admit(conn, message)

    def install(self) -> None:
        """Make proxies unpickled in this process recognise this server as their owner."""
        process.current_process()._manager_server = self  # type: ignore[attr-defined]

    def handle_connection(self, conn: Connection, pending: Pending) -> None:
        """Thread body for one accepted connection (of the intake). Never raises."""
        from orcha.service.session import Session

        try:
            try:
                authenticate(conn, bytes(self.authkey), pending.challenge)
            except AuthError:
                self.intake.done(pending, WRONG_KEY)
                return
            except (OSError, EOFError):
                self.intake.done(pending, LEFT)
                return
            self.intake.done(pending)
            Session(conn, self).serve()
        except Exception:
            log.exception("unexpected error while serving a client; the client was dropped")
        finally:
            conn.close()

    # -- the registry ----------------------------------------------------------------------
    def create(
        self, c: Any, typeid: str, /, *args: Any, **kwds: Any
    ) -> tuple[str, tuple[str, ...]]:
        """A new served object of ``typeid``: for an operation, the served result of
        carrying it out (``orcha.service.streams.Call``)."""
        if typeid not in self.registry:
            raise ValueError(f"{typeid!r} is not a typeid this service serves")
        if self.registry[typeid][0] is not None:
            created: tuple[str, tuple[str, ...]] = super().create(c, typeid, *args, **kwds)
            return created
        from orcha.service.session import refusal, serve_call

        name, raw = typeid, (args[0] if args else kwds)
        if typeid == "finish":  # the original API: finish(message or its ID)
            name, raw = "cancel", {"id": str(getattr(raw, "id", raw))}
        try:
            obj = serve_call(self, name, raw)
        except PetitionError as e:
            raise refusal(e) from None
        ident = self.serve(obj)
        return ident, tuple(obj._exposed_)

    def serve(self, obj: Any) -> str:
        """Serve ``obj`` (its ``_exposed_`` methods) under a new id, held once."""
        ident = f"{id(obj):x}"
        with self.mutex:
            self.id_to_obj[ident] = (obj, set(obj._exposed_), None)
            self.id_to_refcount[ident] = 1
        return ident

    def lookup(self, ident: str) -> tuple[Any, set[str]]:
        """The served object with id ``ident`` and its exposed methods."""
        with self.mutex:
            entry = self.id_to_obj.get(ident) or self.id_to_local_proxy_obj.get(ident)
        if entry is None or entry[0] is None:
            raise PetitionError(f"no served object has id {ident!r}", ExitCode.REFUSED)
        return entry[0], entry[1]

    def release(self, ident: str | None) -> None:
        """Drop the hold :meth:`serve` took (the object goes when no proxy holds it)."""
        if ident is None:
            return
        try:
            self.decref(None, ident)
        except (KeyError, AssertionError):
            pass  # already gone

    def decref(self, c: Any, ident: str) -> None:
        """The standard decref, then an object that wants to know is told it is gone."""
        with self.mutex:
            entry = self.id_to_obj.get(ident)
        super().decref(c, ident)
        with self.mutex:
            gone = ident not in self.id_to_obj
        released = getattr(entry[0], "released", None) if entry and gone else None
        if released is not None:
            released()

    def purge(self, ident: str) -> None:
        """Forget a served object whose client is gone (the standard server never does)."""
        with self.mutex:
            self.id_to_refcount.pop(ident, None)
            self.id_to_obj.pop(ident, None)
            self.id_to_local_proxy_obj.pop(ident, None)

    def object_count(self) -> int:
        with self.mutex:
            return len(self.id_to_obj) - 1 + len(self.id_to_local_proxy_obj)
