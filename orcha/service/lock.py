"""One service per address: an exclusive lock held for the service's whole life."""

from __future__ import annotations

import fcntl
import os

from orcha.errors import AlreadyRunningError, ConfigError


class AddressLock:
    """``flock`` on ``<socket>.lock`` beside a unix socket; the kernel releases it when the
    service dies, however it dies, so a crashed service never blocks the next one."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, address: str) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise ConfigError(f"cannot create lock file {self.path}: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunningError(
                f"another orcha service (pid {owner}) is already listening at {address}; "
                "stop it first (Ctrl+C in its terminal) or use --address"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
