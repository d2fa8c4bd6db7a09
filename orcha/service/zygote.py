"""The spawner process: starts petitions' processes inside their cgroups, for the service.

Run by :class:`orcha.service.spawner.Spawner` as ``python -I -S zygote.py REQ EVENTS HOME``
(no site, no orcha imports: it starts in a few milliseconds and stays small). It is
single-threaded, so it may move *itself* between cgroups (a threaded process cannot be
moved one thread at a time; the service has threads). For each request it

1. moves itself into the petition's cgroup (writes ``0`` to its ``cgroup.procs``),
2. changes to the petition's directory and ``posix_spawn``\\ s the command (new session,
   SIGPIPE and SIGXFSZ back to their defaults, the received fds as 0, 1 and 2): the
   child is born inside the cgroup, so every descendant of it is too,
3. moves itself back to ``HOME`` (the service's cgroup leaf) and answers with the PID.

It is the parent of every process it starts: it reaps them and reports each one's exit
status and the kernel's rusage (CPU seconds, peak RSS) as ``wait4`` gives it. It is no
subreaper: the petitions' orphans go where they went before it existed (to the guard,
see :mod:`orcha.service.guard`, or to init), and when it ends its children go there too.

Wire format, both sockets (Unix stream): a frame is a 4-byte little-endian length and a
``marshal``-ed tuple (both ends run the same interpreter):

* request, on REQ, with three fds (stdin, stdout, stderr) attached by ``SCM_RIGHTS``:
  ``(procs_file, cwd, argv, env)``; ``procs_file`` "" means: stay where it is;
* answer, on REQ: ``("s", pid)`` started, or ``("f", errno, where)`` failed, ``where``
  "cwd" (the directory) or "exec" (the command) or "cgroup" (joining the cgroup);
* events, on EVENTS: ``("r",)`` once, ready; then ``("x", pid, wait_status, cpu_seconds,
  maxrss_kib)`` for each process it started, once reaped.

It exits when the service closes REQ (or dies): its running children are then
reparented (to the guard, or to init), and stay in their cgroups.
"""

import array
import errno
import marshal
import os
import select
import signal
import socket
import struct
import sys
import time

_HEADER = struct.Struct("<I")
_FD = array.array("i")
_SIGDEF = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, name))


def _read_exact(sock: socket.socket, size: int) -> bytes:
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
        _HEADER.size, socket.CMSG_SPACE(3 * _FD.itemsize), socket.MSG_CMSG_CLOEXEC
    )
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    if not head:
        for fd in fds:
            os.close(fd)
        raise EOFError
    if len(head) < _HEADER.size:
        head += _read_exact(sock, _HEADER.size - len(head))
    (size,) = _HEADER.unpack(head)
    return marshal.loads(_read_exact(sock, size)), list(fds)


def _send(sock: socket.socket, message: tuple) -> None:
    body = marshal.dumps(message)
    sock.sendall(_HEADER.pack(len(body)) + body)


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


def _spawn(request: tuple, fds: list[int], home: str) -> tuple[tuple, bool]:
    """Start one command; (the answer, whether this process is stuck outside ``home``)."""
    procs_file, cwd, argv, env = request
    where = "cgroup"
    try:
        if procs_file:
            _join(procs_file)
        where = "cwd"
        os.chdir(cwd)
        where = "exec"
        path = _find(argv[0], env)
        actions = [(os.POSIX_SPAWN_DUP2, fd, n) for n, fd in enumerate(fds)]
        pid = os.posix_spawn(path, argv, env, file_actions=actions, setsid=True, setsigdef=_SIGDEF)
        answer: tuple = ("s", pid)
    except OSError as e:
        answer = ("f", e.errno or errno.EIO, where)
    os.chdir("/")  # keeps no petition's directory busy
    if procs_file and where != "cgroup":
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
            _send(events, ("x", pid, status, cpu, usage.ru_maxrss))


def main(argv: list[str]) -> int:
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
            if answer[0] == "s":
                started.add(answer[1])
            _send(requests, answer)
            if stuck:
                # Left in a petition's cgroup: its end would kill us with it. The service
                # starts another spawner; what we started goes on without us.
                return 1
        _reap(events, started)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
