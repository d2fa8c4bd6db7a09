"""Starting petitions' processes inside their cgroups without a shell in between.

A process is born in its parent's cgroup. The service has threads, and a threaded
process cannot move one thread to another cgroup, so the service cannot be the parent
of a process born in a petition's cgroup; before this module, each petition's process
first ran ``/bin/sh`` to join its cgroup and then exec'd the command (about 1 ms of
shell start-up on every petition's path). Now one small single-threaded helper process,
the spawner (:mod:`orcha.service.zygote`, started once per service), moves itself into
the petition's cgroup, ``posix_spawn``\\ s the command there and moves back: every
descendant of the petition is still born inside its cgroup (issue 12).

:class:`Spawner` is the service's end: one request at a time (under :attr:`lock`, which
the cgroups' kill takes too, so a petition's cgroup is never killed while the spawner is
inside it), a reader thread for its exit reports. :class:`SpawnedProcess` is what the
petition's kind gets: a ``subprocess.Popen`` whose process the spawner started;
``wait``, ``poll``, ``communicate``, ``send_signal`` work as for any Popen. A process
made by ``clone3`` is the service's own child (``CLONE_PARENT``,
:attr:`SpawnedProcess.adopted`): waited for as Popen waits, its exec waited for by the
caller (still under the lock), and reaped with ``wait4``'s figures
(:func:`orcha.service.rusage.reap`). One the spawner ``posix_spawn``\\ ed (where clone3
is refused) is its child: it reaps it and reports its end, and
:attr:`SpawnedProcess.usage` holds the kernel's figures.

When the spawner ends unexpectedly (killed by someone): a request in flight fails (the
petition's start fails with a one-line reason; it is not retried, so nothing runs
twice); the processes it had started keep running in their cgroups; those that were its
own children lose their exit statuses: each one's :class:`SpawnedProcess` ends, when
the process does, with :attr:`~SpawnedProcess.lost` saying so. The next spawn starts a
new spawner. A spawner that never comes up (a broken Python) makes
:attr:`Spawner.usable` False: the caller then goes back to the shell.
"""

from __future__ import annotations

import errno
import logging
import marshal
import os
import select
import socket
import subprocess
import sys
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from orcha.defaults import SPAWNER_READY_SECONDS
from orcha.service.popens import StartedPopen
from orcha.service.zygote import HEADER, read_exact

log = logging.getLogger("orcha.service.spawner")

_ZYGOTE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zygote.py")

#: Why a process's end could not be told (its :attr:`SpawnedProcess.lost`).
LOST = "its exit status was lost: orcha's process spawner ended while it ran"
#: Why a start failed when the spawner ended during it.
GONE = "orcha's process spawner ended while starting it"


class CgroupJoinError(OSError):
    """The spawner could not enter the petition's cgroup (nothing was started)."""


class SpawnerUnavailable(OSError):
    """There is no spawner to ask (it could not be started): nothing was sent, so the
    caller may start the process another way."""


class Spawner:
    """The service's end of the spawner process (see the module doc)."""

    def __init__(
        self, home: str, lock: threading.Lock | None = None, python: str = sys.executable
    ) -> None:
        """``home``: the ``cgroup.procs`` of the service's own cgroup, where the spawner
        lives between two spawns; ``lock``: held for each request (the spawner may be
        inside a petition's cgroup meanwhile; :attr:`Cgroups.visiting
        <orcha.service.cgroups.Cgroups.visiting>`, which a cgroup's kill takes);
        ``python``: the interpreter it runs with (the service's: the wire is
        ``marshal``)."""
        self.home = home
        self._python = python
        self.lock = lock or threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._requests: socket.socket | None = None
        self._ready = threading.Event()
        self._up = False  # it said it is ready (else it died first)
        self.usable = True
        self._table = threading.Lock()  # guards the two dicts below
        self._running: dict[int, SpawnedProcess] = {}
        self._early: dict[int, tuple[int, float, int | None]] = {}  # exits told before the start
        _ALL.add(self)

    @property
    def pid(self) -> int | None:
        """The spawner's PID while it runs (never a petition's process)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def start(self) -> None:
        """Start the spawner now (it gets ready in the background); idempotent."""
        with self.lock:
            if self._requests is None and self.usable:
                self._start()

    def _start(self) -> None:
        req_ours, req_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ev_ours, ev_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            fds = (req_theirs.fileno(), ev_theirs.fileno())
            argv = [self._python, "-I", "-S", _ZYGOTE, *map(str, fds), self.home]
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                pass_fds=fds, start_new_session=True,
            )  # fmt: skip
        except OSError as e:
            for s in (req_ours, ev_ours):
                s.close()
            log.warning("cannot start the process spawner (%s); using a shell", e)
            self.usable = False
            return
        finally:
            req_theirs.close()
            ev_theirs.close()
        self._proc, self._requests = proc, req_ours
        self._ready = threading.Event()
        self._up = False
        threading.Thread(
            target=self._read, args=(ev_ours, req_ours, proc, self._ready),
            name="spawner", daemon=True,
        ).start()  # fmt: skip

    def spawn(
        self,
        proc: SpawnedProcess,
        argv: Sequence[str],
        cwd: str,
        env: Mapping[str, str],
        procs_file: str,
        fds: Sequence[int],
    ) -> int:
        """Start ``argv`` in the cgroup of ``procs_file`` with ``fds`` as its 0, 1 and 2;
        its PID. OSError as ``subprocess.Popen`` raises it (filename: the command, or
        ``cwd``); :class:`CgroupJoinError`; OSError(EPIPE) if the spawner ended."""
        body = marshal.dumps((procs_file, cwd, list(argv), dict(env)))
        report_r, report_w = os.pipe2(os.O_CLOEXEC)  # the child's exec report (zygote.py)
        try:
            # The lock is held until the child has exec'd: 'pause --running' (which
            # takes it) must not stop the child before it is the petition's command.
            with self.lock:
                answer = self._ask(body, [*fds, report_w])
                os.close(report_w)  # (the spawner and the child hold their own)
                report_w = -1
                if answer[0] != "s":
                    _, code, where = answer
                elif answer[2]:
                    # Our own child (CLONE_PARENT), waited for as Popen does.
                    pid: int = answer[1]
                    proc.adopted = True
                    code, where = _exec_report(report_r, pid), "exec"
                    if not code:
                        return pid
                    _reap_failed(pid)
                else:  # the spawner's child, exec'd already: it reports its end
                    pid = answer[1]
                    with self._table:
                        early = self._early.pop(pid, None)
                        if early is None:
                            self._running[pid] = proc
                    if early is not None:
                        proc.exited(*early)
                    return pid
        finally:
            os.close(report_r)
            if report_w >= 0:
                os.close(report_w)
        if where == "cgroup":
            raise CgroupJoinError(code, f"cannot enter the petition's cgroup: {os.strerror(code)}")
        raise OSError(code, os.strerror(code), cwd if where == "cwd" else argv[0])

    def _ask(self, body: bytes, fds: list[int]) -> tuple[Any, ...]:
        """(Under the lock.) Send one request with ``fds``; its answer."""
        if self._requests is None:
            self._start()
        sock = self._requests
        if sock is None or not self._ready.wait(SPAWNER_READY_SECONDS) or not self._up:
            self._broken()
            raise SpawnerUnavailable(errno.EPIPE, "orcha's process spawner could not start")
        try:
            sent = socket.send_fds(sock, [HEADER.pack(len(body)), body], fds)
            if sent < HEADER.size + len(body):
                sock.sendall((HEADER.pack(len(body)) + body)[sent:])
            return _receive(sock)
        except (OSError, EOFError, ValueError):
            self._dropped(sock)
            raise OSError(errno.EPIPE, GONE) from None

    def _broken(self) -> None:
        """(Under the lock.) It did not come up: never try again (the caller falls back)."""
        if self.usable:
            log.warning("the process spawner did not start; petitions start through a shell")
        self.usable = False
        if self._requests is not None:
            self._dropped(self._requests)

    def _dropped(self, sock: socket.socket) -> None:
        """(Under the lock.) Forget the spawner that answered on ``sock`` (the next spawn
        starts another one)."""
        if self._requests is sock:
            self._requests = None
            sock.close()
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()  # it broke the protocol: it must not go on

    def _read(
        self,
        events: socket.socket,
        requests: socket.socket,
        proc: subprocess.Popen[bytes],
        ready: threading.Event,
    ) -> None:
        """The reader thread of one spawner: its readiness, then its exit reports, until
        it ends."""
        try:
            while True:
                message = _receive(events)
                if message[0] == "r":
                    self._up = True
                    ready.set()
                    continue
                _, pid, status, cpu, maxrss = message
                rss = None if maxrss is None else maxrss * 1024  # None: not its own
                with self._table:
                    target = self._running.pop(pid, None)
                    if target is None:
                        self._early[pid] = (status, cpu, rss)
                if target is not None:
                    target.exited(status, cpu, rss)
        except (EOFError, OSError, ValueError):
            pass
        events.close()
        ready.set()  # a spawn waiting for it to come up: it will not
        proc.wait()
        with self.lock:
            self._dropped(requests)
        with self._table:
            orphaned = list(self._running.values())
            self._running.clear()
            self._early.clear()
        if orphaned:
            log.warning(
                "the process spawner (pid %d) ended (code %s) while %d process(es) it started "
                "ran; they run on, their exit statuses are lost",
                proc.pid, proc.returncode, len(orphaned),
            )  # fmt: skip
            threading.Thread(target=_watch_lost, args=(orphaned,), name="spawner-lost",
                             daemon=True).start()  # fmt: skip

    def close(self) -> None:
        """The service stops: the spawner exits (the processes it started, if any are
        left, run on in their cgroups)."""
        with self.lock:
            sock, proc = self._requests, self._proc
            self._requests = None
            self.usable = False
        if sock is not None:
            sock.close()  # its end of file: it exits
        if proc is not None:
            try:
                proc.wait(SPAWNER_READY_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _forked(self) -> None:
        """In a child forked from the service (a plugin's action may fork): its copy of
        the request socket must not keep the spawner alive once the service is gone."""
        sock, self._requests, self._proc = self._requests, None, None
        if sock is not None:
            sock.close()


#: Every spawner of this process (see Spawner._forked).
_ALL: weakref.WeakSet[Spawner] = weakref.WeakSet()


def _after_fork() -> None:
    for spawner in list(_ALL):
        spawner._forked()


os.register_at_fork(after_in_child=_after_fork)


def close_all() -> None:
    """Every spawner of this process exits (those closed already are left as they
    are): for a service that stops before its machines could (it could not start)."""
    for spawner in list(_ALL):
        spawner.close()


class SpawnedProcess(StartedPopen):
    """A ``subprocess.Popen`` started by a :class:`Spawner` in the cgroup of
    ``procs_file``; the spawner reaps it and reports its end here."""

    def __init__(
        self, spawner: Spawner, procs_file: str, argv: Sequence[str], **kwargs: Any
    ) -> None:
        self._spawner = spawner
        self._procs_file = procs_file
        self._end = threading.Event()
        self._code = 0
        #: (CPU seconds, peak resident bytes) of it and the children it waited for.
        self.usage: tuple[float | None, int | None] = (None, None)
        #: Why its exit status is unknown (the spawner ended while it ran), or None.
        self.lost: str | None = None
        #: It is the service's own child (clone3's CLONE_PARENT): waited for as by Popen,
        #: not through the spawner's reports (then :attr:`usage` stays unknown).
        self.adopted = False
        super().__init__(argv, **kwargs)

    def _start(
        self,
        args: list[str],
        executable: Any,
        cwd: Any,
        env: Mapping[str, str] | None,
        fds: tuple[int, int, int],
    ) -> int:
        return self._spawner.spawn(
            self, args, os.fspath(cwd) if cwd is not None else os.getcwd(),
            env if env is not None else os.environ, self._procs_file, list(fds),
        )  # fmt: skip

    def exited(self, status: int, cpu: float | None, rss: int | None) -> None:
        """The spawner reaped it: its wait status and rusage."""
        self._code = os.waitstatus_to_exitcode(status)
        self.usage = (cpu, rss)
        self._end.set()

    def lost_track(self) -> None:
        """It ended after the spawner did: its status is unknown."""
        self.lost = LOST
        self._code = 1
        self._end.set()

    def _internal_poll(self, _deadstate: Any = None, **kwargs: Any) -> int | None:
        if self.adopted:
            return super()._internal_poll(_deadstate, **kwargs)  # type: ignore[misc]
        if self.returncode is None and self._end.is_set():
            self.returncode = self._code
        return self.returncode

    def _wait(self, timeout: float | None) -> int:
        if self.adopted:
            return super()._wait(timeout)  # type: ignore[misc]
        if self.returncode is None:
            if not self._end.wait(timeout):
                raise subprocess.TimeoutExpired(self.args, timeout)  # type: ignore[arg-type]
            self.returncode = self._code
        return self.returncode


def _exec_report(report: int, pid: int) -> int:
    """Wait for our child ``pid`` (of the spawner's clone3) to exec: 0 once it did (the
    end of file of its close-on-exec ``report`` pipe), else the errno it reported. A
    child stopped before it could exec ('orcha pause --running' signals the petition's
    whole cgroup) is taken as started: it execs when it is continued (and a failure
    then ends it with 127)."""
    while True:
        ready, _, _ = select.select([report], [], [], _STOPPED_CHECK_SECONDS)
        if ready:
            data = os.read(report, 8)
            return int.from_bytes(data[:4], "little") if len(data) >= 4 else 0
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state in (b"T", b"t"):
            return 0


#: Seconds between two looks at whether a child that has not exec'd yet was stopped.
_STOPPED_CHECK_SECONDS = 0.05


def _reap_failed(pid: int) -> None:
    """Reap our child ``pid`` that could not exec (it exits 127 after its report)."""
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except InterruptedError:
            continue
        except ChildProcessError:
            return


def _receive(sock: socket.socket) -> tuple[Any, ...]:
    """One frame (EOFError at the end of the stream)."""
    head = read_exact(sock, HEADER.size)
    (size,) = HEADER.unpack(head)
    message = marshal.loads(read_exact(sock, size))
    if not isinstance(message, tuple) or not message:
        raise ValueError("not a spawner message")
    return message


def _watch_lost(procs: list[SpawnedProcess]) -> None:
    """Until each of ``procs`` has ended (their parent, the spawner, is gone: no status
    will come), then mark it lost."""
    left: dict[int, SpawnedProcess] = {}
    for proc in procs:
        try:
            left[os.pidfd_open(proc.pid)] = proc
        except OSError:  # gone already (or no pidfds: told now, as it cannot be watched)
            proc.lost_track()
    poller = select.poll()
    for fd in left:
        poller.register(fd, select.POLLIN)
    while left:
        for fd, _ in poller.poll():
            poller.unregister(fd)
            os.close(fd)
            left.pop(fd).lost_track()
