"""The local OS seam: every process the local machine starts or stops goes through
:class:`ProcessControl` (the implementation of :class:`~orcha.service.machines.LocalMachine`).

Scheduling and session code never call ``os.kill`` or ``subprocess`` themselves, so tests
can swap this object for a fake, and the rules for finding a petition's tree live here:

* the roots: PIDs the petition's action reported (``cb(pid)``) or that orcha spawned;
* their descendants (psutil);
* any process of this user whose environment carries the petition's token
  (``ORCHA_PETITION_TOKEN``): that finds grandchildren that called ``setsid`` or
  double-forked, which have left both the process group and the parent chain.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import psutil

from orcha.defaults import ENV_PETITION_TOKEN

if TYPE_CHECKING:
    from orcha.service.job import Job

log = logging.getLogger("orcha.service.procs")

_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux), not exported before Python 3.10


class ProcessControl:
    """Spawns and stops petition processes."""

    def __init__(self) -> None:
        self._devnull: int | None = None

    def spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        pipe_size: int = 0,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in a new session with piped stdout/stderr and stdin from /dev/null.

        Raises FileNotFoundError / PermissionError / OSError as ``subprocess`` does.
        """
        if self._devnull is None:
            self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=self._devnull,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
        )
        if pipe_size:
            import fcntl

            for pipe in (proc.stdout, proc.stderr):
                try:
                    fcntl.fcntl(pipe.fileno(), _F_SETPIPE_SZ, pipe_size)  # type: ignore[union-attr]
                except OSError:
                    pass  # a smaller pipe only costs throughput
        return proc

    def tree(self, roots: Iterable[int], token: str | None) -> dict[int, psutil.Process]:
        """Every live process of the petition: roots, descendants, token carriers."""
        found: dict[int, psutil.Process] = {}
        me = os.getpid()

        def add(proc: psutil.Process) -> None:
            if proc.pid == me or proc.pid in found:
                return
            found[proc.pid] = proc
            try:
                for child in proc.children(recursive=True):
                    if child.pid != me:
                        found.setdefault(child.pid, child)
            except psutil.Error:
                pass

        for pid in roots:
            try:
                add(psutil.Process(pid))
            except psutil.Error:
                pass
        if token:
            for pid in token_carriers(token):
                if pid not in found:
                    try:
                        add(psutil.Process(pid))
                    except psutil.Error:
                        pass
        return {pid: p for pid, p in found.items() if _alive(p)}

    def signal_all(self, procs: Iterable[psutil.Process], sig: int) -> None:
        for proc in procs:
            try:
                proc.send_signal(sig)
                if sig == signal.SIGTERM:
                    proc.send_signal(signal.SIGCONT)  # a stopped process cannot act on TERM
            except psutil.Error:
                pass

    def signal_tree(self, roots: Iterable[int], token: str | None, sig: int) -> int:
        """Send ``sig`` to every process of a petition's tree (e.g. SIGSTOP/SIGCONT to
        pause and resume it); returns how many were signalled."""
        procs = self.tree(roots, token)
        for proc in procs.values():
            try:
                proc.send_signal(sig)
            except psutil.Error:
                pass
        return len(procs)

    def stop_tree(
        self, roots: Iterable[int], token: str | None, grace: float, force: bool = False
    ) -> int:
        """SIGTERM the petition's tree, wait up to ``grace`` s, SIGKILL what is left.

        With ``force`` skip straight to SIGKILL. Returns how many processes were signalled.
        Repeats the search after killing, so children forked meanwhile die too.
        """
        roots = list(roots)
        procs = self.tree(roots, token)
        total = len(procs)
        if procs and not force:
            self.signal_all(procs.values(), signal.SIGTERM)
            alive = _wait_gone(list(procs.values()), grace)
            procs = {p.pid: p for p in alive}
            procs.update(self.tree(roots, token))
        for _ in range(10):
            if not procs:
                break
            self.signal_all(procs.values(), signal.SIGKILL)
            _wait_gone(list(procs.values()), 1.0)
            procs = self.tree(roots, token)
            total += len(procs)
        if procs:
            log.warning("processes %s survived SIGKILL", sorted(procs))
        return total


class Sweeper:
    """Stops what petitions left running after they ended normally.

    One thread, woken when petitions end; one scan of /proc covers every petition that
    ended since the last scan, so a stream of short petitions costs one scan per batch
    instead of one each. Idle, it waits without a timeout.
    """

    #: Seconds the sweeper lets ends accumulate before a scan.
    BATCH_SECONDS = 0.05

    def __init__(self, procs: ProcessControl, grace: float) -> None:
        self._procs = procs
        self._grace = grace
        self._pending: dict[str, Job] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, job: Job) -> None:
        with self._cond:
            self._pending[job.token] = job
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="sweeper", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending))
            time.sleep(self.BATCH_SECONDS)
            with self._cond:
                batch, self._pending = self._pending, {}
            try:
                carriers = tokens_in_proc()
                for token, job in batch.items():
                    if token in carriers:
                        n = self._procs.stop_tree(carriers[token], token, self._grace)
                        log.info("petition %s left %d process(es) behind; stopped", job.id, n)
            except Exception:
                log.exception("sweeping leftover processes failed")


_TOKEN_KEY = f"\0{ENV_PETITION_TOKEN}=".encode()


def tokens_in_proc() -> dict[str, list[int]]:
    """Every petition token found in a process environment, with the PIDs carrying it.

    Reads /proc directly (a tenth of psutil's cost). Processes of other users are
    unreadable and skipped.
    """
    me = os.getpid()
    found: dict[str, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = b"\0" + f.read()  # each entry now has a NUL on both sides
        except OSError:
            continue
        start = environ.find(_TOKEN_KEY)
        if start < 0:
            continue
        start += len(_TOKEN_KEY)
        end = environ.find(b"\0", start)
        token = environ[start : end if end >= 0 else None].decode(errors="replace")
        found.setdefault(token, []).append(int(name))
    return found


def token_carriers(token: str) -> list[int]:
    """PIDs of processes whose environment holds ``ORCHA_PETITION_TOKEN=<token>``."""
    return tokens_in_proc().get(token, [])


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (field 22 of
    /proc/PID/stat); with the PID it identifies a process even after PIDs are reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain anything.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[19]) if len(fields) > 19 else None


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` s for ``procs`` to end; return those still alive.

    Not psutil.wait_procs: it reaps the service's own children, stealing the exit status
    their runner's ``Popen.wait()`` reports. A zombie counts as gone here; its parent reaps
    it. (Polls, but only while a petition is being stopped.)
    """
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if _alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if _alive(p)]
    return alive


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def reset_child_signals() -> None:
    """In a child forked from the service: default signal handling, no wakeup fd.

    Without this a forked worker would inherit the service's flag-setting handlers (so
    SIGTERM would not stop it) and its signal wakeup descriptor (so its signals would
    wake the service as if they were the service's own).
    """
    try:
        signal.set_wakeup_fd(-1)
    except (ValueError, OSError):
        pass
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE):
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (ValueError, OSError):
            pass


def exit_code_of(returncode: int) -> int:
    """Shell convention: 128+N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode
