"""Group limits and pauses: the part of the scheduler users steer with ``orcha group``,
``orcha pause`` and ``orcha resume``, and the settings a configuration reload changes
(aging, the GPU inventory; ``orcha.service.reload``). The state lives in the hold
predicates' :class:`~orcha.service.predicates.Holds`; changing it admits what may now
start.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from orcha.service.queued import set_rank

if TYPE_CHECKING:
    from orcha.service.job import Job
    from orcha.service.machines import Machine
    from orcha.service.petition_queue import PetitionQueue, SortedIndex
    from orcha.service.predicates import Holds
    from orcha.service.queued import Waiting
    from orcha.service.scheduler_lock import SchedulerLock


class GroupControl:
    """Mixed into :class:`~orcha.service.scheduler.Scheduler`, whose lock, hold state,
    waiting jobs and admission it uses."""

    lock: SchedulerLock
    _state: Holds
    _waiting: dict[int, Waiting]
    _queue: PetitionQueue
    _timed: SortedIndex
    _running: dict[int, Job]
    machines: list[Machine]
    inventory: tuple[str, ...]
    aging: float

    def admit(self) -> None:
        raise NotImplementedError

    def order_key(self, job: Waiting) -> float:
        raise NotImplementedError

    def set_group_limit(self, group: str, limit: int | None) -> None:
        """At most ``limit`` petitions of ``group`` run at once (None: no own limit)."""
        with self.lock:
            self._state.set_limit(group, limit)
            self.admit()

    def set_paused(
        self,
        paused: bool,
        jobs: Iterable[Waiting] = (),
        groups: Iterable[str] = (),
        everything: bool = False,
    ) -> None:
        """Pause (or resume) admission of some jobs, whole groups, or everything."""
        with self.lock:
            for job in jobs:
                job.paused = paused
            self._state.pause(paused, groups, everything)
            if everything and not paused:
                for job in self._waiting.values():
                    job.paused = False
            if not paused:
                self.admit()

    def paused_groups(self) -> set[str]:
        with self.lock:
            return set(self._state.paused_groups)

    def groups(self) -> list[dict[str, Any]]:
        """Every group with a limit, a pause or a petition: name, limit, counts, paused."""
        with self.lock:
            queued: dict[str, int] = {}
            for job in self._waiting.values():
                queued[job.schedule.group] = queued.get(job.schedule.group, 0) + 1
            report = self._state.report(queued)
            warnings = self.group_warnings()
            for group in report:
                if group["name"] in warnings:
                    group["warning"] = warnings[group["name"]]
            return report

    def group_limits(self) -> dict[str, int]:
        with self.lock:
            return dict(self._state.group_limits)

    def group_warnings(self, limits: dict[str, int] | None = None) -> dict[str, str]:
        """For each group whose limit (``limits``, default the ones set) is above the
        service's CPU capacity, a warning saying so: such a limit never binds."""
        capacity = sum(m.slots for m in self.machines)
        if limits is None:
            limits = self.group_limits()
        return {
            name: f"group {name}'s limit of {limit} running is above the service's capacity "
            f"of {capacity} CPU slot(s): it never binds; lower it or raise max_running"
            for name, limit in sorted(limits.items())
            if limit > capacity
        }

    # -- what a configuration reload changes ------------------------------------------------
    def set_aging(self, aging: float) -> None:
        """Age waiting petitions by ``aging`` seconds per step from now on: every waiting
        petition is ranked again (the order of equal effective priorities stays that of
        arrival)."""
        with self.lock:
            if aging == self.aging:
                return
            self.aging = aging
            ready = [job for job in self._waiting.values() if job.deps_ready]
            for job in self._waiting.values():
                set_rank(job, (self.order_key(job), job.seq))
            self._queue.clear()
            self._timed.clear()
            for job in ready:
                self._queue.push(job)
                if job.schedule.longest_run is not None:
                    self._timed.push(job)
            self.admit()

    def set_inventory(self, machine: Machine, gpus: Iterable[str]) -> None:
        """Hand out ``gpus`` on ``machine`` from now on; running petitions keep theirs."""
        with self.lock:
            held = [g for job in self._running.values() if job.machine is machine
                    for g in job.gpu_ids]  # fmt: skip
            machine.set_inventory(gpus, held)
            self.inventory = tuple(g for m in self.machines for g in m.inventory)
            self.admit()
