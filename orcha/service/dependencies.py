"""What a petition may run ``--after`` (and ``--after-any``): the check of a new or
changed request's dependencies, at submission (``run``, arrays, ``restart``) and at
``orcha edit``.

A petition may not run after itself, nor after a reference that names no petition (or
array: an array's name stands for all its members, see orcha.service.array_ends). Nor
may it run after one that, through the petitions it waits for, waits for it: such a
cycle keeps every petition in it queued forever (none ever ends, so none starts), so the
request that would close it is refused, naming the cycle. Only queued petitions whose
dependencies are not met yet wait for others: a running or ended one, or one whose
dependencies were settled, ends a path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from orcha.errors import ExitCode, PetitionError
from orcha.service.references import pin
from orcha.states import State

if TYPE_CHECKING:
    from orcha.protocol.schedule import Schedule
    from orcha.service.scheduler import Scheduler
    from orcha.service.store import Store

#: A petition's ID -> the IDs it is about to run after (the other petitions changed by
#: the same request: an array's members edited together).
Planned = Mapping[str, tuple[str, ...]]


def check(
    petition_id: str,
    schedule: Schedule,
    scheduler: Scheduler,
    store: Store | None,
    planned: Planned | None = None,
) -> None:
    """Refuse (PetitionError, one line) dependencies on itself (REFUSED), on references
    that name no petition (NO_PETITION) and those that would close a cycle (REFUSED);
    keep the others pinned (``schedule`` is changed; see references.pin). ``planned``:
    the new dependencies of other petitions changed with this one."""

    def pinned(dep: str) -> str:
        found = pin(dep, scheduler, store)
        if found is None and store is not None and store.array_refs(dep) is not None:
            found = dep  # an array's name: all its members (see orcha.service.array_ends)
        if dep == petition_id or found is None:
            itself = dep == petition_id
            raise PetitionError(
                f"petition {petition_id!r} cannot run after itself; check --after"
                if itself else f"there is no petition {dep!r} to run after; see 'orcha status'",
                ExitCode.REFUSED if itself else ExitCode.NO_PETITION,
            )  # fmt: skip
        return found

    if not schedule.dependencies:
        return
    schedule.after = tuple(dict.fromkeys(map(pinned, schedule.after)))
    schedule.after_any = tuple(dict.fromkeys(map(pinned, schedule.after_any)))
    path = cycle(petition_id, schedule.dependencies, scheduler, planned or {})
    if path is not None:
        raise PetitionError(
            f"petition {petition_id!r} cannot run after {path[1]!r}: that makes a dependency "
            f"cycle ({' -> '.join(path)}) in which none would ever start; check --after",
            ExitCode.REFUSED,
        )


def cycle(
    petition_id: str, deps: tuple[str, ...], scheduler: Scheduler, planned: Planned
) -> list[str] | None:
    """The shortest cycle ``petition_id`` would be in if it ran after ``deps``
    (``[petition_id, dep, ..., petition_id]``), or None. The petitions in ``planned``
    wait for their planned dependencies instead of their own."""
    # Breadth first, with the way back to the start: the cycle named is a shortest one.
    came_from = dict.fromkeys(deps, petition_id)
    frontier = list(came_from)
    with scheduler.lock:  # one consistent view of the queue
        while frontier:
            following: list[str] = []
            for node in frontier:
                if node == petition_id:
                    path = [node]
                    step = came_from[node]
                    while step != petition_id:
                        path.append(step)
                        step = came_from[step]
                    return [petition_id, *reversed(path)]
                for dep in _waits_for(node, scheduler, planned):
                    if dep not in came_from:
                        came_from[dep] = node
                        following.append(dep)
            frontier = following
    return None


def _waits_for(petition_id: str, scheduler: Scheduler, planned: Planned) -> tuple[str, ...]:
    """The IDs petition ``petition_id`` waits for before it may start: none unless it is
    queued with dependencies not met yet (``planned``: it is about to wait for those)."""
    if petition_id in planned:
        return planned[petition_id]
    job = scheduler.peek(petition_id)
    if job is None:
        return scheduler.array_waits(petition_id)  # an array waits for its members
    if job.state is not State.QUEUED or job.deps_ready:
        return ()
    return job.schedule.dependencies
