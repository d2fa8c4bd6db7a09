"""One service per address: an exclusive lock held for the service's whole life."""

from __future__ import annotations

import errno
import fcntl
import os
import stat

from orcha.errors import AlreadyRunningError, ConfigError


class AddressLock:
    """``flock`` on ``<socket>.lock`` beside a unix socket; the kernel releases it when the
    service dies, however it dies, so a crashed service never blocks the next one."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, address: str) -> None:
        """Lock the file (creating it 0600) and write our PID in it.

        ConfigError if the path is a symlink or anything but a regular file of this user
        with one link: the socket's directory may be shared (``/tmp``), and a file planted
        there must not get its target truncated. AlreadyRunningError if another service
        holds the lock."""
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as e:
            if e.errno != errno.ELOOP:  # ELOOP: O_NOFOLLOW met a symlink
                raise ConfigError(f"cannot create lock file {self.path}: {e.strerror}") from e
            fd, problem = -1, "is a symbolic link"
        else:
            problem = _untrusted(os.fstat(fd))
        if problem:
            if fd >= 0:
                os.close(fd)
            raise ConfigError(
                f"the lock file {self.path} {problem}; remove it, or use --address "
                "in a directory only you can write to"
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunningError(
                f"another orcha service (pid {owner}) is already listening at {address}; "
                "stop it first ('orcha shutdown', or Ctrl+C in its terminal) or use --address"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Close the file, which releases the lock (the file stays: unlinking it could
        race with the next service's lock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _untrusted(st: os.stat_result) -> str:
    """Why a lock file with status ``st`` cannot be trusted, or "" if it can."""
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_uid != os.geteuid():
        return f"is owned by another user (uid {st.st_uid})"
    if st.st_nlink != 1:
        return "has other hard links"  # a planted link to one of our files
    return ""
