"""A cgroup v2 per petition, where the service may create cgroups (points 3b, 3c and 4 of
issue 12; see docs/reliability.rst).

Under its own cgroup (``/proc/self/cgroup``), the service

* moves itself into a leaf, ``orcha-service`` (cgroup v2's "no internal processes" rule:
  a cgroup that hands controllers to its children holds no process itself);
* enables the ``memory`` and ``pids`` controllers for its children, if it may;
* removes the petition cgroups a previous run left (killing what is still in them);
* gives each petition ``orcha-p-TOKEN``: its main process enters it before it execs
  (:meth:`Cgroups.wrap`), so every descendant is born inside, whatever it does to its
  environment, session or parent. ``cgroup.procs`` lists them all; ``cgroup.kill`` kills
  them all at once; ``memory.max`` limits their memory together, and ``memory.events``
  counts the kernel's OOM kills.

Every file access goes through :class:`CgroupFS`, so tests run on a fake cgroupfs (a
directory of plain files).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Sequence

from orcha.defaults import CGROUP_PETITION_PREFIX, CGROUP_SERVICE_LEAF

log = logging.getLogger("orcha.service.cgroups")

#: The shell line a petition's main process runs first: enter the cgroup whose
#: ``cgroup.procs`` is ``$0``, then become the command.
_ENTER = 'echo 0 >"$0" || exit 127; exec "$@"'

#: Where a hybrid host (cgroup v1 controllers) mounts its cgroup v2 hierarchy.
_HYBRID = "/sys/fs/cgroup/unified"


class CgroupUnavailable(Exception):
    """The service may not create cgroups here; the message says why (one line)."""


class CgroupFS:
    """The OS seam: the cgroup v2 hierarchy mounted at ``root``."""

    def __init__(
        self,
        root: str = "/sys/fs/cgroup",
        self_cgroup: str = "/proc/self/cgroup",
        mounts: str = "/proc/self/mounts",
    ) -> None:
        self.root = root
        self._self_cgroup = self_cgroup
        self._mounts = mounts

    def is_cgroup2(self) -> bool:
        """Whether ``root`` is a cgroup2 mount (not cgroup v1, not a hybrid's tmpfs)."""
        try:
            with open(self._mounts) as f:
                return any(
                    len(parts) > 2 and parts[1] == self.root and parts[2] == "cgroup2"
                    for parts in (line.split() for line in f)
                )
        except OSError:
            return False

    def own(self) -> str:
        """This process's cgroup v2, relative to ``root`` (``/`` for the root)."""
        with open(self._self_cgroup) as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip() or "/"
        raise CgroupUnavailable("this process is in no cgroup v2 (/proc/self/cgroup)")

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *(p.strip("/") for p in parts if p.strip("/")))

    def read(self, path: str) -> str:
        # os.read, not open(): a petition's end reads two or three of these files, and
        # the io stack cost more than the kernel's part.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks).decode()

    def write(self, path: str, text: str) -> None:
        with open(path, "w") as f:
            f.write(text)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def mkdir(self, path: str) -> None:
        os.mkdir(path)

    def rmdir(self, path: str) -> None:
        """Remove an empty cgroup (its interface files go with it)."""
        os.rmdir(path)

    def listdir(self, path: str) -> list[str]:
        return [n for n in os.listdir(path) if os.path.isdir(os.path.join(path, n))]


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


def hierarchy() -> CgroupFS:
    """The cgroup v2 hierarchy of this host: /sys/fs/cgroup, or a hybrid host's
    /sys/fs/cgroup/unified (which may lack the memory controller)."""
    fs = CgroupFS()
    if not fs.is_cgroup2() and CgroupFS(_HYBRID).is_cgroup2():
        return CgroupFS(_HYBRID)
    return fs


def unavailable() -> str | None:
    """Why this process could not give petitions cgroups (one line), or None; changes
    nothing (a first look, e.g. for tests; :meth:`Cgroups.setup` decides)."""
    fs = hierarchy()
    if not fs.is_cgroup2():
        return f"{fs.root} is not a cgroup v2 mount"
    try:
        base = fs.path(fs.own())
    except (OSError, CgroupUnavailable) as e:
        return str(e)
    if not os.access(base, os.W_OK):
        return f"this process may not create cgroups under {base}"
    return None


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

    def __init__(self, fs: CgroupFS, base: str, memory: bool, namespace: str = "") -> None:
        """``namespace``: a word naming the service (its state directory), so that two
        services sharing a cgroup never take each other's petitions for stale ones."""
        self.fs = fs
        self.base = base  # the service's cgroup, a directory path
        self.memory = memory  # petition cgroups have memory.max
        self.prefix = CGROUP_PETITION_PREFIX + (f"{namespace}-" if namespace else "")
        #: The ``cgroup.procs`` of the service's own cgroup (its leaf).
        self.home = os.path.join(base, "cgroup.procs")
        #: Held while a process (the spawner) visits a petition's cgroup to start its
        #: process there: a kill of that cgroup waits for it to be back home.
        self.visiting = threading.Lock()

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
        return os.path.join(self.base, self.prefix + token)

    def create(self, token: str, memory_limit: int = 0) -> str:
        """The cgroup of petition ``token`` (created if need be, with ``memory.max`` if
        ``memory_limit``); returns its ``cgroup.procs`` path."""
        path = self.path(token)
        try:
            self.fs.mkdir(path)  # one call, not a look first: every petition's start
        except FileExistsError:
            pass  # created before (its memory limit, or an earlier attempt)
        if memory_limit and self.memory:
            self.fs.write(os.path.join(path, "memory.max"), str(memory_limit))
            swap = os.path.join(path, "memory.swap.max")
            if self.fs.exists(swap):
                self.fs.write(swap, "0")  # swapping out would pass the limit unseen
        return os.path.join(path, "cgroup.procs")

    @staticmethod
    def wrap(procs_file: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run so that it enters the cgroup of ``procs_file`` before it execs."""
        return ["/bin/sh", "-c", _ENTER, procs_file, *argv]

    def pids(self, token: str) -> list[int]:
        """The processes in petition ``token``'s cgroup (none if it has none)."""
        try:
            text = self.fs.read(os.path.join(self.path(token), "cgroup.procs"))
        except OSError:
            return []
        return [int(p) for p in text.split()]

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

    def cpu_seconds(self, token: str) -> float | None:
        """CPU seconds (user + system) every process of the petition's cgroup used, those
        that have exited included (``cpu.stat``, kept by every cgroup v2)."""
        try:
            text = self.fs.read(os.path.join(self.path(token), "cpu.stat"))
        except OSError:
            return None
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == "usage_usec" and value.strip().isdigit():
                return int(value) / 1e6
        return None

    def kill(self, token: str) -> None:
        """SIGKILL every process in petition ``token``'s cgroup, at once."""
        path = self.path(token)
        kill_file = os.path.join(path, "cgroup.kill")
        with self.visiting:  # never the spawner with them
            if self.fs.exists(kill_file):
                try:
                    self.fs.write(kill_file, "1")
                    return
                except OSError:
                    pass
            for pid in self.pids(token):  # a kernel before 5.14: one by one
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    def remove(self, token: str, timeout: float = 1.0) -> bool:
        """Remove petition ``token``'s cgroup once empty (killing what is left); False
        if it is still busy after ``timeout`` seconds (logged)."""
        path = self.path(token)
        if not self.fs.exists(path):
            return True
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.fs.rmdir(path)
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    log.warning("cgroup %s is still busy; left in place", path)
                    return False
                self.kill(token)
                time.sleep(0.02)

    def remove_stale(self) -> int:
        """Remove the petition cgroups a previous service left (what is in them is
        killed); returns how many."""
        names = [n for n in self.fs.listdir(self.base) if n.startswith(self.prefix)]
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
