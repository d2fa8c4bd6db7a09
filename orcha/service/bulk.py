"""Bulk operations on live petitions: which ones a filter selects (``cancel --group G
--state S --all``), the order many are cancelled in, and sending a signal to running
trees (``cancel --signal SIG``)."""

from __future__ import annotations

import logging
import signal as signals
from collections.abc import Iterable
from typing import TYPE_CHECKING

from orcha.protocol.arrays import ARRAY_SEPARATOR
from orcha.protocol.ids import is_number
from orcha.states import State

if TYPE_CHECKING:
    from orcha.service.job import Job
    from orcha.service.queued import Waiting

log = logging.getLogger("orcha.service")


def selected(jobs: Iterable[Waiting], groups: list[str], states: list[str]) -> list[Waiting]:
    """The queued or running ``jobs`` of any of ``groups`` (all if none) in any of
    ``states`` (all if none): the filters narrow each other."""
    return [
        job for job in jobs
        if (not groups or job.schedule.group in groups)
        and (not states or str(job.state) in states)
    ]  # fmt: skip


def cancel_order(jobs: Iterable[Job]) -> list[Job]:
    """``jobs`` (each once) in the order to cancel them: the queued ones first (cancelling
    a running one frees room that one of them would take), each before any of them it
    runs after (an array's name: its members). A queued petition whose dependency ends
    CANCELLED fails (exit 210): one cancelled with its dependency must end CANCELLED, as
    asked, not FAILED."""
    unique = list(dict.fromkeys(jobs))
    queued = {job.id: job for job in unique if job.state is State.QUEUED}
    members: dict[str, list[str]] = {}  # what an array's name may stand for in --after
    for petition_id in queued:
        name, sep, index = petition_id.rpartition(ARRAY_SEPARATOR)
        if sep and name and is_number(index):
            members.setdefault(name, []).append(petition_id)
    dependants: dict[str, list[Job]] = {}  # among ``jobs``: who waits for whom
    for job in queued.values():
        for dep in job.schedule.dependencies:
            for waited in (dep,) if dep in queued else members.get(dep, ()):
                dependants.setdefault(waited, []).append(job)
    # Each after its dependants (depth first, iteratively: a chain of thousands must not
    # exhaust the stack); those that wait for none of the others keep their order.
    ordered: list[Job] = []
    seen: set[str] = set()
    for first in queued.values():
        if first.id in seen:
            continue
        seen.add(first.id)
        stack = [(first, iter(dependants.get(first.id, ())))]
        while stack:
            job, waiting = stack[-1]
            dependant = next((d for d in waiting if d.id not in seen), None)
            if dependant is None:
                ordered.append(job)
                stack.pop()
            else:
                seen.add(dependant.id)
                stack.append((dependant, iter(dependants.get(dependant.id, ()))))
    return ordered + [job for job in unique if job.id not in queued]


def signal_name(sig: int) -> str:
    """``SIGUSR1`` for 10; ``signal 42`` for a number without a name."""
    try:
        return signals.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def signal(jobs: Iterable[Job], sig: int) -> dict[str, str]:
    """Send ``sig`` to the process tree of each running job (not to queued ones): for
    each, ``"signalled"`` or why not."""
    results: dict[str, str] = {}
    name = signal_name(sig)
    for job in dict.fromkeys(jobs):
        if job.state is not State.RUNNING:
            results[job.id] = (
                f"petition {job.id!r} is {str(job.state).lower()}, not running; no {name} sent"
            )
            continue
        count = job.placed.signal_tree(job, sig)
        log.info("petition %s: sent %s to %d process(es)", job.id, name, count)
        results[job.id] = "signalled"
    return results
