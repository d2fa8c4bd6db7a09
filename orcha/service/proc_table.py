"""The process table as /proc tells it (the OS seam of the tracker,
:mod:`orcha.service.orphans`, and of the sweeper): one process's line, every PID, the
last PID handed out, where PIDs wrap, a petition token in an environment, a start in
clock ticks since boot; and reaping an adopted zombie."""

from __future__ import annotations

import os
import time
from typing import NamedTuple

from orcha.defaults import ENV_PETITION_TOKEN

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class ProcInfo(NamedTuple):
    """One line of the process table: what the tracker needs of a process."""

    ppid: int
    sid: int
    start: int  # clock ticks since boot: with the PID, it names one process
    state: str  # "Z" for a zombie
    rss: int  # bytes
    thread: bool = False  # a thread's ID, not a process's (/proc/TID is readable too)


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: Seconds a petition's start is moved earlier when it is turned into clock ticks since
#: boot (the wall clock may have been stepped since).
START_SLACK = 1.0


def boot_ticks(wall: float | None) -> int | None:
    """Wall-clock time ``wall`` in clock ticks since boot (how /proc/PID/stat counts a
    process's start), :data:`START_SLACK` early; None if unknown."""
    if wall is None:
        return None
    try:
        boot = time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):
        return None
    return max(0, int((boot - (time.time() - wall) - START_SLACK) * _CLK_TCK))


def list_pids() -> list[int]:
    """Every PID in /proc."""
    return list(map(int, filter(str.isdigit, os.listdir("/proc"))))


def read_last_pid() -> int | None:
    """The PID the kernel handed out last in this PID namespace (``/proc/loadavg``'s
    last field), or None if it cannot be read."""
    try:
        with open("/proc/loadavg", "rb") as f:
            return int(f.read().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def read_pid_max() -> int:
    """Where PIDs wrap around (``/proc/sys/kernel/pid_max``)."""
    try:
        with open("/proc/sys/kernel/pid_max", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 4194304  # the kernel's upper bound: a span past it is never read


def read_stat(pid: int) -> ProcInfo | None:
    """Process ``pid`` as /proc/PID/stat tells it, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain anything.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return ProcInfo(
            ppid=int(fields[1]),
            sid=int(fields[3]),
            start=int(fields[19]),
            state=fields[0].decode(),
            rss=int(fields[21]) * _PAGE,
            thread=fields[35] == b"-1",  # exit_signal: a thread has none
        )
    except (IndexError, ValueError):
        return None


def read_proc_table() -> dict[int, ProcInfo]:
    """Every process of /proc, read from /proc/PID/stat."""
    table: dict[int, ProcInfo] = {}
    for pid in list_pids():
        info = read_stat(pid)
        if info is not None:
            table[pid] = info
    return table


def read_environ(pid: int) -> bytes | None:
    """Process ``pid``'s environment as the kernel gives it (NUL-separated), or None if
    it cannot be read. It reads empty for a kernel thread, a zombie, a process with an
    empty environment, and one caught in ``exec`` before its new environment is set up."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read()
    except OSError:
        return None


def token_in(environ: bytes) -> str | None:
    """The petition token in an environment read by :func:`read_environ`, or None."""
    key = f"\0{ENV_PETITION_TOKEN}=".encode()
    environ = b"\0" + environ
    start = environ.find(key)
    if start < 0:
        return None
    start += len(key)
    end = environ.find(b"\0", start)
    return environ[start : end if end >= 0 else None].decode(errors="replace")


def read_token(pid: int) -> str | None:
    """The petition token in process ``pid``'s environment, or None."""
    environ = read_environ(pid)
    return None if environ is None else token_in(environ)


def reap(pid: int) -> None:
    """Collect the exit status of zombie child ``pid`` (and drop it)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (field 22 of
    /proc/PID/stat); with the PID it identifies a process even after PIDs are reused."""
    # Only field 22, through os.read: on every petition's start (read_stat's object and
    # the io stack cost several times the kernel's part). The command name (field 2) is
    # in parentheses and may contain anything.
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            stat = os.read(fd, 4096)
        finally:
            os.close(fd)
        return int(stat[stat.rfind(b")") + 2 :].split(None, 20)[19])
    except (OSError, IndexError, ValueError):
        return None
