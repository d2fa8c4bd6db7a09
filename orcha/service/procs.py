"""The local OS seam: every process the local machine starts or stops goes through
:class:`ProcessControl` (the implementation of :class:`~orcha.service.machines.LocalMachine`).

Scheduling and session code never call ``os.kill`` or ``subprocess`` themselves, so tests
can swap this object for a fake, and the rules for finding a petition's tree live here:

* the roots: PIDs the petition's action reported (``cb(pid)``) or that orcha spawned;
* their descendants (psutil);
* any process of this user whose environment carries the petition's token
  (``ORCHA_PETITION_TOKEN``): that finds grandchildren that called ``setsid`` or
  double-forked, which have left both the process group and the parent chain;
* with isolation (see :mod:`orcha.service.isolation`): every process in the
  petition's cgroup (:mod:`orcha.service.cgroups`), or, without cgroups, every process
  the :class:`~orcha.service.orphans.Tracker` attributed to it (descendants it saw,
  orphans the service adopted as a child subreaper): that finds those that also cleared
  their environment (``env -i``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import psutil

from orcha.defaults import ENV_PETITION_TOKEN, TRACK_SECONDS
from orcha.service.capture import capture_channels
from orcha.service.proc_table import boot_ticks, start_ticks
from orcha.service.starting import Starter
from orcha.service.sweeping import CgroupRemover, token_carriers

if TYPE_CHECKING:
    from orcha.service.cgroups import Cgroups
    from orcha.service.memory import MemoryWatch
    from orcha.service.orphans import Tracker
    from orcha.service.spawner import Spawner

#: How many of the processes being stopped _wait_gone watches through pidfds (each a
#: descriptor while it waits); the rest, and all of them between wake-ups, are polled.
WAIT_PIDFDS = 256
#: Seconds between two looks at whether stopped processes are gone.
WAIT_POLL_SECONDS = 0.02

log = logging.getLogger("orcha.service.procs")

_NO_LOCK = contextlib.nullcontext()

_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux), not exported before Python 3.10


class ProcessControl:
    """Spawns and stops petition processes."""

    def __init__(
        self,
        *,
        cgroups: Cgroups | None = None,
        tracker: Tracker | None = None,
        interval: float = TRACK_SECONDS,
        spawner: Spawner | None = None,
        native: bool = False,
    ) -> None:
        """``cgroups``: give each petition a cgroup (see :mod:`orcha.service.cgroups`);
        ``tracker``: else, follow each petition's descendants and orphans (see
        :mod:`orcha.service.orphans`); neither: roots, descendants and token carriers
        only. ``interval``: seconds between two looks (tracking, memory limits).
        ``spawner``: with ``cgroups``, what starts a petition's process in its cgroup
        after a quiet moment (:mod:`orcha.service.spawner`; in a stream of starts, or
        without it, or while it is not usable, a shell joins the cgroup before it execs
        the command: see :meth:`spawn`). ``native``: start processes with
        :class:`~orcha.service.native.NativeProcess` (born in their cgroups, no shell, no
        spawner) until the kernel refuses its clone; the other ways are then the
        fallback."""
        from orcha.service.memory import MemoryWatch

        self._devnull: int | None = None
        self.cgroups = cgroups
        self.tracker = tracker
        self.memory: MemoryWatch = MemoryWatch()
        self._interval = interval
        self._tick_cond = threading.Condition()
        self._ticker: threading.Thread | None = None
        self._remover: CgroupRemover | None = None  # created with the first removal
        # Per petition token, the main processes spawned into its cgroup (see contained()).
        self._caged: dict[str, set[int]] = {}
        self.starter = Starter(cgroups, tracker, self.memory, spawner, native)

    @property
    def spawner(self) -> Spawner | None:
        """The spawner process's end, if processes may start through it."""
        return self.starter.spawner

    @property
    def native(self) -> bool:
        """Whether processes start with :class:`~orcha.service.native.NativeProcess`."""
        return self.starter.native

    @property
    def isolation(self) -> str:
        """What finds a petition's processes: "cgroup", "tracking" or "token"."""
        return "cgroup" if self.cgroups else "tracking" if self.tracker else "token"

    def spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        pipe_size: int = 0,
        stdin: bool = False,
        ordered: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in a new session, stdout/stderr piped (``ordered``: to capture
        channels, :mod:`orcha.service.capture`), stdin too with ``stdin`` (else /dev/null).
        Raises FileNotFoundError / PermissionError / OSError as ``subprocess`` does."""
        if self._devnull is None:
            self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        token = env.get(ENV_PETITION_TOKEN)
        argv = list(argv)
        procs_file = None
        if self.cgroups is not None and token:
            procs_file = self.cgroups.create(token)
        channels = capture_channels(ordered)  # closed by the GC if Popen fails
        stdin_fd = subprocess.PIPE if stdin else self._devnull
        proc = self.starter.start(argv, cwd, env, token, procs_file, stdin_fd, channels)
        if self.cgroups is not None and token:
            self._caged.setdefault(token, set()).add(proc.pid)
        if self.tracker is not None and token:
            self._wake_ticker()
        if pipe_size and not ordered:
            import fcntl

            for pipe in (proc.stdout, proc.stderr):
                try:
                    fcntl.fcntl(pipe.fileno(), _F_SETPIPE_SZ, pipe_size)  # type: ignore[union-attr]
                except OSError:
                    pass  # a smaller pipe only costs throughput
        return proc

    def tree(
        self, roots: Iterable[int], token: str | None, carriers: bool = True
    ) -> dict[int, psutil.Process]:
        """Every live process of the petition: roots, descendants, what its cgroup or
        the tracker holds, and (with ``carriers``: a read of every process's
        environment) token carriers."""
        found: dict[int, psutil.Process] = {}
        me = os.getpid()
        spawner = self.spawner.pid if self.spawner is not None else None
        # psutil finds descendants by reading every process's stat: not needed where the
        # petition's cgroup or the tracker already lists them all.
        listed = token is not None and (
            self.cgroups is not None or (self.tracker is not None and self.tracker.knows(token))
        )

        def add(proc: psutil.Process) -> None:
            if proc.pid == me or proc.pid == spawner or proc.pid in found:
                return
            found[proc.pid] = proc
            if listed:
                return
            try:
                for child in proc.children(recursive=True):
                    if child.pid not in (me, spawner):
                        found.setdefault(child.pid, child)
            except psutil.Error:
                pass

        for pid in roots:
            try:
                add(psutil.Process(pid))
            except psutil.Error:
                pass
        if token:
            more = token_carriers(token) if carriers else []
            if self.tracker is not None:
                more += self.tracker.members(token)
            if self.cgroups is not None:
                more += self.cgroups.pids(token)
            for pid in more:
                if pid not in found:
                    try:
                        add(psutil.Process(pid))
                    except psutil.Error:
                        pass
        return {pid: p for pid, p in found.items() if _alive(p)}

    def watch(self, token: str, pid: int) -> None:
        """Process ``pid`` is a main process of petition ``token`` (one its action
        reported; those spawned here are known already): track what it starts, and
        never take it for an orphan."""
        if self.tracker is not None:
            with self.tracker.lock:
                if pid not in self.tracker.roots(token):
                    self.tracker.watch(token, pid, start_ticks(pid))
            self._wake_ticker()

    # -- after a petition's main process ended ----------------------------------------------
    def stop_leftovers(self, roots: Iterable[int], token: str, grace: float) -> int:
        """Stop what petition ``token`` left running once its main process(es) ended
        (TERM, ``grace``, KILL); returns how many processes that was."""
        # The token search reads every process's environment: at each end of a stream
        # of short petitions that cost more than the petitions. With a cgroup or the
        # tracker it finds nothing more (the sweep after the end still looks, in batches).
        carriers = self.cgroups is None and self.tracker is None
        # Its main processes have exited: a PID of theirs may be another process's by now.
        if self.cgroups is not None:
            if self.cgroups.emptied(token):
                return 0  # empty: nothing of it is left anywhere (one read, at every end)
            roots = []  # the cgroup holds all that is left
        elif self.tracker is not None:
            roots = self.tracker.live_roots(token)
        return self._stop(roots, token, grace, False, carriers)

    def left_running(self, token: str) -> bool:
        """Whether :meth:`stop_leftovers` may have anything to stop (a quick look, never
        waiting): its cgroup is not empty, or the tracker sees a process of it alive;
        without either, it cannot tell (True)."""
        if self.cgroups is not None:
            return not self.cgroups.emptied(token)
        if self.tracker is not None:
            self._look()
            return bool(self.tracker.live_roots(token) or self.tracker.members(token))
        return True

    def started_at(self, token: str, started: float | None) -> int | None:
        """Clock ticks since boot before which nothing carries petition ``token``'s
        token, if the tracker follows it (else None): the earlier of its start
        (``started``, wall-clock time, a second early) and its first process's."""
        if self.tracker is None:
            return None
        known = [t for t in (self.tracker.since(token), boot_ticks(started)) if t is not None]
        return min(known) if known else None

    def started_since(self, ticks: int) -> list[int] | None:
        """The processes that started at ``ticks`` or later, if the tracker knows them
        all; else None."""
        return self.tracker.started_since(ticks) if self.tracker is not None else None

    def contained(self, token: str, roots: Iterable[int]) -> bool:
        """Whether every process of petition ``token`` descends from ``roots`` spawned
        into its cgroup: then the cgroup held its whole tree (a process is born in its
        parent's cgroup, whatever it does to its session or environment), and once
        :meth:`stop_leftovers` emptied it nothing of it can be left elsewhere. (Only a
        process allowed to move itself to another cgroup could leave.)"""
        caged = self._caged.get(token)
        return caged is not None and all(pid in caged for pid in roots)

    def finished(self, token: str) -> None:
        """Petition ``token`` has ended and its tree was stopped: forget it (its cgroup,
        found empty, is kept for another petition; else it is removed in the background:
        see :class:`~orcha.service.sweeping.CgroupRemover`)."""
        self._caged.pop(token, None)
        self.starter.forget(token)
        self.memory.remove(token)
        if self.tracker is not None:
            self.tracker.forget(token)
        if self.cgroups is not None and not self.cgroups.release(token):
            if self._remover is None:
                self._remover = CgroupRemover(self.cgroups)
            self._remover.add(token)

    def stop_strays(self, grace: float) -> int:
        """The service stops: stop the orphans no petition could be given (see
        :class:`~orcha.service.orphans.Tracker`); returns how many. The cgroups of ended
        petitions not removed yet are removed now; the spawner exits."""
        if self._remover is not None:
            self._remover.flush()
        if self.cgroups is not None:
            self.cgroups.remove_spares()
        if self.spawner is not None:
            self.spawner.close()
        if self.tracker is None:
            return 0
        self.tracker.tick()
        strays = self.tracker.strays()
        if not strays:
            return 0
        n = self.stop_tree(strays, None, grace)
        log.warning("stopped %d process(es) left by petitions that had ended", n)
        self.tracker.tick()  # reap them
        return n

    # -- memory limits -----------------------------------------------------------------------
    def limit_memory(
        self,
        token: str,
        limit: int,
        roots: Callable[[], Iterable[int]],
        exceeded: Callable[[str], None],
    ) -> None:
        """Hold petition ``token`` to ``limit`` bytes: ``exceeded(message)`` is called
        (once, from the ticking thread) when its tree is found using more. With a
        cgroup that has a memory controller the kernel enforces it (``memory.max``;
        set before its first process starts) and its OOM kills are counted; else the
        resident memory of its processes is summed at every look."""
        cgroups = self.cgroups
        if cgroups is not None and cgroups.memory:
            cgroups.create(token, limit)

            def probe() -> tuple[int | None, bool]:
                assert cgroups is not None
                killed = cgroups.oom_kills(token) > 0
                return (cgroups.usage(token) if killed else None, killed)

        else:

            def probe() -> tuple[int | None, bool]:
                return (self.resident(list(roots()), token), False)

        self.memory.add(token, limit, probe, exceeded)
        self._wake_ticker()

    def resident(self, roots: Iterable[int], token: str | None) -> int:
        """Bytes resident in the petition's processes (their RSS summed)."""
        total = 0
        for proc in self.tree(roots, token, self.tracker is None and self.cgroups is None).values():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _look(self) -> None:
        """Let the tracker attribute what was born (or orphaned) since its last look."""
        if self.tracker is not None:
            self.tracker.tick()

    # -- the ticking thread ------------------------------------------------------------------
    def _wake_ticker(self) -> None:
        with self._tick_cond:
            if self._ticker is None:
                self._ticker = threading.Thread(target=self._tick_loop, name="procs", daemon=True)
                self._ticker.start()
            self._tick_cond.notify()

    def _busy(self) -> bool:
        return bool(self.memory) or (self.tracker is not None and self.tracker.active)

    def _tick_loop(self) -> None:
        """Every ``interval`` while there is anything to look at: track, check memory.
        Idle, it waits without a timeout."""
        while True:
            with self._tick_cond:
                self._tick_cond.wait_for(self._busy)
            try:
                if self.tracker is not None:
                    self.tracker.tick()
                self.memory.check()
            except Exception:
                log.exception("looking at the petitions' processes failed")
            time.sleep(self._interval)

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
        pause and resume it); returns how many were signalled. Not while the spawner
        starts a process, nor while one of this petition's is being started (it may be
        inside a cgroup, or not exec'd yet: a SIGSTOP would stop it before it is the
        petition's command)."""
        self._look()
        visiting = self.cgroups.visiting if self.cgroups is not None else _NO_LOCK
        with visiting, self.starter.quiet(token):
            procs = self.tree(roots, token)
            self.signal_all(procs.values(), sig)
        return len(procs)

    def stop_tree(
        self, roots: Iterable[int], token: str | None, grace: float, force: bool = False
    ) -> int:
        """SIGTERM the petition's tree, wait up to ``grace`` s, SIGKILL what is left.

        With ``force`` skip straight to SIGKILL. Returns how many distinct processes were
        signalled.
        Repeats the search after killing, so children forked meanwhile die too.
        """
        return self._stop(roots, token, grace, force, carriers=True)

    def _stop(
        self, roots: Iterable[int], token: str | None, grace: float, force: bool, carriers: bool
    ) -> int:
        roots = list(roots)
        self._look()
        procs = self.tree(roots, token, carriers)
        seen = set(procs)
        if procs and not force:
            self.signal_all(procs.values(), signal.SIGTERM)
            alive = _wait_gone(list(procs.values()), grace)
            procs = {p.pid: p for p in alive}
            self._look()
            procs.update(self.tree(roots, token, carriers))
            seen.update(procs)
        for _ in range(10):
            if not procs:
                break
            if self.cgroups is not None and token:
                self.cgroups.kill(token)  # all at once, forks in flight included
            self.signal_all(procs.values(), signal.SIGKILL)
            _wait_gone(list(procs.values()), 1.0)
            self._look()
            procs = self.tree(roots, token, carriers)
            seen.update(procs)
        if procs:
            log.warning("processes %s survived SIGKILL", sorted(procs))
        return len(seen)


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` s for ``procs`` to end; return those still alive.

    Not psutil.wait_procs: it reaps the service's own children, stealing the exit status
    their runner's ``Popen.wait()`` reports. A zombie counts as gone here; its parent reaps
    it. Woken by the processes' pidfds as each exits (the first WAIT_PIDFDS of them), and
    looks again every WAIT_POLL_SECONDS whatever happens (only while a petition is being
    stopped): an ``orcha cancel``, which waits for the end, hears it at once.
    """
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if _alive(p)]
    if not alive:
        return alive
    poller = select.poll()
    fds: list[int] = []
    try:
        for proc in alive[:WAIT_PIDFDS]:
            fd = open_pidfd(proc.pid)
            if fd is not None:
                fds.append(fd)
                poller.register(fd, select.POLLIN)
        while alive:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for fd, _ in poller.poll(min(left, WAIT_POLL_SECONDS) * 1000):
                poller.unregister(fd)  # readable for good once its process exited
            alive = [p for p in alive if _alive(p)]
    finally:
        for fd in fds:
            os.close(fd)
    return alive


def open_pidfd(pid: int) -> int | None:
    """A descriptor readable once process ``pid`` exits (Linux 5.3+), or None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def exit_code_of(returncode: int) -> int:
    """Shell convention: 128+N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode
