"""The guard: a small parent process that outlives the service and stops what it leaves.

``orcha serve`` forks before it loads plugins or opens sockets. The original process
stays behind as the *guard*; its child becomes the service. The guard:

* is a child subreaper (``PR_SET_CHILD_SUBREAPER``), so every process that loses its
  parent below it (a ``setsid``'d daemon, a double fork, one that cleared its environment
  with ``env -i``) becomes its child instead of init's, and stays findable;
* forwards INT, TERM, HUP, QUIT, USR1, USR2 and ABRT to the service (its handlers only
  record the signal; its loop forwards it), so ``kill``, Ctrl+C and systemd reach the
  service through the PID they know;
* reaps every child it gets, the service's orphans included, so none stays a zombie;
* when the service ends, however it ends (a clean stop, a crash, ``kill -9``), stops
  every process still below it: SIGTERM (with SIGCONT), the grace period, SIGKILL; then
  exits with the service's exit status (128+N if a signal N killed it);
* SIGKILLs a service that has not ended ``grace + GUARD_STOP_MARGIN`` seconds after a
  forwarded stop signal;
* tells a service that exits on its own path (it writes to a pipe on its way out) from
  one that died unexpectedly (a plugin's ``os._exit(7)``): for the latter it logs one
  line with the code and exits 1 (an internal error), not the plugin's arbitrary code.

The service runs in its own process group (a terminal's Ctrl+C reaches the guard alone,
which forwards it once, not twice) with ``PR_SET_PDEATHSIG`` = SIGTERM: if the guard is
killed, the service stops as on ``orcha shutdown``, stopping its petitions.

Every OS effect goes through :class:`GuardOS`, which tests replace. ``ORCHA_NO_GUARD=1``
(or a system without ``prctl``) runs the service in the one process, as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from orcha.defaults import ENV_NO_GUARD, GUARD_STOP_MARGIN
from orcha.errors import ExitCode

log = logging.getLogger("orcha.service.guard")

#: Signals the guard passes on to the service.
FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGABRT,
)

#: Forwarded signals that ask the service to stop: they start the stop deadline.
STOPPING = (signal.SIGINT, signal.SIGTERM)  # SIGHUP is forwarded too: the service reloads

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36

#: Seconds between looks at what is left while a sweep waits out the grace period.
_SWEEP_POLL = 0.05

#: Rounds of SIGKILL a sweep tries before it gives up on what survives (it is logged).
_KILL_ROUNDS = 10


def _prctl(option: int, arg: int) -> bool:
    """``prctl(option, arg)``; False where there is no prctl or it fails."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(option, arg, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class GuardOS:
    """The guard's OS seam: forking, signals, waiting, and finding its descendants."""

    def __init__(self) -> None:
        self._pending: list[int] = []
        self._wake_r = -1
        self._wake_w = -1
        # The service writes a byte here on its way out (see announce_exit).
        self._exit_r = -1
        self._exit_w = -1

    # -- set-up ------------------------------------------------------------------------
    def set_subreaper(self, on: bool = True) -> bool:
        return _prctl(_PR_SET_CHILD_SUBREAPER, int(on))

    def block_signals(self) -> set[int]:
        """Block the forwarded signals and SIGCHLD; returns the mask before."""
        return set(signal.pthread_sigmask(signal.SIG_BLOCK, (*FORWARDED, signal.SIGCHLD)))

    def restore_signals(self, mask: Iterable[int]) -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, list(mask))

    def fork(self) -> int:
        for stream in (sys.stdout, sys.stderr):  # else both would write what is buffered
            with contextlib.suppress(Exception):
                stream.flush()
        return os.fork()

    def open_exit_pipe(self) -> None:
        """Before the fork: the pipe the service announces its own exit through."""
        with contextlib.suppress(OSError):
            self._exit_r, self._exit_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def keep_exit_pipe(self, service: bool) -> None:
        """After the fork: each side closes the end it does not use."""
        fd = self._exit_r if service else self._exit_w
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
        if service:
            self._exit_r = -1
        else:
            self._exit_w = -1

    def announce_exit(self) -> None:
        """In the service, on its way out: it exits on its own path (a stop, an error it
        reported), not cut short (``os._exit`` in a plugin)."""
        if self._exit_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._exit_w, b"x")

    def exit_announced(self) -> bool:
        """In the guard, once the service has ended: whether it announced its exit (True
        when there is no pipe to tell: nothing is known against it)."""
        if self._exit_r < 0:
            return True
        try:
            return bool(os.read(self._exit_r, 1))
        except OSError:  # EAGAIN: nothing written
            return False

    def become_service(self, guard_pid: int) -> None:
        """In the forked child: own process group, SIGTERM when the guard dies."""
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != guard_pid:  # the guard died before PDEATHSIG was set
            os.kill(os.getpid(), signal.SIGTERM)

    def catch_signals(self) -> None:
        """In the guard: record forwarded signals, wake :meth:`pause` on any of them and
        on SIGCHLD."""
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        for sig in FORWARDED:
            if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                continue  # nohup: the terminal's hang-up must not reach the service
            signal.signal(sig, self._record)
        signal.signal(signal.SIGCHLD, self._nothing)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

    def _record(self, signum: int, frame: object) -> None:
        # Only records: the loop forwards it (logging here could deadlock).
        self._pending.append(signum)

    def _nothing(self, signum: int, frame: object) -> None:
        pass  # a handler (not SIG_DFL, which ignores SIGCHLD) so the wakeup fd is written

    # -- the loop's view -----------------------------------------------------------------
    def take_signals(self) -> list[int]:
        taken, self._pending[:] = list(self._pending), []
        return taken

    def pause(self, timeout: float | None) -> None:
        """Sleep until a signal comes (or ``timeout`` seconds)."""
        if self._wake_r < 0:
            time.sleep(timeout or 0)
            return
        with contextlib.suppress(InterruptedError):
            select.select([self._wake_r], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 256):
                pass

    def reap(self) -> list[tuple[int, int]]:
        """``(pid, wait status)`` of every child that has ended, without blocking."""
        ended: list[tuple[int, int]] = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return ended
            if pid == 0:
                return ended
            ended.append((pid, status))

    def kill(self, pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except OSError as e:
            if e.errno != errno.ESRCH:
                log.warning("cannot send signal %d to %d: %s", sig, pid, e.strerror)

    def descendants(self) -> list[int]:
        """PIDs of every live (not zombie) process below this one."""
        return descendants_of(os.getpid(), _process_table())

    def monotonic(self) -> float:
        return time.monotonic()


def _process_table() -> dict[int, tuple[int, str]]:
    """``{pid: (parent pid, state letter)}`` of every process in /proc."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name (field 2) is in parentheses and may contain anything.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1:
            table[int(name)] = (int(fields[1]), fields[0].decode())
    return table


def descendants_of(root: int, table: Mapping[int, tuple[int, str]]) -> list[int]:
    """Live (not zombie) processes below ``root`` in ``table`` (see :func:`_process_table`),
    parents before their children."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(children.get(root, ()))
    while todo:
        pid = todo.pop(0)
        if table[pid][1] not in ("Z", "X"):
            found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def exit_code(status: int) -> int:
    """The shell's code for a wait status: the exit code, or 128+N if signal N killed it."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class Guard:
    """The guard's loop over a :class:`GuardOS`; see the module's docstring."""

    def __init__(self, osx: GuardOS, service_pid: int, grace: float) -> None:
        self.os = osx
        self.service_pid = service_pid
        self.grace = grace
        self.status: int | None = None  # the service's wait status, once it has ended
        self._stop_deadline: float | None = None
        self._forced = False  # a stop signal came while sweeping: KILL at once

    def run(self) -> int:
        """Supervise until the service has ended and what it left is stopped; returns
        the exit code for ``orcha serve``."""
        while self.status is None:
            self._forward()
            self._reap()
            if self.status is not None:
                break
            timeout = None
            if self._stop_deadline is not None:
                timeout = self._stop_deadline - self.os.monotonic()
                if timeout <= 0:
                    log.warning(
                        "the service (pid %d) did not stop within %.0f s; killing it",
                        self.service_pid, self.grace + GUARD_STOP_MARGIN,
                    )  # fmt: skip
                    self.os.kill(self.service_pid, signal.SIGKILL)
                    self._stop_deadline = None
                    continue
            self.os.pause(timeout)
        code = exit_code(self.status)
        if os.WIFSIGNALED(self.status):
            log.warning(
                "the service (pid %d) was killed by signal %d; stopping what it left running",
                self.service_pid, os.WTERMSIG(self.status),
            )  # fmt: skip
        elif not self.os.exit_announced():
            # Not its own exit: something in its process (a plugin's os._exit) ended it.
            # Its code means nothing to orcha's users; the documented internal error does.
            log.error(
                "the service (pid %d) died unexpectedly with exit code %d (not through its "
                "own stop: a plugin may have called os._exit); stopping what it left "
                "running; exiting %d",
                self.service_pid, code, int(ExitCode.FAILED),
            )  # fmt: skip
            code = int(ExitCode.FAILED)
        stopped = self.sweep()
        if stopped:
            log.warning("stopped %d process(es) the service left running", stopped)
        return code

    def _forward(self) -> None:
        for sig in self.os.take_signals():
            if self.status is not None:
                if sig in STOPPING:
                    self._forced = True
                continue
            self.os.kill(self.service_pid, sig)
            if sig in STOPPING and self._stop_deadline is None:
                self._stop_deadline = self.os.monotonic() + self.grace + GUARD_STOP_MARGIN

    def _reap(self) -> None:
        for pid, status in self.os.reap():
            if pid == self.service_pid:
                self.status = status

    def sweep(self) -> int:
        """Stop every process below the guard: SIGTERM and SIGCONT, wait up to the grace
        period while they end, then SIGKILL what is left (looking again each round, so
        what forked meanwhile dies too). Returns how many processes were signalled."""
        seen: set[int] = set()
        left = self.os.descendants()
        if not left:
            return 0
        seen.update(left)
        for pid in left:
            self.os.kill(pid, signal.SIGTERM)
            self.os.kill(pid, signal.SIGCONT)  # a stopped process cannot act on TERM
        deadline = self.os.monotonic() + self.grace
        while left and not self._forced and self.os.monotonic() < deadline:
            self.os.pause(min(_SWEEP_POLL, max(0.0, deadline - self.os.monotonic())))
            self._reap()
            self._forward()
            left = self.os.descendants()
        for _ in range(_KILL_ROUNDS):
            left = self.os.descendants()
            if not left:
                break
            seen.update(left)
            for pid in left:
                self.os.kill(pid, signal.SIGKILL)
            self.os.pause(_SWEEP_POLL)
            self._reap()
        else:
            left = self.os.descendants()
            if left:
                log.warning("processes %s survived SIGKILL", sorted(left))
        self._reap()
        return len(seen)


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``orcha serve`` runs under a guard (not with ``ORCHA_NO_GUARD=1``)."""
    env = os.environ if environ is None else environ
    return env.get(ENV_NO_GUARD, "") in ("", "0")


def serve_guarded(
    grace: float, serve: Callable[[int | None], int], osx: GuardOS | None = None
) -> int:
    """Run ``serve(guard_pid)`` in a child under a guard (this process); returns the exit
    code in both: the guard's (the service's status) here, ``serve``'s in the child.

    Without a guard (``ORCHA_NO_GUARD=1``, no child subreaper on this system, or other
    threads already running here, which a forked child would not have) it calls
    ``serve(None)`` in this process.
    """
    osx = osx or GuardOS()
    if not enabled() or threading.active_count() > 1 or not osx.set_subreaper():
        return serve(None)
    guard_pid = os.getpid()
    mask = osx.block_signals()  # none may come between the fork and the handlers
    osx.open_exit_pipe()
    try:
        pid = osx.fork()
    except OSError as e:  # e.g. EAGAIN under a process limit: serve all the same
        osx.restore_signals(mask)
        osx.set_subreaper(False)  # nobody here would reap the orphans
        osx.keep_exit_pipe(service=True)  # both ends closed: no guard to tell
        osx.keep_exit_pipe(service=False)
        log.warning("cannot start the guard process (%s); serving without it", e.strerror)
        return serve(None)
    osx.keep_exit_pipe(service=pid == 0)
    if pid == 0:
        osx.restore_signals(mask)
        osx.become_service(guard_pid)
        try:
            return serve(guard_pid)
        finally:
            osx.announce_exit()  # whatever it returns or raises: its own way out
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)  # also here: whichever of the two runs first
    osx.catch_signals()
    osx.restore_signals(mask)
    return Guard(osx, pid, grace).run()
