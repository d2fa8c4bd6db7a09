"""The spawner process: starts petitions' processes inside their cgroups, for the service.

Run by :class:`orcha.service.spawner.Spawner` as ``python -I -S zygote.py REQ EVENTS HOME``
(no site, no orcha imports: it starts in a few milliseconds and stays small). It is
single-threaded, so it may move *itself* between cgroups (a threaded process cannot be
moved one thread at a time; the service has threads). For each request it

1. changes to the petition's directory,
2. creates the child directly inside the petition's cgroup with ``clone3``,
   ``CLONE_INTO_CGROUP`` (Linux 5.7+) and ``CLONE_PARENT``, which then takes a new
   session, puts SIGPIPE and SIGXFSZ back to their defaults, makes the received fds its
   0, 1 and 2 and execs the command (or writes why it could not to the fourth fd, the
   service's report pipe, and exits 127): every descendant of it is born inside the
   cgroup too,
3. answers with the PID at once: the service waits for the exec itself (the report
   pipe's end of file, as ``subprocess`` does).

``CLONE_PARENT`` makes the child the *service's* child (its parent is ours), as if the
service had forked it: the service waits for its end directly (``wait4``, a pidfd),
with nothing from here on the way from its exit to the next petition's start.

Where ``clone3`` (or ``CLONE_PARENT``) is refused (an older kernel, a seccomp filter),
it moves itself into the cgroup instead (writes ``0`` to its ``cgroup.procs``),
``posix_spawn``\\ s the command and moves back to ``HOME`` (the service's cgroup leaf);
those children are ours: we reap them and report each one's exit status and the
kernel's rusage (CPU seconds, peak RSS) as ``wait4`` gives it. ``clone3`` is preferred:
moving a process between cgroups waits for an RCU grace period whenever no other move
came just before, 5-20 ms on this VM after an idle moment, on the way of every ``orcha
run``. The child of ``clone3`` runs Python until it execs: safe here, because this
process has one thread (what makes ``os.fork`` unsafe in a threaded process, a lock held
by another thread, cannot happen). It is no subreaper: the petitions' orphans go where
they went before it existed (to the guard, see :mod:`orcha.service.guard`, or to init),
and when it ends its own children go there too.

Wire format, both sockets (Unix stream): a frame is a 4-byte little-endian length and a
``marshal``-ed tuple (both ends run the same interpreter):

* request, on REQ, with four fds (stdin, stdout, stderr, the report pipe's write end)
  attached by ``SCM_RIGHTS``: ``(procs_file, cwd, argv, env)``; ``procs_file`` ""
  means: stay where it is;
* answer, on REQ: ``("s", pid, adopted)`` started (``adopted``: by ``clone3``, the
  service's child, which it waits for; else ours, exec'd already), or ``("f", errno,
  where)`` failed, ``where`` "cwd" (the directory) or "exec" (the command) or "cgroup"
  (joining the cgroup);
* events, on EVENTS: ``("r",)`` once, ready; then ``("x", pid, wait_status, cpu_seconds,
  maxrss_kib)`` for each process it started as its own child, once reaped
  (``maxrss_kib`` None where it may be this process's memory, not the child's: see
  :mod:`orcha.service.rusage`).

It exits when the service closes REQ (or dies): its running children are then
reparented (to the guard, or to init), and stay in their cgroups.
"""

import array
import ctypes
import errno
import marshal
import os
import resource
import select
import signal
import socket
import struct
import sys
import time

HEADER = struct.Struct("<I")  # a frame's length, before it (the service's end too)
_FD = array.array("i")
_SIGDEF = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, name))


def read_exact(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes from ``sock``; EOFError if it ends first (the service's end of
    the wire, :mod:`orcha.service.spawner`, reads with it too)."""
    data = bytearray()
    while len(data) < size:
        part = sock.recv(size - len(data))
        if not part:
            raise EOFError
        data += part
    return bytes(data)


def _receive(sock: socket.socket) -> tuple[tuple, list[int]]:
    """One request and its fds (close-on-exec); EOFError at the end."""
    # Not socket.recv_fds: it drops its flags (CPython 3.11), and these fds must be
    # close-on-exec, or every petition would inherit the previous ones' pipes.
    head, ancdata, _, _ = sock.recvmsg(
        HEADER.size, socket.CMSG_SPACE(4 * _FD.itemsize), socket.MSG_CMSG_CLOEXEC
    )
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    if not head:
        for fd in fds:
            os.close(fd)
        raise EOFError
    if len(head) < HEADER.size:
        head += read_exact(sock, HEADER.size - len(head))
    (size,) = HEADER.unpack(head)
    return marshal.loads(read_exact(sock, size)), list(fds)


def _send(sock: socket.socket, message: tuple) -> None:
    body = marshal.dumps(message)
    sock.sendall(HEADER.pack(len(body)) + body)


def _join(procs_file: str) -> None:
    fd = os.open(procs_file, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)


#: name, PATH, directory (if PATH has relative entries) -> (where found, when).
_found: dict[tuple[str, str, str], tuple[str, float]] = {}
#: Seconds a command found on PATH is taken from there without looking again: a command
#: installed meanwhile in an earlier PATH directory is picked up that much later. (A walk
#: of a long PATH cost more than the rest of a start.)
_FOUND_SECONDS = 1.0


def _find(name: str, env: dict) -> str:
    """Where ``name`` is executed from, as ``execvpe`` looks it up (the petition's
    PATH; relative entries from its directory, which is the current one now)."""
    if "/" in name:
        return name
    path = env.get("PATH", os.defpath)
    relative = any(not folder.startswith("/") for folder in path.split(":"))
    key = (name, path, os.getcwd() if relative else "")
    now = time.monotonic()
    found = _found.get(key)
    if found is not None and now - found[1] < _FOUND_SECONDS and os.access(found[0], os.X_OK):
        return found[0]
    denied = False
    for folder in os.get_exec_path(env):
        full = os.path.join(folder, name)
        if os.access(full, os.X_OK) and not os.path.isdir(full):
            if len(_found) >= 256:
                _found.clear()  # bounded; refilled by the commands in use
            _found[key] = (full, now)
            return full
        denied = denied or os.path.exists(full)
    code = errno.EACCES if denied else errno.ENOENT
    raise OSError(code, os.strerror(code), name)


class _Clone3:
    """``clone3(CLONE_INTO_CGROUP | CLONE_PARENT)`` through libc's ``syscall``, holding
    the GIL (PyDLL), with the interpreter's own before/after-fork steps around it (as
    ``os.fork``).

    ``CLONE_PARENT`` makes the child the service's (this process's parent's) child, not
    ours: the service waits for its exec (the report pipe) and for its end itself, as
    for a process it forked, so we answer as soon as it exists and nothing of its end
    passes through here."""

    SYSCALL = 435  # clone3, the same number on every Linux architecture
    INTO_CGROUP = 0x200000000
    PARENT = 0x00008000  # CLONE_PARENT
    ARGS = struct.Struct("=11Q")  # struct clone_args up to .cgroup (CLONE_ARGS_SIZE_VER2)

    def __init__(self) -> None:
        self.usable = sys.platform.startswith("linux")
        if self.usable:
            self._syscall = ctypes.PyDLL(None, use_errno=True).syscall
            self._api = ctypes.pythonapi

    def spawn(self, group: int, path: str, argv: list, env: dict, fds: list[int]) -> int:
        """The child's PID, started inside the cgroup whose directory ``group`` is open
        on, to exec ``path`` with ``fds[:3]`` as its 0, 1 and 2 and ``fds[3]`` (close-on-
        exec) as its report (see :func:`_exec_child`); _Refused if clone3 failed
        (nothing was started)."""
        # With CLONE_PARENT the exit signal must be 0: the kernel takes ours (SIGCHLD).
        args = self.ARGS.pack(self.INTO_CGROUP | self.PARENT, 0, 0, 0, 0, 0, 0, 0, 0, 0, group)
        buf = ctypes.create_string_buffer(args, len(args))
        self._api.PyOS_BeforeFork()
        pid = self._syscall(ctypes.c_long(self.SYSCALL), buf, ctypes.c_size_t(len(args)))
        if pid == 0:
            self._api.PyOS_AfterFork_Child()
            _exec_child(path, argv, env, fds[:3], fds[3])  # never returns
        failure = ctypes.get_errno()
        self._api.PyOS_AfterFork_Parent()
        if pid < 0:
            raise _Refused(failure, os.strerror(failure))
        return pid


class _Refused(OSError):
    """clone3 itself failed: nothing was started."""


def _exec_child(path: str, argv: list, env: dict, fds: list[int], report: int) -> None:
    """In the child of clone3: become the command, or report why not (its errno, 4
    bytes, on ``report``: the service reads it, or the end of file once it exec'd) and
    exit 127."""
    code = errno.EIO
    try:
        os.setsid()
        for sig in _SIGDEF:
            signal.signal(sig, signal.SIG_DFL)
        for n, fd in enumerate(fds):
            os.dup2(fd, n)
        os.execve(path, argv, env)
    except OSError as e:
        code = e.errno or errno.EIO
    finally:
        try:
            # Ignored again: if nobody reads the report any more (the service took it as
            # started while stopped), the write fails instead of SIGPIPE killing it.
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
            os.write(report, code.to_bytes(4, "little"))
        finally:
            os._exit(127)


_clone3: _Clone3 | None = None
#: How a kernel (before 5.7) or a seccomp filter refuses clone3 or CLONE_INTO_CGROUP.
_UNSUPPORTED = (errno.ENOSYS, errno.EINVAL, errno.EPERM, errno.E2BIG)


def _spawn(request: tuple, fds: list[int], home: str) -> tuple[tuple, bool]:
    """Start one command; (the answer, whether this process is stuck outside ``home``)."""
    global _clone3
    procs_file, cwd, argv, env = request
    where = "cwd"
    joined = False
    try:
        os.chdir(cwd)
        where = "exec"
        path = _find(argv[0], env)
        pid = None
        adopted = False  # the service's child (CLONE_PARENT), not ours
        if procs_file and _clone3 is not None and _clone3.usable:
            where = "cgroup"
            group = os.open(os.path.dirname(procs_file), os.O_RDONLY | os.O_DIRECTORY)
            try:
                where = "exec"
                pid, adopted = _clone3.spawn(group, path, argv, env, fds), True
            except _Refused as e:
                if e.errno in _UNSUPPORTED:
                    _clone3.usable = False  # and from now on: move, then posix_spawn
                elif e.errno != errno.EBADF:  # EBADF: not a cgroup v2 directory
                    where = "cgroup"  # e.g. the cgroup cannot take processes
                    raise
            finally:
                os.close(group)
        if pid is None:
            if procs_file:
                where = "cgroup"
                _join(procs_file)
                joined = True
                where = "exec"
            actions = [(os.POSIX_SPAWN_DUP2, fd, n) for n, fd in enumerate(fds[:3])]
            pid = os.posix_spawn(
                path, argv, env, file_actions=actions, setsid=True, setsigdef=_SIGDEF
            )
        answer: tuple = ("s", pid, adopted)
    except OSError as e:
        answer = ("f", e.errno or errno.EIO, where)
    os.chdir("/")  # keeps no petition's directory busy
    if joined:
        try:
            _join(home)  # never left in a petition's cgroup: its kill would hit us
        except OSError:
            return answer, True
    return answer, False


def _reap(events: socket.socket, started: set[int]) -> None:
    while True:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in started:
            started.discard(pid)
            cpu = usage.ru_utime + usage.ru_stime
            # Its exec counted our memory into it (orcha/service/rusage.py): not its own.
            own = usage.ru_maxrss if usage.ru_maxrss * 1024 > _high_water() else None
            _send(events, ("x", pid, status, cpu, own))


def _high_water() -> int:
    """orcha.service.rusage.high_water (no orcha imports here)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(argv: list[str]) -> int:
    global _clone3
    _clone3 = _Clone3()
    requests = socket.socket(fileno=int(argv[1]))
    events = socket.socket(fileno=int(argv[2]))
    home = argv[3]
    for sock in (requests, events):
        sock.set_inheritable(False)  # passed to us inheritable: not to the petitions
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # reset by exec
    started: set[int] = set()
    _send(events, ("r",))  # ready
    poller = select.poll()
    poller.register(requests, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == wake_r:
                try:
                    os.read(wake_r, 512)
                except BlockingIOError:
                    pass
                continue
            try:
                request, fds = _receive(requests)
            except (EOFError, OSError):
                return 0  # the service is gone or stopping
            try:
                answer, stuck = _spawn(request, fds, home)
            finally:
                for fd in fds:
                    os.close(fd)
            if answer[0] == "s" and not answer[2]:
                started.add(answer[1])  # ours: reaped and reported here
            _send(requests, answer)
            if stuck:
                # Left in a petition's cgroup: its end would kill us with it. The service
                # starts another spawner; what we started goes on without us.
                return 1
        _reap(events, started)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
