"""A cgroup v2 per petition, where the service may create cgroups (points 3b, 3c and 4 of
issue 12; see docs/reliability.rst).

Under its own cgroup (``/proc/self/cgroup``), the service

* moves itself into a leaf, ``orcha-service`` (cgroup v2's "no internal processes" rule:
  a cgroup that hands controllers to its children holds no process itself);
* enables the ``memory`` and ``pids`` controllers for its children, if it may;
* removes the petition cgroups a previous run left (killing what is still in them);
* gives each petition a cgroup: its main process is born there (or enters it before it
  execs: :meth:`Cgroups.wrap`), so every descendant is born inside, whatever it does to
  its environment, session or parent. ``cgroup.procs`` lists them all; ``cgroup.kill``
  kills them all at once; ``memory.max`` limits their memory together, and
  ``memory.events`` counts the kernel's OOM kills.
* With the memory controller, that cgroup is ``orcha-p-TOKEN``, made for the petition
  and removed after it. Without it, a cgroup found empty once its petition ended goes to
  a later petition (``orcha-p-PID.cN``, PID the service's; at most
  :data:`~orcha.defaults.CGROUP_SPARES` kept): making and removing one cost the machine
  about 0.2 ms per petition. Only ``cpu.stat`` counts across petitions there, and each
  petition is charged what it adds to it.

Every file access goes through :class:`~orcha.service.cgroup_fs.CgroupFS`, so tests run
on a fake cgroupfs (a directory of plain files).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Sequence

from orcha.defaults import CGROUP_PETITION_PREFIX, CGROUP_SERVICE_LEAF, CGROUP_SPARES
from orcha.service.cgroup_fs import CgroupFS, CgroupUnavailable, hierarchy

log = logging.getLogger("orcha.service.cgroups")

#: The shell line a petition's main process runs first: enter the cgroup whose
#: ``cgroup.procs`` is ``$0``, then become the command.
_ENTER = 'echo 0 >"$0" || exit 127; exec "$@"'


class _Cgroup:
    """A petition cgroup the service made: where it is; its ``cpu.stat`` usage when its
    current petition got it (``start``) and once that petition's processes are all gone
    (``final``: what the next one starts from); whether it was found empty since a
    process of it was last started (``emptied``)."""

    __slots__ = ("emptied", "final", "killed", "path", "start")

    def __init__(self, path: str) -> None:
        self.path = path
        self.start = 0
        self.final: int | None = None
        self.emptied = False
        #: ``cgroup.kill`` was written to it: no process may be started in it again (see
        #: :meth:`Cgroups.kill`).
        self.killed = False


def _usage_usec(fs: CgroupFS, path: str) -> int | None:
    """``usage_usec`` of the cgroup at ``path`` (its ``cpu.stat``), or None."""
    try:
        text = fs.read(os.path.join(path, "cpu.stat"))
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "usage_usec" and value.strip().isdigit():
            return int(value)
    return None


def _serving(pid: str) -> bool:
    """Whether ``pid`` (the first part of a petition cgroup's name: its service's PID) is
    an orcha process running now, not this one."""
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False  # gone: what it left is stale
    # The orcha script, or 'python -m orcha'; a reused PID is most likely neither.
    return any(os.path.basename(arg) == b"orcha" for arg in argv)


def _move_parent(fs: CgroupFS, base: str, leaf: str) -> None:
    """If the only process left in ``base`` is this process's parent (a supervisor that
    started the service, e.g. under a systemd unit), move it into ``leaf`` too, so
    controllers can be enabled; anything else in ``base`` is not the service's to move."""
    try:
        left = fs.read(os.path.join(base, "cgroup.procs")).split()
        if left == [str(os.getppid())]:
            fs.write(os.path.join(leaf, "cgroup.procs"), left[0])
    except OSError:
        pass  # then the controllers stay off: memory is measured instead


class Cgroups:
    """The petitions' cgroups under the service's own cgroup (see the module doc)."""

    def __init__(
        self,
        fs: CgroupFS,
        base: str,
        memory: bool,
        namespace: str = "",
        spares: int = CGROUP_SPARES,
    ) -> None:
        """``namespace``: a word naming the service (its state directory), so that two
        services sharing a cgroup never take each other's petitions for stale ones.
        ``spares``: how many emptied cgroups are kept for later petitions (see
        :meth:`release`; none where ``memory``)."""
        self.fs = fs
        self.base = base  # the service's cgroup, a directory path
        self.memory = memory  # petition cgroups have memory.max
        self.prefix = CGROUP_PETITION_PREFIX + (f"{namespace}-" if namespace else "")
        self.spares = spares
        #: The ``cgroup.procs`` of the service's own cgroup (its leaf).
        self.home = os.path.join(base, "cgroup.procs")
        #: Held while a process (the spawner) visits a petition's cgroup to start its
        #: process there: a kill of that cgroup waits for it to be back home.
        self.visiting = threading.Lock()
        # Which cgroup each petition has, and the emptied ones kept for the next. Held to
        # hand one out or take it back, and while a petition's cgroup is read or killed:
        # a cgroup handed to another petition meanwhile would be read or killed instead.
        self._lock = threading.Lock()
        self._held: dict[str, _Cgroup] = {}
        self._spare: list[_Cgroup] = []
        #: Killed cgroups replaced for a petition's next attempt: removed at the stop.
        self._retired: list[str] = []
        self._made = 0  # spare-able cgroups made so far (their names' numbers)

    @classmethod
    def setup(
        cls, fs: CgroupFS | None = None, pid: int | None = None, namespace: str = ""
    ) -> Cgroups:
        """Take over this process's cgroup for petitions (see the module doc); raises
        CgroupUnavailable, with the reason, where the service may not. Without ``fs``:
        the cgroup v2 hierarchy at /sys/fs/cgroup, or a hybrid host's
        /sys/fs/cgroup/unified (which may lack the memory controller)."""
        fs = fs or hierarchy()
        pid = os.getpid() if pid is None else pid
        if not fs.is_cgroup2():
            raise CgroupUnavailable(f"{fs.root} is not a cgroup v2 mount")
        own = fs.own()
        if os.path.basename(own) == CGROUP_SERVICE_LEAF:
            own = os.path.dirname(own)  # a service before this one moved there already
        base = fs.path(own)
        leaf = fs.path(own, CGROUP_SERVICE_LEAF)
        try:
            if own != "/":
                if not fs.exists(leaf):
                    fs.mkdir(leaf)
                fs.write(os.path.join(leaf, "cgroup.procs"), str(pid))
                _move_parent(fs, base, leaf)
            else:  # the root cgroup may hold processes; may we create one under it?
                probe = fs.path(own, f"{CGROUP_PETITION_PREFIX}probe-{pid}")
                fs.mkdir(probe)
                fs.rmdir(probe)
        except OSError as e:
            raise CgroupUnavailable(f"cannot create cgroups under {base}: {e.strerror}") from None
        cgroups = cls(fs, base, memory=False, namespace=namespace)
        if own != "/":
            cgroups.home = os.path.join(leaf, "cgroup.procs")
        cgroups.remove_stale()
        try:
            available = fs.read(os.path.join(base, "cgroup.controllers")).split()
            wanted = [c for c in ("memory", "pids") if c in available]
            if wanted:
                fs.write(
                    os.path.join(base, "cgroup.subtree_control"),
                    " ".join(f"+{c}" for c in wanted),
                )
            enabled = fs.read(os.path.join(base, "cgroup.subtree_control")).split()
        except OSError as e:
            # Another process (not the service) in the same cgroup, typically: the
            # cgroups still find and kill every process, memory is measured instead.
            log.warning("cannot enable the memory controller in %s: %s", base, e.strerror)
            enabled = []
        cgroups.memory = "memory" in enabled
        return cgroups

    # -- one petition's cgroup ------------------------------------------------------------
    def path(self, token: str) -> str:
        """The directory of petition ``token``'s cgroup (where it would be made, if it has
        none)."""
        held = self._held.get(token)
        return held.path if held is not None else os.path.join(self.base, self.prefix + token)

    @property
    def reusing(self) -> bool:
        """Whether emptied cgroups are kept for later petitions: not with the memory
        controller (``memory.peak`` cannot be reset for the next one)."""
        return self.spares > 0 and not self.memory

    def create(self, token: str, memory_limit: int = 0) -> str:
        """The cgroup of petition ``token`` (a spare one, else made; with ``memory.max``
        if ``memory_limit``); returns its ``cgroup.procs`` path. Called before each of
        its processes is started."""
        with self._lock:
            held = self._held.get(token)
            replaced = held is not None and held.killed
            if held is not None and held.killed:  # an attempt after a kill: a new cgroup
                del self._held[token]
                try:  # emptied before a retry; else it goes at the stop
                    self.fs.rmdir(held.path)
                except OSError:
                    self._retired.append(held.path)
                held = None
            while held is None and self._spare:
                spare = self._spare.pop()
                # Gone if a service sharing the state directory was stopped and its
                # successor removed it as stale (not while this one runs: remove_stale).
                if self.fs.exists(spare.path):
                    held = self._held[token] = spare
            if held is not None:
                held.emptied = False  # a process of it may be on its way in
        if held is None:
            if self.reusing:  # named for the service, not the petition: to be reused
                with self._lock:
                    self._made += 1
                    name = f"{os.getpid()}.c{self._made}"
            elif replaced:  # not the killed one's name, which may still be taken
                with self._lock:
                    self._made += 1
                    name = f"{token}.r{self._made}"
            else:
                name = token
            path = os.path.join(self.base, self.prefix + name)
            try:
                self.fs.mkdir(path)  # one call, not a look first: every petition's start
            except FileExistsError:
                pass  # created before (its memory limit, or an earlier attempt)
            with self._lock:
                held = self._held.setdefault(token, _Cgroup(path))
        if memory_limit and self.memory:
            self.fs.write(os.path.join(held.path, "memory.max"), str(memory_limit))
            swap = os.path.join(held.path, "memory.swap.max")
            if self.fs.exists(swap):
                self.fs.write(swap, "0")  # swapping out would pass the limit unseen
        return os.path.join(held.path, "cgroup.procs")

    @staticmethod
    def wrap(procs_file: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run so that it enters the cgroup of ``procs_file`` before it execs."""
        return ["/bin/sh", "-c", _ENTER, procs_file, *argv]

    def _listed(self, token: str) -> list[int]:
        """What petition ``token``'s ``cgroup.procs`` lists (nothing if it has no cgroup);
        called with the lock held."""
        try:
            text = self.fs.read(os.path.join(self.path(token), "cgroup.procs"))
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def pids(self, token: str) -> list[int]:
        """The processes in petition ``token``'s cgroup (none if it has none)."""
        with self._lock:
            return self._listed(token)

    def emptied(self, token: str) -> bool:
        """Whether petition ``token``'s cgroup holds no process now. Call it only once
        the petition can start no more (its action returned): then, if it is empty, it
        stays so, and :meth:`release` may give it to another petition."""
        with self._lock:
            if self._listed(token):
                return False
            held = self._held.get(token)
            if held is not None:
                held.emptied = True
                held.final = None  # its CPU time is read again: final now
            return True

    def oom_kills(self, token: str) -> int:
        """How many of the petition's processes the kernel killed for its memory.max."""
        try:
            text = self.fs.read(os.path.join(self.path(token), "memory.events"))
        except OSError:
            return 0
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
        return 0

    def usage(self, token: str) -> int | None:
        """The most memory the petition's cgroup held (``memory.peak``; else now)."""
        for name in ("memory.peak", "memory.current"):
            try:
                return int(self.fs.read(os.path.join(self.path(token), name)).split()[0])
            except (OSError, ValueError, IndexError):
                continue
        return None

    def peak(self, token: str) -> int | None:
        """The most memory the petition's cgroup has held (``memory.peak``, Linux 5.19+:
        its processes' memory with the page cache and kernel memory charged to it); None
        without it (``memory.current`` after the end is no peak)."""
        try:
            return int(self.fs.read(os.path.join(self.path(token), "memory.peak")).split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def cpu_seconds(self, token: str) -> float | None:
        """CPU seconds (user + system) every process of the petition's cgroup used, those
        that have exited included (``cpu.stat``, kept by every cgroup v2; what earlier
        petitions used in a reused cgroup is not counted)."""
        with self._lock:
            held = self._held.get(token)
            usec = _usage_usec(self.fs, self.path(token))
            if usec is None:
                return None
            if held is None:
                return usec / 1e6
            if held.emptied:
                held.final = usec  # what the next petition in it starts from
            return max(0, usec - held.start) / 1e6

    def kill(self, token: str) -> None:
        """SIGKILL every process in petition ``token``'s cgroup, at once.

        Its cgroup is never given a process again (its next attempt gets a new one, and
        :meth:`release` does not keep it): after ``cgroup.kill``, some kernels (6.18 here)
        SIGKILL every child later cloned into it with ``CLONE_INTO_CGROUP``, before it
        execs."""
        with self.visiting, self._lock:  # never the spawner with them
            held = self._held.get(token)
            if held is not None:
                held.killed = True
            kill_file = os.path.join(self.path(token), "cgroup.kill")
            if self.fs.exists(kill_file):
                try:
                    self.fs.write(kill_file, "1")
                    return
                except OSError:
                    pass
            for pid in self._listed(token):  # a kernel before 5.14: one by one
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    def release(self, token: str) -> bool:
        """Petition ``token`` has ended: True if its cgroup was kept for another petition
        (it was found empty by :meth:`emptied` since its last process was started) or it
        had none; False if the caller is to :meth:`remove` it."""
        with self._lock:
            held = self._held.get(token)
            if held is None:
                return True
            if held.killed or not (
                held.emptied and self.reusing and len(self._spare) < self.spares
            ):
                return False
            if held.final is None:  # not read since it emptied
                held.final = _usage_usec(self.fs, held.path)
                if held.final is None:
                    return False
            del self._held[token]
            held.start, held.final = held.final, None
            self._spare.append(held)
            return True

    def remove(self, token: str, timeout: float = 1.0) -> bool:
        """Remove petition ``token``'s cgroup once empty (killing what is left); False
        if it is still busy after ``timeout`` seconds (logged)."""
        path = self.path(token)
        if not self.fs.exists(path):
            with self._lock:
                self._held.pop(token, None)
            return True
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.fs.rmdir(path)
                with self._lock:
                    self._held.pop(token, None)
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    log.warning("cgroup %s is still busy; left in place", path)
                    return False
                self.kill(token)
                time.sleep(0.02)

    def remove_spares(self) -> None:
        """Remove the cgroups kept for later petitions (the service stops)."""
        with self._lock:
            paths = [spare.path for spare in self._spare] + self._retired
            self._spare, self._retired = [], []
        for path in paths:
            try:
                self.fs.rmdir(path)
            except OSError as e:
                log.warning("cannot remove the cgroup %s: %s", path, e.strerror)

    def remove_stale(self) -> int:
        """Remove the petition cgroups a previous service left (what is in them is
        killed); returns how many. Those of a service still running with the same state
        directory (at another address) are its own: left alone."""
        names = [
            name
            for name in self.fs.listdir(self.base)
            if name.startswith(self.prefix) and not _serving(name[len(self.prefix) :].split(".")[0])
        ]
        for name in names:
            token = name[len(self.prefix) :]
            left = self.pids(token)
            if left:
                log.warning("killing %d process(es) a previous service left in %s", len(left), name)
            self.remove(token)
        self._remove_abandoned()
        return len(names)

    def _remove_abandoned(self) -> None:
        """Remove the empty petition cgroups other services left when they died (killed
        with SIGKILL, say: nobody else would). A petition's token starts with its
        service's PID (``Service.token_prefix``); a cgroup whose service is alive, or
        that holds processes, is left alone."""
        for name in self.fs.listdir(self.base):
            if not name.startswith(CGROUP_PETITION_PREFIX) or name.startswith(self.prefix):
                continue
            _, _, token = name[len(CGROUP_PETITION_PREFIX) :].partition("-")
            pid = token.partition(".")[0]
            if not pid.isdigit() or os.path.exists(f"/proc/{pid}"):
                continue
            path = os.path.join(self.base, name)
            try:
                if not self.fs.read(os.path.join(path, "cgroup.procs")).split():
                    self.fs.rmdir(path)
            except OSError:
                pass
