"""Admission: which waiting petition starts next, on which machine, and when.

Pure logic behind one lock, with no threads or processes of its own: the service calls
:meth:`Scheduler.admit` whenever something that could let a petition start has happened
(a submission, an end, a cancellation, a resume, a release, an edit, a changed group
limit), at the next start time (:meth:`next_start`), and, only while some petition waits
for free memory or a plugin's predicate, every :data:`~orcha.defaults.RECHECK_SECONDS`.
The clock and the machines are parameters, so tests drive it with fakes.

The rules (docs/scheduling.rst explains them for users):

* **Order.** The waiting petitions are a priority queue (a heap) of petitions ordered by
  their own comparison: lowest effective priority first, equal ones in arrival order.
  With aging, a petition's effective priority is ``priority - waited / aging`` (one step
  better per ``aging`` seconds of waiting). Every waiting petition ages at the same rate,
  so the order is that of ``priority + submitted / aging``: fixed at arrival, set as the
  petition's rank when it is queued, never re-sorted.
* **Predicates** (:mod:`orcha.service.predicates`, which words each rule), each
  ``(petition, machine) -> None or why not``, say whether it may start. *Holds* (pauses,
  ``--after``, group limits) are global: a held petition is skipped and holds nothing
  back. A dependency that failed or was cancelled fails the dependent as soon as it ends.
* **Fit.** Its *resources* (CPU slots, memory, GPUs) must fit on one machine, counting
  what the petitions running there reserved. It goes to the first machine, in the order
  given, where they fit and its *conditions* (the predicates plugins supply) hold.
* **Backfill** (:mod:`orcha.service.backfill`). A petition whose resources fit on no
  machine is *blocked*, and never starved: a later one may start ahead of it only if
  that cannot delay it at all (it takes nothing the blocked one waits for and leaves it
  the rest), or by more than ``backfill_bound`` (its ``--timeout`` ends soon enough).
* **Loans** (:mod:`orcha.service.loans`): a parent blocked on its children lends them
  its reservation, one child at a time, so parents waiting on children never deadlock.

Why a petition waits (:meth:`Scheduler.explain`) is the words of the predicate that said no.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from orcha.errors import DuplicateIdError, ExitCode
from orcha.protocol.schedule import Schedule
from orcha.service import predicates as preds
from orcha.service.backfill import BackfillControl
from orcha.service.explain import Rules
from orcha.service.feasible import check_feasible
from orcha.service.groups import GroupControl
from orcha.service.loans import Loan, LoanControl, Loans
from orcha.service.machines import LocalMachine, Machine
from orcha.service.petition_queue import PetitionQueue, SortedIndex, first_in_order
from orcha.service.queued import Queued, set_rank
from orcha.service.queued_control import QueuedControl
from orcha.service.scheduler_lock import SchedulerLock
from orcha.service.waiting import WaitingControl
from orcha.states import State

if TYPE_CHECKING:
    from orcha.service.host import Host
    from orcha.service.job import Job
    from orcha.service.procs import ProcessControl
    from orcha.service.queued import Waiting

log = logging.getLogger("orcha.service.scheduler")

EndLookup = preds.EndLookup


class Scheduler(QueuedControl, GroupControl, LoanControl, WaitingControl, BackfillControl):
    """The waiting petitions in order, the running ones, and what they hold where."""

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
        met: Callable[[Waiting], None] | None = None,
        members: Callable[[str], list[str] | None] | None = None,
        machines: Sequence[Machine] | None = None,
        procs: ProcessControl | None = None,
        predicates: Sequence[preds.Predicate] = (),
    ) -> None:
        """``start(job)`` runs an admitted job (called under the lock, must not block;
        ``job.machine`` says where); ``machines``: where petitions run, in the order they
        are tried (default: one :class:`~orcha.service.machines.LocalMachine` of ``host``
        and ``procs`` with ``capacity`` CPU slots, default the host's cores, and ``gpus``,
        the inventory of GPU indices); ``aging``: seconds of waiting per priority step (0:
        no aging); ``backfill_bound``: how long a blocked petition may be delayed by later
        ones; ``ended(id)``: how an ID that is neither queued nor running ended (records);
        ``failed(job)``: told when a waiting job fails (a dependency failed); ``met(job)``:
        when its dependencies are met (predicates.Dependencies.met); ``members(name)``:
        an array's members (orcha.service.array_ends); ``predicates``: more conditions
        every petition of orcha's kinds must meet."""
        if machines is None:
            machines = [LocalMachine(host, procs, slots=capacity, gpus=gpus)]
        if not machines:
            raise ValueError("a scheduler needs at least one machine")
        self.machines: list[Machine] = list(machines)
        self._start = start
        self._clock = clock
        self.aging, self.backfill_bound = aging, backfill_bound
        self._failed = failed
        self.inventory: tuple[str, ...] = tuple(g for m in self.machines for g in m.inventory)
        # The predicates (see orcha.service.predicates for the three roles).
        self._state = preds.Holds()
        paused, full = preds.Paused(self._state), preds.GroupFull(self._state)
        self._live: dict[str, Waiting] = {}  # ID -> waiting or running job (or entry)
        self._deps = preds.Dependencies(self._live, ended or (lambda _id: None), met, members)
        self._walk_holds: list[preds.Hold] = [paused, full]  # the rest are met in the queue
        self._condition = preds.PetitionCondition()
        self._rules = Rules(
            holds=[
                preds.AllPaused(self._state),
                preds.held,
                self._deps,
                preds.StartsAt(clock),
                paused,
                full,
            ],
            resources=[preds.pinned, preds.slots, preds.gpus, preds.memory],
            legacy_resources=[preds.LegacyCondition(self._condition)],
            conditions=[self._condition, *predicates],
        )
        # Waiting jobs whose dependencies are met, in order; and those of them with a
        # bounded run (a --timeout), the only ones that may pass a blocked job. Jobs
        # waiting for dependencies are in neither: they cost admission nothing.
        self._queue = PetitionQueue()
        self._timed = SortedIndex()
        self._waiting: dict[int, Waiting] = {}  # seq -> every waiting job (or entry)
        self._unpark_all()  # held and timed jobs wait out of the order (see .waiting)
        self._running: dict[int, Job] = {}  # seq -> running job
        self._legacy_waiting = 0  # waiting jobs of the original API (their own conditions)
        # Waiting jobs by the IDs they run after, so a dependency's end settles them at once.
        self._dependents: dict[str, set[int]] = {}
        self._unsettled: list[Waiting] = []  # queued while restoring, deps not looked at
        self._loans, self._admitting = Loans(), False  # loans: see orcha.service.loans
        self._again = False
        self.lock = SchedulerLock()  # orcha health: who has held it, for how long
        self.accepting = True
        #: Whether some petition waits on something that changes without an event (free
        #: memory, a plugin predicate): the service then calls admit() now and then.
        self.needs_recheck = False

    # -- what is known ----------------------------------------------------------------------
    def machine_named(self, name: str | None) -> Machine:
        """The machine called ``name``; the first (the local host) for records that name
        none or one this service no longer has."""
        return next((m for m in self.machines if m.name == name), self.machines[0])

    @property
    def capacity(self) -> int:
        """CPU slots over every machine."""
        return sum(m.slots for m in self.machines)

    @property
    def running_count(self) -> int:
        return len(self._running)

    @property
    def used_cpus(self) -> int:
        return sum(m.used_slots for m in self.machines)

    @property
    def queued_count(self) -> int:
        return len(self._waiting)

    @property
    def paused_all(self) -> bool:
        return self._state.paused_all

    @paused_all.setter
    def paused_all(self, paused: bool) -> None:
        self._state.paused_all = paused

    def running(self) -> list[Job]:
        with self.lock:
            return list(self._running.values())

    def order_key(self, job: Waiting) -> float:
        """Its effective priority at arrival, up to a constant shared by all (see the
        module docstring on aging): smaller starts first."""
        return job.priority + job.created / self.aging if self.aging > 0 else float(job.priority)

    def effective_priority(self, job: Waiting) -> float:
        """The priority a waiting job competes with now (its own, improved by aging)."""
        if self.aging > 0 and job.state is State.QUEUED:
            return job.priority - max(0.0, self._clock() - job.created) / self.aging
        return float(job.priority)

    # -- submission ---------------------------------------------------------------------------
    def check_feasible(self, schedule: Schedule) -> None:
        """Refuse (PetitionError) a request that can never fit on any machine."""
        check_feasible(self.machines, schedule)

    def submit(self, job: Job) -> None:
        """Queue ``job`` and start whatever may start. DuplicateIdError if its ID is live."""
        with self.lock:
            if job.id in self._live:
                raise DuplicateIdError(job.id)
            self._live[job.id] = job
            self._insert(job)
            self.admit()

    def _insert(self, job: Waiting) -> None:
        # The petition's place in the order, fixed now: (effective priority, arrival).
        set_rank(job, (self.order_key(job), job.seq))
        self._waiting[job.seq] = job
        self._loans.queued(job)
        if not job.native:
            self._legacy_waiting += 1
        if job.deps_ready:
            self._enter_order(job)
        elif not self.accepting:
            # Being restored: its dependencies may not be queued again yet. They are
            # looked at once everything is back (settle_dependencies).
            self._watch_dependencies(job)
            self._unsettled.append(job)
        else:
            self._settle(job)

    def _enter_order(self, job: Waiting) -> None:
        """Its dependencies are met: it enters the order, unless it is held or its start
        time has not come (see :meth:`~orcha.service.waiting.WaitingControl._park`)."""
        if not self._park(job):
            self._push(job)

    def _push(self, job: Waiting) -> None:
        self._queue.push(job)
        if job.schedule.longest_run is not None:
            self._timed.push(job)

    def settle_dependencies(self) -> None:
        """Look at every job queued while not accepting that waits for dependencies:
        start the ready, fail the doomed (after a restore, which queues jobs before their
        dependencies are back). Those queued since it were looked at when queued."""
        with self.lock:
            unsettled, self._unsettled = self._unsettled, []
            for queued in first_in_order(unsettled):
                job = self._waiting.get(queued.seq)  # its Job if built since; None if gone
                if job is not None and not job.deps_ready and job.state is State.QUEUED:
                    self._settle(job)
            self.admit()

    def _settle(self, job: Waiting, settle: bool = True) -> Job | None:
        """Look at a waiting job's dependencies: met, it enters the order; doomed, it
        fails (``settle``: its dependants too); else it hears of their ends. Its Job if
        it failed."""
        outcome = self._deps.check(job)
        if outcome is None:
            self._deps.met(job)
            self._enter_order(job)
        elif outcome[0] == "fail":
            return self._fail(job, outcome[1], settle=settle)
        else:
            self._watch_dependencies(job)
        return None

    def _watch_dependencies(self, job: Waiting) -> None:
        for dep in job.schedule.dependencies:  # a petition, or an array (its name)
            if dep in self._live or self._deps.arrays.waiting(dep):
                self._dependents.setdefault(dep, set()).add(job.seq)

    def _unqueue(self, job: Waiting) -> None:
        if self._waiting.pop(job.seq, None) is None:
            return
        self._parked.pop(job.seq, None)  # its timer, if any, is dropped when it comes
        self._queue.remove(job)
        self._timed.remove(job)
        self._loans.unqueued(job)
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

    def _room(self) -> bool:
        """Whether some machine has a free slot (or some job of the original API waits:
        its condition is asked even then, so that it is rechecked)."""
        if self._legacy_waiting > 0:
            return True
        # Loops, not any(): called for every job a walk looks at.
        for machine in self.machines:  # noqa: SIM110
            if machine.free_slots > 0:
                return True
        return False

    def _walk(self) -> None:
        """Phase 1 walks the queue in order and starts what fits, up to the first job
        that fits nowhere (the blocked one). Phase 2 (:mod:`orcha.service.backfill`)
        starts what may pass it: a bounded number of jobs behind it that leave it room,
        and jobs with a bounded run. So a refill costs what it looks at, not the length
        of the queue."""
        self.needs_recheck = False
        if self._timers:
            self._enter_due()
        if not self.accepting or not self._queue or self.paused_all:
            return
        for machine in self.machines:
            machine.refresh()  # free memory is read at most once per walk
        self._walk_loans()
        room = self._room()  # changes only when a job is taken
        if not room:
            return  # nothing fits until a petition ends (an event)
        now = self._clock()
        started: list[Job] = []
        blocked: Waiting | None = None
        in_order = self._queue.in_order()
        for job in in_order:
            if not room:
                break
            if self._held(job):
                continue
            fitting = self._fitting(job)
            if not fitting:
                blocked = job
                break
            job = self.job(job)  # it may start: a compact entry becomes its Job
            chosen = self._choose(job, fitting)
            if chosen is not None:
                self._take(job, chosen)
                started.append(job)
                room = self._room()
        if blocked is not None and room:
            started += self._backfill(blocked, in_order, now)
        for job in started:
            self._unqueue(job)
            self._start(job)

    def _held(self, job: Waiting) -> bool:
        """Whether a hold predicate says no (only those a queued job may fail)."""
        for hold in self._walk_holds:  # noqa: SIM110
            if hold(job, None) is not None:
                return True
        return False

    def _fitting(self, job: Waiting) -> list[Machine]:
        """The machines its resources fit on now (usually one or none)."""
        rules = self._rules
        resources = rules.resources if job.native else rules.legacy_resources
        fitting: list[Machine] = []
        for machine in self.machines:
            for predicate in resources:
                if predicate(job, machine) is not None:
                    if preds.is_volatile(predicate):
                        self.needs_recheck = True  # it may fit without an event
                    break
            else:
                fitting.append(machine)
        return fitting

    def _choose(self, job: Job, fitting: list[Machine]) -> Machine | None:
        """The first of ``fitting`` on which its conditions hold (for jobs of the original
        API, its condition was a resource predicate)."""
        if not job.native:
            return fitting[0]
        for machine in fitting:
            if all(cond(job, machine) is None for cond in self._rules.conditions):
                return machine
        self.needs_recheck = True  # conditions change without telling orcha
        return None

    def _take(self, job: Job, machine: Machine, loan: Loan | None = None) -> None:
        """Give ``job`` its request on ``machine`` (or its parent's ``loan``); running."""
        job.set_state(State.RUNNING)
        job.machine = machine
        job.gpu_ids = self._loans.borrow(loan, job) if loan else machine.reserve(job.schedule)
        self._state.started(job.schedule.group, job.array)
        self._running[job.seq] = job

    def _fail(self, found: Waiting, reason: str, settle: bool = True) -> Job | None:
        """Fail a waiting job; with ``settle``, its own dependants too. Its Job; None if
        it was not waiting."""
        if found.state is not State.QUEUED:
            return None
        job = self.job(found)
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
        return job

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
                self._release(job)
                self._state.ended(job.schedule.group, job.array)
            self._ended_now(job)
            self.admit()

    def _ended_now(self, job: Job) -> None:
        """Remember how ``job`` ended, and settle the waiting jobs that run after it: a
        failed dependency fails them now, whatever else they wait for (CPUs, a pause).
        Iterative, so a long chain of dependants cannot exhaust the stack."""
        ended = [job]
        while ended:
            job = ended.pop()
            array = self._deps.remember(job)  # its array's name if that settles them
            self._forget(job)
            for key in (job.id,) if array is None else (job.id, array):
                for seq in sorted(self._dependents.pop(key, ())):
                    dependent = self._waiting.get(seq)
                    if dependent is None or dependent.deps_ready:
                        continue
                    failed = self._settle(dependent, settle=False)
                    if failed is not None:
                        ended.append(failed)
            if array is not None:
                self._deps.arrays.settled(array)

    def _forget(self, job: Job) -> None:
        if self._live.get(job.id) is job:
            del self._live[job.id]
        for condition in self._rules.conditions:  # a condition may log once per job
            forget = getattr(condition, "forget", None)
            if forget is not None:
                forget(job)

    def forget(self, job: Job) -> None:
        """Drop a waiting job from the live IDs without ending it (kept for a restart)."""
        with self.lock:
            self._forget(job)

    def drain_queued(self) -> list[Job]:
        """Stop admitting and return every waiting Job, in order (for shutdown). The
        compact entries are dropped: their records keep them for the next start, and
        no client, log or follower is attached to one."""
        with self.lock:
            self.accepting = False
            waiting = self.waiting_views()
            for entry in waiting:
                if type(entry) is Queued and self._live.get(entry.id) is entry:
                    del self._live[entry.id]  # kept by its record: nothing else to do
            self._queue.clear()
            self._timed.clear()
            self._waiting.clear()
            self._unpark_all()
            self._unsettled = []
            self._legacy_waiting = 0
            return [job for job in waiting if type(job) is not Queued]  # type: ignore[misc]
