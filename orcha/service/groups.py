"""Group limits and pauses: the part of the scheduler users steer with ``orcha group``,
``orcha pause`` and ``orcha resume``. The state lives in the hold predicates'
:class:`~orcha.service.predicates.Holds`; changing it admits what may now start.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orcha.service.job import Job
    from orcha.service.predicates import Holds


class GroupControl:
    """Mixed into :class:`~orcha.service.scheduler.Scheduler`, whose lock, hold state,
    waiting jobs and admission it uses."""

    lock: threading.RLock
    _state: Holds
    _waiting: dict[int, Job]

    def admit(self) -> None:
        raise NotImplementedError

    def set_group_limit(self, group: str, limit: int | None) -> None:
        """At most ``limit`` petitions of ``group`` run at once (None: no own limit)."""
        with self.lock:
            self._state.set_limit(group, limit)
            self.admit()

    def set_paused(
        self,
        paused: bool,
        jobs: Iterable[Job] = (),
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
            return self._state.report(queued)

    def group_limits(self) -> dict[str, int]:
        with self.lock:
            return dict(self._state.group_limits)
