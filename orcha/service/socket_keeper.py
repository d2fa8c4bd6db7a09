"""SocketKeeper: the service's unix socket, made again if it was deleted.

logind removes ``$XDG_RUNTIME_DIR`` at a user's last logout and tmp cleaners remove old
files: the service runs on, but no client can reach it, and only ``kill`` can stop it.
Every SOCKET_CHECK_SECONDS the daemon's loop asks the keeper, which looks (one ``stat``)
whether the socket it bound is still at its path; if nothing is there, it takes the
address lock again (the old one went with the deleted directory) and listens anew (a
try that fails is tried again at the next look). If another socket is at the path, the
keeper leaves it to whoever made it and stops looking: the state lock
(orcha.service.lock.StateLock) still keeps this service's petitions its own.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from orcha.defaults import SOCKET_CHECK_SECONDS
from orcha.errors import OrchaError
from orcha.protocol import transport
from orcha.service.lock import AddressLock
from orcha.settings import Settings, ensure_runtime_dir

log = logging.getLogger("orcha.service")


class SocketKeeper:
    """Holds the listening socket of a unix address and makes it again if deleted."""

    def __init__(
        self,
        settings: Settings,
        listener: Any,
        clock: Callable[[], float] = time.monotonic,
        interval: float = SOCKET_CHECK_SECONDS,
    ) -> None:
        address = settings.address
        assert address.is_unix and address.path is not None
        self.settings = settings
        self.bound = address.path
        self.path: str | None = address.path  # None: no longer looked at
        self.listener = listener
        self.clock = clock
        self.interval = interval
        self.next_check = clock() + interval
        self._locks: list[AddressLock] = []  # taken again: released by close()
        self._failing = False  # the last try to make it again failed (said once)
        self._inode = _inode(address.path)

    def wait(self) -> float | None:
        """Seconds until the next look (None: never again)."""
        if self.path is None:
            return None
        return max(0.0, self.next_check - self.clock())

    def check(self) -> Any | None:
        """If due, look at the socket; return the new listener if it was made again (the
        caller serves it instead of the old one, and closes that), else None."""
        if self.path is None or self.clock() < self.next_check:
            return None
        self.next_check = self.clock() + self.interval
        path = self.path
        inode = _inode(path)
        if inode == self._inode:
            return None
        if inode is not None:  # another socket there: not ours to replace
            log.warning("the socket %s was replaced by another; no longer looking at it", path)
            self.path = None
            return None
        try:
            if os.path.dirname(path) == os.path.abspath(self.settings.runtime_dir):
                ensure_runtime_dir(self.settings)
            lock = AddressLock(path + ".lock")
            lock.acquire(str(self.settings.address))
            try:
                listener = transport.listen(self.settings.address)
            except BaseException:
                lock.release()  # the next try takes it again
                raise
            self._locks.append(lock)
        except (OrchaError, OSError) as e:
            # E.g. a second 'orcha serve' holds the new address lock for the moment it
            # takes to be refused by the state lock: try again at the next look.
            if not self._failing:
                log.warning("the socket %s was deleted and cannot be made again yet: %s", path, e)
            self._failing = True
            return None
        self._failing = False
        self.listener = listener
        self._inode = _inode(path)
        log.warning("the socket %s was deleted; listening there again", path)
        return listener

    def close(self) -> None:
        """At the service's end: remove its socket (only if it is still this service's: a
        socket another service made there is left alone), close the listener and release
        the locks taken again."""
        if _inode(self.bound) == self._inode:
            try:
                os.unlink(self.bound)
            except OSError:
                pass
        _close(self.listener)
        for lock in self._locks:
            lock.release()


def _inode(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _close(listener: Any) -> None:
    if listener.fileno() >= 0:
        listener.close()
