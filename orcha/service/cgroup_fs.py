"""The OS seam of :mod:`orcha.service.cgroups`: the cgroup v2 hierarchy as files
(:class:`CgroupFS`, which tests replace by a directory of plain files), where it is
mounted on this host, and whether this process may create cgroups in it."""

from __future__ import annotations

import os

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
