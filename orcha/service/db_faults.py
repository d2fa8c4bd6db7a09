"""What a failing petition database means to its user, and what to do about it.

A damaged file (its pages or header are not SQLite's) is the only fault whose cure is
to move the database aside (or restore it): a full or failing disk, or a lock another
process holds, leave the file as it is, and the same database works again once space is
freed or the lock released. Telling them apart keeps users from throwing away a healthy
database (and its petitions) on advice meant for a damaged one.
"""

from __future__ import annotations

import os
import sqlite3

from orcha.defaults import STORE_FULL_DISK_BYTES
from orcha.errors import ConfigError, ExitCode, OrchaError, PetitionError, StateUnavailableError
from orcha.service.saving import describe


def damaged(path: str, why: str, running: bool = False) -> str:
    """The one line that refuses a damaged database and says how to recover (``running``:
    said by a running service, which must be stopped first)."""
    stop = "stop the service ('orcha shutdown'), then " if running else ""
    return (
        f"the petition database {path} is damaged ({why}); {stop}move it aside to start "
        "afresh, or restore it from a backup"
    )


def is_damage(error: BaseException) -> bool:
    """Whether ``error`` says the database file is damaged (not a database, malformed)."""
    if not isinstance(error, sqlite3.DatabaseError):
        return False
    name = getattr(error, "sqlite_errorname", "") or ""
    if name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB":
        return True
    return type(error) is sqlite3.DatabaseError and not name  # an older sqlite3 module


def _words(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def disk_full(directory: str) -> bool:
    """Whether the file system holding ``directory`` has (almost) no space left."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < STORE_FULL_DISK_BYTES


def open_refusal(path: str, error: sqlite3.Error) -> OrchaError:
    """The error ``orcha serve`` exits with when opening the database at ``path`` failed
    with ``error``: damaged (move it aside; exit 2, a state it cannot use), full or failing
    disk, or locked by another process (212: it cannot save its state now; the database
    is left as it is), or anything else (exit 2, saying what SQLite said)."""
    name = getattr(error, "sqlite_errorname", "") or ""
    words = _words(error)
    directory = os.path.dirname(path) or "."
    if is_damage(error):
        return ConfigError(damaged(path, words))
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in words:
        return StateUnavailableError(
            f"cannot use the petition database {path}: another process holds it locked "
            f"({words}); end that process (see 'fuser' or 'lsof') and start again"
        )
    if name.startswith(("SQLITE_FULL", "SQLITE_IOERR")):
        if name.startswith("SQLITE_FULL") or disk_full(directory):
            return StateUnavailableError(
                f"cannot use the petition database {path}: the disk holding it is full "
                f"({words}); free space in {directory} and start again (the database and "
                "its petitions are kept: do not move it aside)"
            )
        return StateUnavailableError(
            f"cannot use the petition database {path}: {words} (the disk is full or "
            f"failing); free space in {directory} or check the disk (dmesg), then start "
            "again (do not move the database aside: it may be intact)"
        )
    return ConfigError(
        f"cannot use the petition database {path}: {words}; check the file and its "
        "directory (permissions, disk) and start again"
    )


def read_refusal(path: str, error: sqlite3.Error) -> PetitionError:
    """What a client is told when the running service cannot read its records: exit 212
    (it cannot save its state) for a damaged database, with what to do; exit 204 (retry
    soon) for a read that may succeed later (busy, locked, I/O)."""
    if is_damage(error):
        return PetitionError(damaged(path, _words(error), running=True), ExitCode.NOT_SAVED)
    return PetitionError(
        f"the service cannot read its records now ({describe(error)}); retry soon",
        ExitCode.REFUSED,
    )
