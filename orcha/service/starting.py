"""How a petition's process is started (the part of
:class:`~orcha.service.procs.ProcessControl` that starts them): born in its cgroup by
orcha's clone3 helper (:mod:`orcha.service.native`) where it was built; else through the
spawner process (:mod:`orcha.service.spawner`) after a quiet moment, or a shell that
joins the cgroup before it execs the command; without cgroups, a plain ``Popen``."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from orcha.defaults import SPAWNER_QUIET_SECONDS
from orcha.service.proc_table import start_ticks

if TYPE_CHECKING:
    from orcha.service.cgroups import Cgroups
    from orcha.service.memory import MemoryWatch
    from orcha.service.orphans import Tracker
    from orcha.service.spawner import Spawner

log = logging.getLogger("orcha.service.starting")

_NO_LOCK = contextlib.nullcontext()

#: How many (command, PATH) lookups :meth:`Starter._check_command` remembers.
_COMMANDS_KEPT = 256

#: How a petition's cgroup directory is opened for clone3's CLONE_INTO_CGROUP.
_CGROUP_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class Starter:
    """Starts petitions' processes, one way or another (see the module doc)."""

    def __init__(
        self,
        cgroups: Cgroups | None,
        tracker: Tracker | None,
        memory: MemoryWatch,
        spawner: Spawner | None = None,
        native: bool = False,
    ) -> None:
        """As :class:`~orcha.service.procs.ProcessControl` says; ``memory``: its watch of
        petitions held to ``--mem``."""
        self.cgroups = cgroups
        self.tracker = tracker
        self.memory = memory
        self.spawner = spawner
        self.native = native
        self._commands: dict[tuple[str, str], str] = {}  # (name, PATH) -> where found
        self._last_start = -SPAWNER_QUIET_SECONDS  # time.monotonic() of the last spawn
        # Per petition, held while one of its processes is born and until it has exec'd
        # (see quiet()); made on demand, dropped when the petition is forgotten.
        self._guard = threading.Lock()
        self._starts: dict[str, threading.Lock] = {}

    def quiet(self, token: str | None) -> threading.Lock | contextlib.nullcontext[None]:
        """Held, no process of petition ``token`` is being started: one that a signal
        would reach before its exec ('pause --running' stopping it there, say) would not
        yet be the petition's command. Per petition, so starts of others go on."""
        if not token:
            return _NO_LOCK
        with self._guard:
            lock = self._starts.get(token)
            if lock is None:
                lock = self._starts[token] = threading.Lock()
            return lock

    def forget(self, token: str) -> None:
        """Petition ``token`` has ended: its lock of :meth:`quiet` goes."""
        with self._guard:
            self._starts.pop(token, None)

    def start(
        self,
        argv: list[str],
        cwd: str,
        env: Mapping[str, str],
        token: str | None,
        procs_file: str | None,
        stdin: int,
        channels: Any,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` (of petition ``token``, in the cgroup of ``procs_file`` if one)
        in a new session with ``stdin`` and ``channels.child`` as its fds 0-2 (told
        ``channels.started`` once it has them). Raises as ``subprocess.Popen`` does."""
        if self.native:
            proc = self._native(argv, cwd, env, token, procs_file, stdin, channels)
            if proc is not None:
                return proc
        return self._other(argv, cwd, env, token, procs_file, stdin, channels)

    def _native(
        self,
        argv: list[str],
        cwd: str,
        env: Mapping[str, str],
        token: str | None,
        procs_file: str | None,
        stdin: int,
        channels: Any,
    ) -> subprocess.Popen[bytes] | None:
        """Start it with :class:`~orcha.service.native.NativeProcess`, in its cgroup if
        ``procs_file``; None if the kernel refused the clone (nothing ran: the caller
        starts it another way; a refusal that always will be here turns this way off)."""
        from orcha.service.native import CloneRefused, NativeProcess

        cgroup = -1
        if procs_file is not None:
            try:
                cgroup = os.open(os.path.dirname(procs_file), _CGROUP_OPEN)
            except OSError:
                return None  # the shell's way reports what is wrong with it
        # The tracker's lock: it never sees a main process it does not know (it would take
        # it for an orphan). In a cgroup, the petition's own lock (quiet()): a signal to
        # its tree waits for the exec. Not one lock of all starts: this thread waits for
        # the child's exec, and waiting under one lock made every start take turns (two
        # slots refilled at 0.94-1.04k/s whatever the number of slots).
        lock = self.tracker.lock if self.tracker is not None and cgroup < 0 else self.quiet(token)
        # Until it execs, the child shares the service's memory: not measured as the
        # petition's meanwhile (a --mem of 1M would see the service's 100 MB).
        watch = self.memory.starting(token) if token and token in self.memory else _NO_LOCK
        try:
            with lock, watch:
                proc = NativeProcess(
                    argv, cgroup=cgroup, cwd=cwd, env=env,
                    stdin=stdin, stdout=channels.child[0], stderr=channels.child[1],
                )  # fmt: skip
                channels.started(proc)
                if self.tracker is not None and token:
                    self.tracker.watch(token, proc.pid, start_ticks(proc.pid), spawned=True)
        except CloneRefused as e:
            if e.permanent:
                log.warning("the kernel refuses clone3 (%s): petitions start as before", e)
                self.native = False
            return None
        finally:
            if cgroup >= 0:
                os.close(cgroup)
        return proc

    def _other(
        self,
        argv: list[str],
        cwd: str,
        env: Mapping[str, str],
        token: str | None,
        procs_file: str | None,
        stdin: int,
        channels: Any,
    ) -> subprocess.Popen[bytes]:
        """Start it without :mod:`orcha.service.native`: through the spawner or a shell
        that joins the cgroup (``procs_file``), else with a plain Popen."""
        spawner = self.spawner
        proc: subprocess.Popen[bytes] | None = None
        # Which way into the cgroup: moving a process there (the shell's way) waits for
        # an RCU grace period when no move came in the last ~10 ms (8-22 ms here), while
        # the spawner creates it there (clone3) but costs a hand-off and a copy of a
        # Python process per start (in a stream, an array ran at 0.47-0.66x tsp through
        # it alone against 0.74-1.02x this way). So the spawner after a quiet moment (an
        # 'orcha run' starts at once), the shell in a stream of starts. Not for a
        # petition held to --mem: until it execs, the spawner's child is a copy of a
        # Python process, charged to the petition's cgroup (a small memory.max would
        # kill it before the command even ran).
        now = time.monotonic()
        quiet, self._last_start = now - self._last_start >= SPAWNER_QUIET_SECONDS, now
        quiet = quiet and token not in self.memory
        if procs_file is not None and spawner is not None and spawner.usable and quiet:
            from orcha.service.spawner import SpawnedProcess, SpawnerUnavailable

            # Born in its cgroup, without a shell: the spawner reports a command that
            # cannot be executed as Popen would.
            try:
                proc = SpawnedProcess(
                    spawner, procs_file, argv, cwd=cwd, env=env,
                    stdin=stdin, stdout=channels.child[0], stderr=channels.child[1],
                )  # fmt: skip
            except SpawnerUnavailable:
                pass  # nothing was started: through the shell, as if there were none
            else:
                channels.started(proc)
        if proc is None:
            if procs_file is not None:
                self._check_command(argv[0], cwd, env.get("PATH", os.defpath))
                argv = self.cgroups.wrap(procs_file, argv)  # type: ignore[union-attr]
            # Held from fork to watch(): the tracker never sees a main process it does
            # not know (it would take it for an orphan).
            with self.tracker.lock if self.tracker is not None else _NO_LOCK:
                proc = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=dict(env),
                    stdin=stdin,
                    stdout=channels.child[0],
                    stderr=channels.child[1],
                    start_new_session=True,
                    close_fds=True,
                )
                channels.started(proc)
                if self.tracker is not None and token:
                    self.tracker.watch(token, proc.pid, start_ticks(proc.pid), spawned=True)
        return proc

    def _check_command(self, name: str, cwd: str, path: str) -> None:
        """Raise as ``subprocess.Popen`` would if ``name`` cannot be executed (see
        :func:`check_command`). A command found on ``path``
        before is only checked again where it was found (one ``access`` call instead
        of a walk of ``path``): it runs if it is still executable there."""
        key = (name, path)
        found = self._commands.get(key) if os.sep not in name else None
        if found is not None and os.access(found, os.X_OK) and not os.path.isdir(found):
            return
        found = check_command(name, cwd, path)
        if found is not None and os.path.isabs(found):  # not one of a relative PATH entry
            if len(self._commands) >= _COMMANDS_KEPT:
                self._commands.clear()  # bounded; refilled by the commands in use
            self._commands[key] = found


def check_command(name: str, cwd: str, path: str) -> str | None:
    """Raise as ``subprocess.Popen`` would if ``name`` could not be executed
    (FileNotFoundError, PermissionError): a petition's command runs behind the shell
    that puts it in its cgroup, so it is looked up here, to fail the same way. Returns
    where a name without a slash was found on ``path`` (None for a path)."""
    if os.sep in name:
        full = os.path.join(cwd, name)
        if not os.path.exists(full):
            raise FileNotFoundError(2, "No such file or directory", name)
        if os.path.isdir(full) or not os.access(full, os.X_OK):
            raise PermissionError(13, "Permission denied", name)
        return None
    found = shutil.which(name, path=path)
    if found is not None:
        return found
    for folder in path.split(os.pathsep):
        if os.path.exists(os.path.join(folder or ".", name)):
            raise PermissionError(13, "Permission denied", name)
    raise FileNotFoundError(2, "No such file or directory", name)
