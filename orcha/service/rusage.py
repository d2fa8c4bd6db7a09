"""What the kernel says a reaped process used (``wait4``), and which part of it is the
process's own.

``wait4`` gives the CPU seconds of a process and of the children it waited for, and
``ru_maxrss``: the largest resident size among them. But Linux, at ``execve``, records
the resident high-water mark of the memory the process had *before* the exec into that
figure: for a child made by ``vfork``/``clone(CLONE_VM)`` (the service's ``clone3``
helper, ``posix_spawn``), the memory of its parent; for one made by ``fork``, the copy
of it. So ``ru_maxrss`` of any process a Python program starts is at least about the
size of that program (30-40 MiB for the service), even for ``true``.

:func:`own_peak` keeps the figure only where it cannot be that: larger than the most
the starting process has ever held (its ``VmHWM``; the contamination can only be that
or less). Then it is what the process tree itself reached; else it is not known (None).
Only the standard library: the spawner processes (:mod:`orcha.service.zygote` has its
own copy, :mod:`orcha.service.dask.spawner`) use it too.
"""

from __future__ import annotations

import os
import resource
import subprocess


def high_water() -> int:
    """The most this process's memory has held resident, in bytes (``VmHWM``): at most
    what a process it starts carries into its ``ru_maxrss`` at its exec."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    # Not a Linux /proc: what getrusage says, an upper bound of it.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


#: The last :func:`high_water` read. It only grows, so a peak at or below it cannot be
#: the child's own without reading /proc again (once per petition's end, else).
_known_high_water = 0


def own_peak(maxrss_kib: int) -> int | None:
    """``ru_maxrss`` (KiB) of a child of this process, reaped: its peak resident bytes
    if they are its own (see the module doc), else None (not known)."""
    global _known_high_water
    peak = maxrss_kib * 1024
    if peak <= _known_high_water:
        return None
    _known_high_water = high_water()  # threads racing here at worst read it once more
    return peak if peak > _known_high_water else None


def reap(proc: subprocess.Popen[bytes]) -> tuple[int, float | None, int | None]:
    """Wait for ``proc``, a child of the service, as ``proc.wait()`` does: (its
    returncode, the CPU seconds (user + system) and the peak resident bytes of it and of
    the descendants it waited for (None where not known: :func:`own_peak`)), from
    ``wait4``: the kernel's own figures, measured without polling. (returncode, None,
    None) if it was reaped already."""
    if getattr(proc, "adopted", True) is False:  # a SpawnedProcess the spawner waits for
        returncode = proc.wait()
        cpu, rss = proc.usage  # type: ignore[attr-defined]
        return returncode, cpu, rss
    if proc.returncode is None:
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except ChildProcessError:  # reaped meanwhile (poll()): its figures are gone
            return proc.wait(), None, None
        proc.returncode = os.waitstatus_to_exitcode(status)  # what Popen.wait() returns
        return proc.returncode, usage.ru_utime + usage.ru_stime, own_peak(usage.ru_maxrss)
    return proc.returncode, None, None
