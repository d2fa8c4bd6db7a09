"""One service per address and per state directory: exclusive locks held for the
service's whole life.

Two services on one address would steal each other's clients; two on one state
directory would both take over the queue its database holds and run every petition
twice. Each lock is an ``flock`` on a file, which the kernel releases when the service
dies, however it dies: a crashed service never blocks the next one. A child forked
from the service (an original-API action) closes its copies of the locks' descriptors
at once: a lock lives as long as any descriptor of it, and such a child may outlive a
crashed service until the guard stops it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import weakref

from orcha.defaults import STATE_LOCK_NAME
from orcha.errors import AlreadyRunningError, ConfigError


class AddressLock:
    """``flock`` on ``<socket>.lock`` beside a unix socket."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, address: str) -> None:
        """Lock the file (creating it 0600) and write our PID in it.

        ConfigError if the path is a symlink or anything but a regular file of this user
        with one link: the socket's directory may be shared (``/tmp``), and a file planted
        there must not get its target truncated. AlreadyRunningError if another service
        holds the lock (saying how to stop it, even when its socket was deleted)."""
        fd = _open_trusted(self.path, ", or use --address in a directory only you can write to")
        owner = _lock_or_owner(fd)
        if owner is not None:
            pid = owner[0] if owner and owner[0] else "unknown"
            socket = self.path.removesuffix(".lock")
            if not os.path.exists(socket):
                raise AlreadyRunningError(_unreachable(pid, socket))
            raise AlreadyRunningError(
                f"another orcha service (pid {pid}) is already listening at {address}; "
                "stop it first ('orcha shutdown', or Ctrl+C in its terminal) or use --address"
            )
        self._fd = _claim(fd, [str(os.getpid())])
        _HELD.add(self)

    def release(self) -> None:
        """Close the file, which releases the lock (the file stays: unlinking it could
        race with the next service's lock)."""
        _HELD.discard(self)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class StateLock:
    """``flock`` on ``orcha.lock`` in the state directory, taken before the database is
    opened and held until the service has closed it: one service per database, whatever
    address each listens at, and even when the runtime directory holding the address
    lock was deleted (logind removes ``$XDG_RUNTIME_DIR`` at a user's last logout)."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, STATE_LOCK_NAME)
        self._fd: int | None = None

    def acquire(self, address: str, socket: str | None) -> None:
        """Lock the file (creating it 0600) and write our PID, address and socket path
        (``socket``: None for a TCP address) in it, for the refusal of the next one.

        ConfigError if the file cannot be trusted (see :class:`AddressLock`).
        AlreadyRunningError if another service holds it: the message names its PID and
        address, and says to stop it with ``kill`` when its socket is gone (nothing
        else reaches it then)."""
        fd = _open_trusted(self.path, ", or give it another ORCHA_STATE_DIR")
        owner = _lock_or_owner(fd)
        if owner is not None:
            pid = owner[0] if owner and owner[0] else "unknown"
            where = owner[1] if len(owner) > 1 and owner[1] else "an unknown address"
            path = owner[2] if len(owner) > 2 else ""
            if path and not os.path.exists(path):
                raise AlreadyRunningError(_unreachable(pid, path))
            raise AlreadyRunningError(
                f"another orcha service (pid {pid}, listening at {where}) already uses the "
                f"state directory {self.state_dir}; stop it first ('orcha shutdown "
                f"--address {where}') or give this one another ORCHA_STATE_DIR"
            )
        self._fd = _claim(fd, [str(os.getpid()), address, socket or ""])
        _HELD.add(self)

    def release(self) -> None:
        """Close the file, which releases the lock (the file stays, as AddressLock's)."""
        _HELD.discard(self)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


#: The locks this process holds (see :func:`_close_in_child`).
_HELD: weakref.WeakSet[AddressLock | StateLock] = weakref.WeakSet()


def _close_in_child() -> None:
    """In a forked child: close our copies of the held locks' descriptors. Closing, not
    ``LOCK_UN``: the lock stays the parent's (an unlock through any copy would drop it)."""
    for held in list(_HELD):
        fd, held._fd = held._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


def _unreachable(pid: str, socket: str) -> str:
    """The refusal when the service holding a lock lost its socket: no client reaches it,
    so 'orcha shutdown' cannot stop it."""
    return (
        f"an orcha service (pid {pid}) is still running, but its socket {socket} is gone "
        "(deleted with its directory?), so no client can reach it; stop "
        f"it with 'kill {pid}' (it stops cleanly on SIGTERM and keeps its queued "
        "petitions), then start again"
    )


def _open_trusted(path: str, alternative: str = "") -> int:
    """Open (creating 0600) the lock file ``path``; ConfigError (saying to remove it, or
    ``alternative``) if it is a symlink or anything but a regular file of this user with
    one link."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        if e.errno != errno.ELOOP:  # ELOOP: O_NOFOLLOW met a symlink
            verb = "open" if os.path.lexists(path) else "create"
            raise ConfigError(
                f"cannot {verb} the lock file {path}: {e.strerror}; the service must be "
                f"able to write in {os.path.dirname(path) or '.'} (check its permissions "
                f"and that its disk is not mounted read-only){alternative}"
            ) from e
        fd, problem = -1, "is a symbolic link"
    else:
        problem = _untrusted(os.fstat(fd))
    if problem:
        if fd >= 0:
            os.close(fd)
        raise ConfigError(f"the lock file {path} {problem}; remove it{alternative}")
    return fd


def _lock_or_owner(fd: int) -> list[str] | None:
    """Lock ``fd``: None if taken; else (``fd`` closed) the lines its holder wrote."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.read(fd, 4096).decode(errors="replace")
        os.close(fd)
        return [line.strip() for line in text.splitlines()]
    return None


def _claim(fd: int, lines: list[str]) -> int:
    """Write ``lines`` in the locked file ``fd`` in place of what was there.

    Over the old text first, then cut to length: on a full disk the old text's block is
    still ours to overwrite. What cannot be written is only missing from the refusal of
    the next service (it says "pid unknown"): the lock is held all the same."""
    data = "".join(f"{line}\n" for line in lines).encode()
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    except OSError:
        pass
    return fd


def _untrusted(st: os.stat_result) -> str:
    """Why a lock file with status ``st`` cannot be trusted, or "" if it can."""
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_uid != os.geteuid():
        return f"is owned by another user (uid {st.st_uid})"
    if st.st_nlink != 1:
        return "has other hard links"  # a planted link to one of our files
    return ""
