"""The ``multiprocessing.managers`` registry: the typeids the service serves.

``Queue``: clients written for the original Orcha call ``ClientManager.manager.Queue()``
and send the resulting proxy inside a :class:`orcha.interfaces.Message`; the service puts
the petition's output into it. ``send`` and ``finish`` (the original API's submit and
cancel) and one typeid per operation of ``orcha.protocol.operations``: ``create`` of one
carries the operation out (its argument is the request, a dict) and serves the result,
whose ``value()`` is the reply and whose ``get_batch()`` reads what streams after it.
:class:`QueueManager` is the original API's ``manager``; the service serves the same
registry (see ``orcha.service.server``).
"""

from __future__ import annotations

import os
from multiprocessing.managers import BaseManager, BaseProxy
from typing import Any

from orcha.protocol.operations import OPERATIONS
from orcha.protocol.outputs import OutputQueue


class QueueProxy(BaseProxy):
    """Proxy to an :class:`OutputQueue`.

    Inside the service process that owns the queue, calls go straight to the object
    instead of through a socket round-trip to the service itself.
    """

    _exposed_ = ("put", "put_nowait", "get", "get_nowait", "get_batch", "qsize", "empty", "full")

    def __init__(self, *args: Any, **kwds: Any) -> None:
        super().__init__(*args, **kwds)
        self._local: OutputQueue | None = None
        self._local_pid = os.getpid()
        if kwds.get("manager_owned"):
            from multiprocessing import process

            server = getattr(process.current_process(), "_manager_server", None)
            ident = getattr(self, "_id", None)
            entry = server.id_to_local_proxy_obj.get(ident) if server else None
            if entry is not None and isinstance(entry[0], OutputQueue):
                self._local = entry[0]

    def _remote(self, method: str, *args: Any) -> Any:
        call: Any = self._callmethod  # typeshed declares it as returning None
        return call(method, args)

    def _target(self) -> OutputQueue | None:
        # After a fork (the tutorial's action starts a multiprocessing.Process) the child
        # holds a copy of the queue, so it must go through the socket like any client.
        return self._local if os.getpid() == self._local_pid else None

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        local = self._target()
        if local is not None:
            local.put(item, block, timeout)
        else:
            self._remote("put", item, block, timeout)

    def put_nowait(self, item: Any) -> None:
        self.put(item, False)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        local = self._target()
        if local is not None:
            return local.get(block, timeout)
        return self._remote("get", block, timeout)

    def get_nowait(self) -> Any:
        return self.get(False)

    def get_batch(self, timeout: float | None = None) -> list[Any]:
        """Every item queued, waiting until there is at least one (see OutputQueue)."""
        local = self._target()
        if local is not None:
            return local.get_batch(timeout)
        return list(self._remote("get_batch", timeout))

    def qsize(self) -> int:
        return int(self._remote("qsize"))

    def empty(self) -> bool:
        return bool(self._remote("empty"))

    def full(self) -> bool:
        return False


class QueueManager(BaseManager):
    """A client's handle on the service's ``multiprocessing.managers`` registry."""


#: The typeids served besides ``Queue``: the original API's and each operation's.
OPERATION_TYPEIDS = ("finish", *OPERATIONS)

QueueManager.register("Queue", callable=OutputQueue, proxytype=QueueProxy)
for _typeid in OPERATION_TYPEIDS:
    # No callable: the service carries the operation out (orcha.service.server.create).
    QueueManager.register(_typeid)


def registry() -> dict[str, Any]:
    """The typeid table the service serves (the same one clients create proxies from)."""
    return QueueManager._registry  # type: ignore[attr-defined]


def proxy_ident(obj: Any) -> str | None:
    """The server-side object id of a proxy, or None if ``obj`` is not one."""
    return getattr(obj, "_id", None) if isinstance(obj, BaseProxy) else None
