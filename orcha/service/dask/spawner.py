"""The spawner: one small process per Dask worker that starts the petitions' commands and
guards their trees (``python -m orcha.service.dask.spawner FD PARENT GRACE``).

Why a process of its own: the worker cannot be the parent of the petitions' trees and
keep them owned. The spawner is

* a child subreaper (``PR_SET_CHILD_SUBREAPER``): whatever a petition's processes leave
  behind (a double-forked, setsid'd daemon) is re-parented to it, not to init, so it is
  still found and reaped;
* tied to its worker (``PR_SET_PDEATHSIG``): if the worker dies, even by ``kill -9``, the
  kernel sends it SIGTERM and it stops every tree (TERM, ``GRACE`` seconds, KILL) before
  it exits; it does the same when the worker closes its end of the socket.

Protocol, over a ``SOCK_SEQPACKET`` socket (one JSON message per packet): the worker sends
``{"op": "spawn", "argv", "cwd", "env", "stdin"}``; the spawner answers ``{"pid": N}``
with the read ends of the command's stdout and stderr pipes attached (SCM_RIGHTS; with
``stdin`` true, the write end of its stdin pipe too, else its stdin is /dev/null), or
``{"error": TEXT}``. When a command it spawned exits it sends ``{"exit": N, "code": C,
"cpu": S, "rss": B}`` (``C`` as Popen's returncode: ``-SIG`` if a signal killed it; CPU
seconds and peak resident bytes of it and of the children it waited for, from
``wait4``; ``B`` null where that may be the spawner's own memory:
:mod:`orcha.service.rusage`). Each command runs in its own session.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

from orcha.service.rusage import own_peak

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
#: Largest message (argv and environment included).
MAX_MESSAGE = 1 << 20


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


class Spawner:
    """The spawner's loop (see the module's docstring)."""

    def __init__(self, sock: socket.socket, grace: float) -> None:
        self.sock = sock
        self.grace = grace
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.stopping = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)

    def run(self) -> None:
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only wakes the loop
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C of the worker's terminal
        while not self.stopping:
            ready, _, _ = select.select([self.sock.fileno(), self._wake_r], [], [], 1.0)
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            self._reap()
            if self.sock.fileno() in ready and not self.stopping:
                try:
                    data = self.sock.recv(MAX_MESSAGE)
                except OSError:
                    data = b""
                if not data:
                    break  # the worker is gone
                self._handle(json.loads(data))
        self.stop_all()

    def _on_term(self, signum: int, frame: object) -> None:
        self.stopping = True  # only a flag: the loop stops the trees

    def _handle(self, msg: dict[str, object]) -> None:
        if msg.get("op") != "spawn":
            self._send({"error": f"unknown operation {msg.get('op')!r}"})
            return
        argv = [str(a) for a in msg["argv"]]  # type: ignore[attr-defined]
        cwd = str(msg["cwd"])
        env = {str(k): str(v) for k, v in msg["env"].items()}  # type: ignore[attr-defined]
        if not os.path.isdir(cwd):
            host = socket.gethostname()
            self._send({"error": f"the working directory {cwd} does not exist on {host}",
                        "errno": errno.ENOTDIR})  # fmt: skip
            return
        fed = bool(msg.get("stdin"))
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.PIPE if fed else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            )  # fmt: skip
        except OSError as e:
            self._send({"error": f"{argv[0]}: {e.strerror or e}", "errno": e.errno or 0})
            return
        assert proc.stdout is not None and proc.stderr is not None
        self.children[proc.pid] = proc
        pipes = [proc.stdout, proc.stderr] + ([proc.stdin] if proc.stdin is not None else [])
        for pipe in pipes:
            _grow(pipe.fileno())
        try:
            socket.send_fds(
                self.sock, [json.dumps({"pid": proc.pid}).encode()], [p.fileno() for p in pipes]
            )
        finally:
            for pipe in pipes:
                pipe.close()

    def _send(self, msg: dict[str, object]) -> None:
        with contextlib.suppress(OSError):
            self.sock.send(json.dumps(msg).encode())

    def _reap(self) -> None:
        """Reap every child that ended: those it spawned are reported; orphans of the
        petitions' trees (re-parented here) are only reaped."""
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            proc = self.children.pop(pid, None)
            if proc is not None:
                proc.returncode = os.waitstatus_to_exitcode(status)
                self._send({"exit": pid, "code": proc.returncode,
                            "cpu": usage.ru_utime + usage.ru_stime,
                            "rss": own_peak(usage.ru_maxrss)})  # fmt: skip

    def stop_all(self) -> None:
        """Stop every process below the spawner: TERM, the grace period, KILL."""
        import psutil

        me = psutil.Process()
        procs = me.children(recursive=True)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGTERM)
                proc.send_signal(signal.SIGCONT)  # a paused one hears it
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline:
            self._reap()
            if not me.children(recursive=True):
                return
            time.sleep(0.02)
        for proc in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                proc.kill()
        end = time.monotonic() + 2.0
        while me.children(recursive=True) and time.monotonic() < end:
            self._reap()
            time.sleep(0.02)


def _grow(fd: int) -> None:
    """Ask for a pipe of PIPE_CHUNK bytes (fewer, larger reads; the default is 64 KiB)."""
    import fcntl

    from orcha.defaults import PIPE_CHUNK

    with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size: keep it
        fcntl.fcntl(fd, 1031, PIPE_CHUNK)  # F_SETPIPE_SZ


def main(argv: list[str]) -> int:
    fd, parent, grace = int(argv[0]), int(argv[1]), float(argv[2])
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    sock = socket.socket(fileno=fd)
    spawner = Spawner(sock, grace)
    if os.getppid() != parent:
        spawner.stopping = True  # the worker died before the death signal was armed
    spawner.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
