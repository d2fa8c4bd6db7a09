"""Accounting: what a petition used, as Slurm's ``sacct`` reports it (see
docs/json-output.rst and docs/concepts.rst).

Measured by the kernel, never by a loop per petition (an idle service does nothing):

* the processes a kind spawns and streams (``ctx.spawn`` then ``ctx.pump``: every
  ``orcha run``) are reaped with ``wait4``, which gives the CPU time (user + system) of
  each and of the descendants it waited for, and the peak resident size of the largest
  of them where that is their own, not the memory of the process that started them
  (:mod:`orcha.service.rusage`; :meth:`orcha.service.machines.Machine.reap`);
* where the petition has a cgroup of its own, ``cpu.stat`` adds what the rest of its
  tree used (processes it did not wait for, leftovers), and ``memory.peak`` (with the
  memory controller) the peak of the whole tree at once
  (:meth:`~orcha.service.machines.Machine.account`, after each attempt);
* ``orcha status ID`` of a running petition adds what its live processes have used so
  far (one look at its tree, when asked).

CPU time adds up over a petition's attempts; the peak is the largest of them. A kind
that runs its processes without ``ctx.pump`` (or an original-API action) is measured
only through its cgroup: without one its figures stay empty (null).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orcha.service.job import Job

log = logging.getLogger("orcha.service.accounting")


def wall_time(record: dict[str, Any], now: float) -> float | None:
    """Seconds from its start to its end (to ``now`` while it runs); None if it never
    started."""
    return span(record.get("started"), record.get("ended"), record.get("state"), now)


def span(started: Any, ended: Any, state: Any, now: float) -> float | None:
    """:func:`wall_time` of a record with these ``started``, ``ended`` and ``state``."""
    if not started:
        return None
    if ended is None and state != "RUNNING":
        return None  # ended without a saved end: not known
    return round(max(0.0, (ended or now) - started), 3)


def live_usage(job: Job) -> dict[str, Any]:
    """The ``cpu_time`` and ``peak_rss`` of a running petition so far: what its ended
    attempts and reaped processes used, plus what its live processes have used (their
    CPU time and that of the children they reaped; their resident memory now, summed)."""
    try:
        now = job.placed.measure_tree(job)
    except Exception:  # a machine that cannot measure, or a tree that just went
        log.debug("petition %s: cannot measure its tree", job.id, exc_info=True)
        now = {}
    cpu = (job.cpu_time or 0.0) + float(now.get("cpu_seconds", 0.0))
    rss = max(job.peak_rss or 0, int(now.get("rss", 0)))
    return {
        "cpu_time": round(cpu, 3) if cpu or job.cpu_time is not None else None,
        "peak_rss": rss or None,
    }
