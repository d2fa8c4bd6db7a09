"""The service's ``multiprocessing.managers`` server, hardened.

The standard ``Server`` authenticates inside its single accept thread (one silent or
wrong-key client stalls or kills all intake) and polls a stop event once a second. Here
the service's event loop accepts, and each connection is authenticated in its own thread
with a deadline. A connection whose first frame is the session magic becomes an orcha
session; any other first frame is a standard manager request (the original Orcha API's
``ClientManager.manager.Queue()`` and its proxies), served as the standard server would.
"""

from __future__ import annotations

import logging
import pickle
import threading
from multiprocessing import managers, process
from typing import TYPE_CHECKING, Any

from orcha.defaults import MAX_REQUEST_BYTES, SESSION_MAGIC
from orcha.errors import AuthError
from orcha.protocol.transport import authenticate

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from orcha.service.service import Service

log = logging.getLogger("orcha.service.server")


class ManagerServer(managers.Server):
    """Serves the object registry of ``orcha.protocol.managed`` and orcha sessions."""

    # 'shutdown' is left out: only signals stop the service.
    public = ["create", "accept_connection", "get_methods", "dummy", "incref", "decref"]

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
        try:
            try:
                authenticate(conn, bytes(self.authkey))
                first = conn.recv_bytes(MAX_REQUEST_BYTES)
            except AuthError:
                log.warning("refused a client that presented a wrong key")
                return
            except (OSError, EOFError) as e:
                log.info("a client left before it was served: %s", e)
                return
            if first == SESSION_MAGIC:
                from orcha.service.session import Session

                Session(conn, self.service).serve()
            else:
                self._manager_request(conn, first)
        except SystemExit:
            pass  # serve_client() exits its thread this way on EOF
        except Exception:
            log.exception("unexpected error while serving a client; the client was dropped")
        finally:
            conn.close()

    def _manager_request(self, conn: Connection, frame: bytes) -> None:
        try:
            request = pickle.loads(frame)
            _, funcname, args, kwds = request
            if funcname not in self.public:
                raise ValueError(f"{funcname!r} is not a request this service serves")
            func = getattr(self, funcname)
        except Exception as e:
            log.warning("rejected a malformed manager request: %s", e)
            conn.send(("#ERROR", ValueError(f"malformed request: {e}")))
            return
        try:
            result = func(conn, *args, **kwds)
        except Exception as e:
            msg: tuple[str, Any] = ("#ERROR", e)
        else:
            msg = ("#RETURN", result)
        conn.send(msg)

    def purge(self, ident: str) -> None:
        """Forget a served object whose client is gone (the standard server never does)."""
        with self.mutex:
            self.id_to_refcount.pop(ident, None)
            self.id_to_obj.pop(ident, None)
            self.id_to_local_proxy_obj.pop(ident, None)

    def object_count(self) -> int:
        with self.mutex:
            return len(self.id_to_obj) - 1 + len(self.id_to_local_proxy_obj)
