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
the service's event loop accepts, and each connection is authenticated in its own thread
with a deadline, then served by a :class:`~orcha.service.session.Session`.
"""

from __future__ import annotations

import logging
import threading
from multiprocessing import managers, process
from typing import TYPE_CHECKING, Any

from orcha.errors import AuthError, ExitCode, PetitionError
from orcha.protocol.transport import authenticate

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from orcha.service.service import Service

log = logging.getLogger("orcha.service.server")


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

    def install(self) -> None:
        """Make proxies unpickled in this process recognise this server as their owner."""
        process.current_process()._manager_server = self  # type: ignore[attr-defined]

    def handle_connection(self, conn: Connection) -> None:
        """Thread body for one accepted connection. Never raises."""
        from orcha.service.session import Session

        try:
            try:
                authenticate(conn, bytes(self.authkey))
            except AuthError:
                log.warning("refused a client that presented a wrong key")
                return
            except (OSError, EOFError) as e:
                log.info("a client left before it was served: %s", e)
                return
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
