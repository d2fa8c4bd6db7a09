"""Why waiting petitions wait, in words (what ``orcha status`` shows for each).

The words are those of the predicate that said no (:mod:`orcha.service.predicates`), or
of the backfill rule when a petition that would fit stays behind a blocked one. Pure: it
works on a copy of the queue and on snapshots of the machines, so the scheduler words it
outside its lock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orcha.defaults import BACKFILL_LOOKAHEAD
from orcha.service.predicates import Kept, ends_by, leaves_room

if TYPE_CHECKING:
    from orcha.service.predicates import Capacity, Hold, Holds, Predicate
    from orcha.service.queued import Waiting

_INF = float("inf")


@dataclass
class Rules:
    """The scheduler's predicates by role (see :mod:`orcha.service.predicates`)."""

    holds: list[Hold]
    resources: list[Predicate]
    legacy_resources: list[Predicate]  # for petitions of the original API
    conditions: list[Predicate]
    #: Words for a petition that fits on none of several machines, from each machine and
    #: its reason (a cluster names the best worker); default: every machine's reason.
    summary: Callable[[Waiting, Sequence[Capacity], list[str]], str] | None = None

    def hold_reason(self, job: Waiting) -> str | None:
        """Why ``job`` is held whatever the resources, or None."""
        for hold in self.holds:
            reason = hold(job, None)
            if reason is not None:
                return reason
        return None

    def misfit(self, job: Waiting, machines: Sequence[Capacity]) -> str | None:
        """None if its resources fit on some machine, else why not (on each machine)."""
        resources = self.resources if job.native else self.legacy_resources
        reasons = []
        for machine in machines:
            reason = _first_no(resources, job, machine)
            if reason is None:
                return None
            reasons.append(reason)
        if self.summary is not None:
            return self.summary(job, machines, reasons)
        if len(machines) == 1:
            return reasons[0]
        return "; ".join(f"{m.name}: {r}" for m, r in zip(machines, reasons, strict=True))

    def unmet_condition(self, job: Waiting, machines: Sequence[Capacity]) -> str | None:
        """None if its conditions hold on a machine its resources fit on, else why not."""
        if not job.native:
            return None  # its condition was one of its resources
        first = None
        for machine in machines:
            if _first_no(self.resources, job, machine) is not None:
                continue
            reason = _first_no(self.conditions, job, machine)
            if reason is None:
                return None
            first = first or reason
        return first


def _first_no(predicates: Sequence[Predicate], job: Waiting, machine: Capacity) -> str | None:
    for predicate in predicates:
        reason = predicate(job, machine)
        if reason is not None:
            return reason
    return None


def explain(
    jobs: Sequence[Waiting],
    holds: dict[int, str | None],
    machines: Sequence[Capacity],
    rules: Rules,
    now: float,
    backfill_bound: float,
    groups: Holds,
) -> dict[int, str]:
    """For each of ``jobs`` (waiting, in order; by seq) why it has not started.

    ``holds``: each job's hold reason (read under the scheduler's lock); ``machines``:
    snapshots of the machines' free resources; ``groups``: a copy of the group limits
    and counts. A job its resources fit on no machine is a blocker; a later one that
    fits waits behind it unless it leaves every blocker ahead of it room, or its
    ``--timeout`` ends within ``backfill_bound`` (:mod:`orcha.service.backfill`).
    """
    out: dict[int, str] = {}
    blocker: Waiting | None = None
    kept: Kept | None = Kept(machines)  # what the blockers need (None: one of the original API's)
    ahead = 0  # waiting for resources ahead of this one
    looked = 0  # jobs not held behind the first blocker
    deadline = _INF
    for job in jobs:
        hold = holds[job.seq]
        if hold is not None:
            out[job.seq] = hold
            continue
        looked += blocker is not None
        words = rules.misfit(job, machines)
        if words:
            if blocker is not None:
                words += f"; {ahead} ahead of it"
            else:
                blocker = job
            ahead += 1
            since = job.blocked_since if job.blocked_since is not None else now
            deadline = min(deadline, since + backfill_bound)
            if kept is not None and job.native and looked <= BACKFILL_LOOKAHEAD:
                kept.add(job)
            elif not job.native and looked <= BACKFILL_LOOKAHEAD:
                kept = None
            out[job.seq] = words
        elif (
            blocker is not None
            and not ends_by(job.schedule, now, deadline)
            and not _leaves_room(job, machines, kept, groups, looked)
        ):
            out[job.seq] = (
                f"behind {blocker.id}, which waits for resources (only a petition that "
                "leaves it what it needs, or whose --timeout ends soon enough, may pass it)"
            )
        else:
            out[job.seq] = rules.unmet_condition(job, machines) or "starting"
    return out


def _leaves_room(
    job: Waiting, machines: Sequence[Capacity], kept: Kept | None, groups: Holds, looked: int
) -> bool:
    """Whether ``job`` may pass the blockers ahead of it because it leaves them room on
    some machine (and the walk looks that far behind the first)."""
    if kept is None or looked > BACKFILL_LOOKAHEAD:
        return False
    return any(leaves_room(job, m, kept, groups) for m in machines)
