"""Admission: which waiting petition starts next, and when.

Pure logic behind one lock, with no threads or processes of its own: the service calls
:meth:`Scheduler.admit` whenever something that could let a petition start has happened
(a submission, an end, a cancellation, a resume, a changed group limit), and, only while
some petition waits for free memory or for a plugin's predicate (things that change
without telling orcha), every :data:`~orcha.defaults.RECHECK_SECONDS`. The clock and the
machine are parameters, so tests drive it with fakes.

The rules (docs/scheduling.rst explains them for users):

* **Order.** Lowest effective priority first; equal ones in arrival order. With aging,
  a petition's effective priority is ``priority - waited / aging`` (one step better per
  ``aging`` seconds of waiting). Every waiting petition ages at the same rate, so the
  order is that of ``priority + submitted / aging``: fixed at arrival, kept sorted.
* **Holds.** A petition that is paused, whose group is paused or full, or that runs
  ``--after`` petitions that have not ended, is skipped: it holds nothing back. A
  dependency that failed or was cancelled fails the dependent as soon as it ends
  (``--after``; with ``--after-any`` any end will do).
* **Fit.** It starts when its requests fit: CPU slots (the sum over running petitions plus
  its own at most the capacity), memory (available memory minus what running petitions
  reserved at least its request), distinct GPUs from the inventory. Then the predicates
  plugins supply must all hold (one that raises means "not now"; it is logged once).
* **Backfill.** A petition that does not fit is *blocked*, and it is never starved: a
  later petition that fits may start ahead of it only if it cannot delay it by more than
  ``backfill_bound`` seconds, that is, only if it has a ``--timeout`` and all its attempts
  (``--retries``) end within ``backfill_bound`` of the moment the blocked petition was
  first found blocked.
  Petitions without a timeout never pass a blocked one. Original Orcha conditions (of
  petitions sent through its API) block the same way: its ``look_ahead`` behaviour.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from orcha.errors import DuplicateIdError, ExitCode, PetitionError
from orcha.protocol.schedule import DEFAULT_GROUP, Schedule
from orcha.states import State

if TYPE_CHECKING:
    from orcha.service.host import Host
    from orcha.service.job import Job

log = logging.getLogger("orcha.service.scheduler")

_INF = float("inf")

#: How many ended IDs the scheduler remembers for dependants (older ones are looked up
#: in the records).
_RECENT_ENDS = 4096

#: (state, code) of an ended petition, or None if no petition had that ID.
EndLookup = Callable[[str], "tuple[State, int | None] | None"]


def _ends_by(need: Schedule, now: float, deadline: float) -> bool:
    """Whether a petition started now surely frees its resources by ``deadline``."""
    longest = need.longest_run
    return longest is not None and now + longest <= deadline


def gib(n: int) -> str:
    """Bytes as GiB with one decimal, for messages."""
    return f"{n / (1 << 30):.1f} GiB"


class Scheduler:
    """The waiting petitions in order, the running ones, and what they hold."""

    def __init__(
        self,
        start: Callable[[Job], None],
        *,
        capacity: int | Callable[[], int] | None = None,
        host: Host | None = None,
        gpus: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
        aging: float = 0.0,
        backfill_bound: float = 0.0,
        ended: EndLookup | None = None,
        failed: Callable[[Job], None] | None = None,
    ) -> None:
        """``start(job)`` runs an admitted job (called under the lock, must not block);
        ``capacity``: CPU slots (default: the host's cores); ``gpus``: the inventory of
        GPU indices; ``aging``: seconds of waiting per priority step (0: no aging);
        ``backfill_bound``: how long a blocked petition may be delayed by later ones;
        ``ended(id)``: how an ID that is neither queued nor running ended (records);
        ``failed(job)``: told when a waiting job fails (a dependency failed)."""
        if host is None:
            from orcha.service.host import Host

            host = Host()
        self.host = host
        if capacity is None:
            capacity = host.cpu_count()
        self._capacity = capacity if callable(capacity) else (lambda c=capacity: c)
        self._start = start
        self._clock = clock
        self.aging = aging
        self.backfill_bound = backfill_bound
        self._ended = ended or (lambda _id: None)
        self._failed = failed
        self.inventory: tuple[str, ...] = tuple(gpus)
        self._free_gpus: list[str] = list(self.inventory)
        # Waiting jobs whose dependencies are met, sorted by (order key, seq); and those of
        # them with a bounded run (a --timeout), the only ones that may pass a blocked job.
        # Jobs waiting for dependencies are in neither: they cost admission nothing.
        self._order: list[tuple[float, int]] = []
        self._timed: list[tuple[float, int]] = []
        self._waiting: dict[int, Job] = {}  # seq -> every waiting job
        self._live: dict[str, Job] = {}  # ID -> waiting or running job
        self._running: dict[int, Job] = {}  # seq -> running job
        self._legacy_waiting = 0  # waiting jobs of the original API (their own conditions)
        self._used_cpus = 0
        self._reserved_mem = 0
        self._free_cpus = 0  # during a walk: what is left to give
        self._free_mem: int | None = None
        self._group_limits: dict[str, int] = {}
        self._group_running: dict[str, int] = {}
        self._paused_groups: set[str] = set()
        self.paused_all = False
        self._recent_ends: dict[str, tuple[State, int | None]] = {}
        self._condition_errors: set[int] = set()
        self._memory_error = False
        # Waiting jobs by the IDs they run after, so a dependency's end settles them at once.
        self._dependents: dict[str, set[int]] = {}
        self._admitting = False
        self._again = False
        self.lock = threading.RLock()
        self.accepting = True
        #: Whether some petition waits on something that changes without an event (free
        #: memory, a plugin predicate): the service then calls admit() now and then.
        self.needs_recheck = False

    # -- what is known ----------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self._capacity()

    @property
    def running_count(self) -> int:
        return len(self._running)

    @property
    def used_cpus(self) -> int:
        return self._used_cpus

    @property
    def queued_count(self) -> int:
        return len(self._waiting)

    def jobs(self) -> list[Job]:
        """Every waiting or running job: running first, then waiting in order."""
        with self.lock:
            return list(self._running.values()) + self._in_order()

    def waiting(self) -> list[Job]:
        """Every waiting job in order (those waiting for dependencies included)."""
        with self.lock:
            return self._in_order()

    def _in_order(self) -> list[Job]:
        return sorted(self._waiting.values(), key=lambda j: (j.order_key, j.seq))

    def running(self) -> list[Job]:
        with self.lock:
            return list(self._running.values())

    def get(self, petition_id: str) -> Job | None:
        with self.lock:
            return self._live.get(petition_id)

    def order_key(self, job: Job) -> float:
        """Smaller starts first (see the module docstring on aging)."""
        if self.aging > 0:
            return job.priority + job.created / self.aging
        return float(job.priority)

    def effective_priority(self, job: Job) -> float:
        """The priority a waiting job competes with now (its own, improved by aging)."""
        if self.aging > 0 and job.state is State.QUEUED:
            return job.priority - max(0.0, self._clock() - job.created) / self.aging
        return float(job.priority)

    # -- submission ---------------------------------------------------------------------------
    def check_feasible(self, schedule: Schedule) -> None:
        """Refuse (PetitionError) a request that can never fit on this service."""
        capacity = self.capacity
        if schedule.cpus > capacity:
            raise PetitionError(
                f"the petition asks for {schedule.cpus} CPUs but this service has {capacity} "
                "('orcha serve --max-running'); ask for fewer with --cpus",
                ExitCode.REFUSED,
            )
        if schedule.gpus > len(self.inventory):
            have = ", ".join(self.inventory) if self.inventory else "none"
            raise PetitionError(
                f"the petition asks for {schedule.gpus} GPU(s) but this service has "
                f"{len(self.inventory)} ({have}; 'orcha serve --gpus'); ask for fewer with --gpus",
                ExitCode.REFUSED,
            )
        if schedule.mem:
            total = self.host.total_memory()
            if schedule.mem > total:
                raise PetitionError(
                    f"the petition asks for {gib(schedule.mem)} of memory but this host has "
                    f"{gib(total)}; ask for less with --mem",
                    ExitCode.REFUSED,
                )

    def submit(self, job: Job) -> None:
        """Queue ``job`` and start whatever may start. DuplicateIdError if its ID is live."""
        with self.lock:
            if job.id in self._live:
                raise DuplicateIdError(job.id)
            self._live[job.id] = job
            self._insert(job)
            self.admit()

    def _insert(self, job: Job) -> None:
        job.order_key = self.order_key(job)
        self._waiting[job.seq] = job
        if not job.native:
            self._legacy_waiting += 1
        if not job.deps_ready:
            if not self.accepting:
                # Being restored: its dependencies may not be queued again yet. They are
                # looked at once everything is back (settle_dependencies).
                self._watch_dependencies(job)
                return
            outcome = self._dependencies(job)
            if outcome is None:
                job.deps_ready = True
            elif outcome[0] == "fail":
                self._fail(job, outcome[1])
                return
            else:
                self._watch_dependencies(job)
                return
        self._enter_order(job)

    def _enter_order(self, job: Job) -> None:
        entry = (job.order_key, job.seq)
        bisect.insort(self._order, entry)
        if job.schedule.longest_run is not None:
            bisect.insort(self._timed, entry)

    def settle_dependencies(self) -> None:
        """Look at every job waiting for dependencies: start the ready, fail the doomed
        (after a restore, which queues jobs before their dependencies are back)."""
        with self.lock:
            for job in self._in_order():
                if job.deps_ready or job.state is not State.QUEUED:
                    continue
                outcome = self._dependencies(job)
                if outcome is None:
                    job.deps_ready = True
                    self._enter_order(job)
                elif outcome[0] == "fail":
                    self._fail(job, outcome[1])
                else:
                    self._watch_dependencies(job)
            self.admit()

    def _watch_dependencies(self, job: Job) -> None:
        for dep in job.schedule.dependencies:
            if dep in self._live:
                self._dependents.setdefault(dep, set()).add(job.seq)

    def _unqueue(self, job: Job) -> None:
        if self._waiting.pop(job.seq, None) is None:
            return
        entry = (job.order_key, job.seq)
        for ordered in (self._order, self._timed):
            i = bisect.bisect_left(ordered, entry)
            if i < len(ordered) and ordered[i] == entry:
                del ordered[i]
        if not job.native:
            self._legacy_waiting -= 1

    # -- admission ----------------------------------------------------------------------------
    def admit(self) -> None:
        """Start every waiting job that may start now, by the rules above."""
        with self.lock:
            if self._admitting:  # called back from a failure handler: walk once more
                self._again = True
                return
            self._admitting = True
            try:
                self._again = True
                while self._again:
                    self._again = False
                    self._walk()
            finally:
                self._admitting = False

    def _walk(self) -> None:
        """Phase 1 walks the order and starts what fits, up to the first job that does
        not (the blocked one). Phase 2 walks only the jobs with a bounded run behind it,
        the only ones that may pass it. So a refill costs what it looks at, not the
        length of the queue."""
        self.needs_recheck = False
        if not self.accepting or not self._order or self.paused_all:
            return
        self._free_cpus = self.capacity - self._used_cpus
        if self._free_cpus <= 0 and not self._legacy_waiting:
            return  # nothing fits until a petition ends (an event)
        self._free_mem = None  # asked of the host only if some job needs it
        now = self._clock()
        started: list[Job] = []
        blocked: Job | None = None
        for _, seq in self._order:
            if self._free_cpus <= 0 and not self._legacy_waiting:
                break
            job = self._waiting[seq]
            if self._held(job):
                continue
            if not self._fits(job):
                blocked = job
                break
            if job.native and not self._condition(job):
                self.needs_recheck = True
                continue
            self._take(job)
            started.append(job)
        if blocked is not None:
            if blocked.blocked_since is None:
                blocked.blocked_since = now
            deadline = blocked.blocked_since + self.backfill_bound
            start_at = bisect.bisect_right(self._timed, (blocked.order_key, blocked.seq))
            for i in range(start_at, len(self._timed)):
                if self._free_cpus <= 0 or now >= deadline:
                    break
                job = self._waiting[self._timed[i][1]]
                if job.state is not State.QUEUED or self._held(job):
                    continue
                if not self._fits(job):
                    if job.blocked_since is None:
                        job.blocked_since = now
                    deadline = min(deadline, job.blocked_since + self.backfill_bound)
                    continue
                if not _ends_by(job.schedule, now, deadline):
                    continue  # would delay a blocked job by more than the bound
                if job.native and not self._condition(job):
                    self.needs_recheck = True
                    continue
                self._take(job)
                started.append(job)
        for job in started:
            self._unqueue(job)
            self._start(job)

    def _held(self, job: Job) -> bool:
        """Paused, in a paused group, or its group full (a cheap check for admission)."""
        if job.paused:
            return True
        group = job.schedule.group
        if group in self._paused_groups:
            return True
        limit = self._group_limits.get(group)
        return limit is not None and self._group_running.get(group, 0) >= limit

    def _fits(self, job: Job) -> bool:
        """Whether its requests fit now (an original-API job: its condition holds)."""
        need = job.schedule
        if not job.native:
            fits = self._free_cpus >= 1 and self._condition(job)
            self.needs_recheck = self.needs_recheck or not fits
            return fits
        if need.cpus > self._free_cpus or need.gpus > len(self._free_gpus):
            return False
        if need.mem:
            if self._free_mem is None:
                self._free_mem = self._free_memory()
            if need.mem > self._free_mem:
                self.needs_recheck = True  # memory is freed without telling orcha
                return False
        return True

    def _take(self, job: Job) -> None:
        """Give ``job`` what it asked for and mark it running."""
        need = job.schedule
        job.set_state(State.RUNNING)
        self._used_cpus += need.cpus
        self._free_cpus -= need.cpus
        self._reserved_mem += need.mem
        if need.mem and self._free_mem is not None:
            self._free_mem -= need.mem
        job.gpu_ids = tuple(self._free_gpus[: need.gpus])
        del self._free_gpus[: need.gpus]
        self._group_running[need.group] = self._group_running.get(need.group, 0) + 1
        self._running[job.seq] = job

    def _free_memory(self) -> int:
        try:
            free = self.host.available_memory() - self._reserved_mem
        except Exception:
            if not self._memory_error:  # once, not at every recheck
                log.exception("cannot read available memory; petitions that need memory wait")
            self._memory_error = True
            return 0
        self._memory_error = False
        return free

    def _hold_words(self, job: Job) -> str | None:
        """Why ``job`` is held whatever the resources, in words (for explain)."""
        if not job.deps_ready:
            outcome = self._dependencies(job)
            if outcome is not None:
                return outcome[1] if outcome[0] == "hold" else f"failing: {outcome[1]}"
        if job.paused:
            return f"paused ('orcha resume {job.id}')"
        group = job.schedule.group
        if group in self._paused_groups:
            return f"group {group} is paused ('orcha resume --group {group}')"
        limit = self._group_limits.get(group)
        if limit is not None:
            running = self._group_running.get(group, 0)
            if running >= limit:
                return f"group {group} full ({running}/{limit})"
        return None

    def _dependencies(self, job: Job) -> tuple[str, str] | None:
        schedule = job.schedule
        for dep in schedule.dependencies:
            live = self._live.get(dep)
            if live is not None and live is not job:
                return ("hold", f"after {dep} ({str(live.state).lower()})")
            end = self._recent_ends.get(dep) or self._ended(dep)
            if end is None:
                return ("fail", f"dependency {dep} is unknown (its record was cleaned)")
            state, code = end
            if state is not State.SUCCEEDED and dep not in schedule.after_any:
                how = f"{state}" if code is None else f"{state} (code {code})"
                return ("fail", f"dependency {dep} ended {how}")
        return None

    def _condition(self, job: Job) -> bool:
        try:
            return bool(job.petition.condition(job.petition))
        except (Exception, SystemExit):
            # A broken predicate means "not now"; logged once per job so a plugin bug
            # neither floods the log nor takes the service down.
            if job.seq not in self._condition_errors:
                self._condition_errors.add(job.seq)
                log.exception("condition of petition %s raised; it keeps waiting", job.id)
            return False

    def _fail(self, job: Job, reason: str, settle: bool = True) -> bool:
        """Fail a waiting job; with ``settle``, its own dependants too. False if it was
        not waiting."""
        if job.state is not State.QUEUED:
            return False
        job.message = reason
        job.code = int(ExitCode.DEPENDENCY_FAILED)
        job.set_state(State.FAILED)
        self._unqueue(job)
        log.info("petition %s failed before starting: %s", job.id, reason)
        if self._failed is not None:
            try:
                self._failed(job)
            except Exception:
                log.exception("reporting the failure of petition %s failed", job.id)
        if settle:
            self._ended_now(job)
        self._again = True  # what it held back may start
        return True

    # -- why petitions wait ---------------------------------------------------------------------
    def explain(self) -> dict[int, str]:
        """For each waiting job (by seq), why it has not started, in words.

        Copies what it needs under the lock and words it outside, so a status request
        over a long queue does not hold up admission.
        """
        with self.lock:
            jobs = self._in_order()
            if not self.accepting:
                return {job.seq: "the service is not starting petitions" for job in jobs}
            if self.paused_all:
                return {job.seq: "all petitions are paused ('orcha resume --all')" for job in jobs}
            capacity, used = self.capacity, self._used_cpus
            free_gpus = len(self._free_gpus)
            free_mem_now = self._free_memory if any(j.schedule.mem for j in jobs) else None
            free_mem = free_mem_now() if free_mem_now is not None else 0
            holds = {job.seq: self._hold_words(job) for job in jobs}
        free_cpus = capacity - used
        now = self._clock()
        out: dict[int, str] = {}
        blocker: Job | None = None
        ahead = 0  # waiting for resources ahead of this one
        deadline = _INF
        for job in jobs:
            hold = holds[job.seq]
            if hold is not None:
                out[job.seq] = hold
                continue
            need, words = job.schedule, ""
            if not job.native:
                if free_cpus < 1 or not self._condition(job):
                    words = "waiting for its condition to hold"
            elif need.cpus > free_cpus:
                if need.cpus == 1:
                    words = f"waiting for a free slot ({used}/{capacity} CPUs in use)"
                else:
                    words = f"needs {need.cpus} CPUs, {max(free_cpus, 0)} free"
            elif need.gpus > free_gpus:
                words = f"needs {need.gpus} GPU(s), {free_gpus} free"
            elif need.mem and need.mem > free_mem:
                words = f"needs {gib(need.mem)}, {gib(max(free_mem, 0))} free"
            if words:
                if blocker is not None:
                    words += f"; {ahead} ahead of it"
                else:
                    blocker = job
                ahead += 1
                since = job.blocked_since if job.blocked_since is not None else now
                deadline = min(deadline, since + self.backfill_bound)
                out[job.seq] = words
            elif blocker is not None and not _ends_by(need, now, deadline):
                out[job.seq] = (
                    f"behind {blocker.id}, which waits for resources (only a petition "
                    "whose --timeout ends soon enough may pass it)"
                )
            elif not self._condition(job):
                out[job.seq] = "waiting for a plugin's predicate to hold"
            else:
                out[job.seq] = "starting"
        return out

    # -- ends -------------------------------------------------------------------------------
    def remove_queued(self, job: Job, on_removed: Callable[[Job], None] | None = None) -> bool:
        """Take a waiting job out of the queue (it is marked CANCELLED); False if it started.

        ``on_removed`` runs while the job is still known by its ID, so whoever looks it up
        meanwhile finds it ended rather than not at all.
        """
        with self.lock:
            if job.state is not State.QUEUED:
                return False
            job.set_state(State.CANCELLED)
            self._unqueue(job)
            if on_removed is not None:
                on_removed(job)
            self._ended_now(job)
            self.admit()  # its dependants fail; what it held back may start
            return True

    def finished(self, job: Job) -> None:
        """A running job ended: free what it held and start what may start."""
        with self.lock:
            if self._running.pop(job.seq, None) is not None:
                need = job.schedule
                self._used_cpus -= need.cpus
                self._reserved_mem -= need.mem
                self._free_gpus.extend(job.gpu_ids)
                self._free_gpus.sort(key=self.inventory.index)
                group = need.group
                self._group_running[group] = self._group_running.get(group, 1) - 1
                if not self._group_running[group]:
                    del self._group_running[group]
            self._ended_now(job)
            self.admit()

    def _ended_now(self, job: Job) -> None:
        """Remember how ``job`` ended, and settle the waiting jobs that run after it: a
        failed dependency fails them now, whatever else they wait for (CPUs, a pause).
        Iterative, so a long chain of dependants cannot exhaust the stack."""
        ended = [job]
        while ended:
            job = ended.pop()
            self._recent_ends[job.id] = (job.state, job.code)
            if len(self._recent_ends) > _RECENT_ENDS:
                del self._recent_ends[next(iter(self._recent_ends))]
            self._forget(job)
            for seq in sorted(self._dependents.pop(job.id, ())):
                dependent = self._waiting.get(seq)
                if dependent is None or dependent.deps_ready:
                    continue
                outcome = self._dependencies(dependent)
                if outcome is None:
                    dependent.deps_ready = True
                    self._enter_order(dependent)
                elif outcome[0] == "fail":
                    if self._fail(dependent, outcome[1], settle=False):
                        ended.append(dependent)
                else:  # still waiting for another dependency: hear about that one
                    for dep in dependent.schedule.dependencies:
                        if dep in self._live:
                            self._dependents.setdefault(dep, set()).add(seq)

    def _forget(self, job: Job) -> None:
        if self._live.get(job.id) is job:
            del self._live[job.id]
        self._condition_errors.discard(job.seq)

    def forget(self, job: Job) -> None:
        """Drop a waiting job from the live IDs without ending it (kept for a restart)."""
        with self.lock:
            self._forget(job)

    def drain_queued(self) -> list[Job]:
        """Stop admitting and return every waiting job, in order (for shutdown)."""
        with self.lock:
            self.accepting = False
            waiting = self._in_order()
            self._order.clear()
            self._timed.clear()
            self._waiting.clear()
            self._legacy_waiting = 0
            return waiting

    # -- groups and pauses ------------------------------------------------------------------
    def set_group_limit(self, group: str, limit: int | None) -> None:
        """At most ``limit`` petitions of ``group`` run at once (None: no own limit)."""
        with self.lock:
            if limit is None:
                self._group_limits.pop(group, None)
            else:
                self._group_limits[group] = limit
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
            for group in groups:
                if paused:
                    self._paused_groups.add(group)
                else:
                    self._paused_groups.discard(group)
            if everything:
                self.paused_all = paused
                if not paused:
                    self._paused_groups.clear()
                    for job in self._waiting.values():
                        job.paused = False
            if not paused:
                self.admit()

    def paused_groups(self) -> set[str]:
        with self.lock:
            return set(self._paused_groups)

    def groups(self) -> list[dict[str, Any]]:
        """Every group with a limit, a pause or a petition: name, limit, counts, paused."""
        with self.lock:
            queued: dict[str, int] = {}
            for job in self._waiting.values():
                queued[job.schedule.group] = queued.get(job.schedule.group, 0) + 1
            names = (
                {DEFAULT_GROUP} | set(self._group_limits) | self._paused_groups
                | set(self._group_running) | set(queued)
            )  # fmt: skip
            return [
                {
                    "name": name,
                    "max_running": self._group_limits.get(name),
                    "running": self._group_running.get(name, 0),
                    "queued": queued.get(name, 0),
                    "paused": self.paused_all or name in self._paused_groups,
                }
                for name in sorted(names)
            ]

    def group_limits(self) -> dict[str, int]:
        with self.lock:
            return dict(self._group_limits)
