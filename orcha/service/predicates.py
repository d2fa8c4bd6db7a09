"""Predicates: whether a waiting petition may start on a machine now, and if not, why.

One shape: ``predicate(job, machine) -> None`` when it fits, else the reason in words
(what ``orcha status`` shows as why the petition waits). The scheduler asks three lists
of them (see :class:`~orcha.service.scheduler.Scheduler`), and the three differ only in
what a "no" does to admission, which the scheduler decides, not the predicate:

* **holds** (:class:`AllPaused`, :func:`held`, :class:`Dependencies`,
  :class:`StartsAt`, :class:`Paused`, :class:`GroupFull`): global, the machine is
  ignored; a held petition is skipped and holds nothing back (those held by ``--hold``,
  a start time or dependencies are not even in the queue the scheduler walks: they cost
  admission nothing until released, due or settled);
* **resources** (:func:`slots`, the default, then :func:`gpus` and :data:`memory`; for a
  petition of the original API :class:`LegacyCondition` instead): per machine; a petition
  that fits on no machine is *blocked*, and only backfill may pass it;
* **conditions** (:class:`PetitionCondition`, then plugins' predicates): asked once its
  resources fit; a "no" skips it until the next recheck.

A predicate whose answer changes without an event orcha hears of (free memory, a
plugin's condition) has a true ``volatile`` attribute: while one says no, the service
asks again every :data:`~orcha.defaults.RECHECK_SECONDS`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from orcha.protocol.schedule import DEFAULT_GROUP
from orcha.states import State
from orcha.units import starts_at

if TYPE_CHECKING:
    from orcha.protocol.schedule import Schedule
    from orcha.service.job import Job
    from orcha.service.queued import Waiting

# Scheduling's logger: these are the scheduler's rules.
log = logging.getLogger("orcha.service.scheduler")


class Capacity(Protocol):
    """What a predicate may read of a machine: a live
    :class:`~orcha.service.machines.Machine` during admission, a
    :class:`~orcha.service.machines.MachineView` when explaining."""

    @property
    def name(self) -> str: ...

    @property
    def slots(self) -> int: ...

    @property
    def used_slots(self) -> int: ...

    @property
    def free_slots(self) -> int: ...

    @property
    def free_gpu_count(self) -> int: ...

    def free_memory(self) -> int: ...

    def ever_fits(self, need: Schedule) -> bool: ...


#: ``(job, machine) -> None`` if it fits, else why not.
Predicate = Callable[["Waiting", Capacity], "str | None"]
#: A global predicate: the same shape, but the machine is None (and ignored).
Hold = Callable[["Waiting", "Capacity | None"], "str | None"]


def gib(n: int) -> str:
    """Bytes as GiB with one decimal, for messages."""
    return f"{n / (1 << 30):.1f} GiB"


def ends_by(need: Schedule, now: float, deadline: float) -> bool:
    """Whether a petition started now surely frees its resources by ``deadline`` (for
    the scheduler's backfill rule, which is not a predicate: it depends on the queue)."""
    longest = need.longest_run
    return longest is not None and now + longest <= deadline


#: Nothing kept on a machine (no blocked petition could ever run there).
_NOTHING = (0, 0, 0)


class Kept:
    """What passers must leave the blocked petitions ahead of them (the backfill rule of
    :func:`leaves_room`), machine by machine: on each machine, of each resource, the most
    one of them that could ever run there needs; and their groups (a group's limit holds
    across machines). Leaving each blocked petition what it needs, resource by resource,
    is leaving the most any of them needs: so one check covers them all, however many.

    A blocked petition is kept room only on the machines it could ever run on (its
    request fits the machine's whole capacity, and its ``--on`` names it): it starts on
    one of those, and on each of them nothing that passed it took what it waits for. So
    a CPU-only petition passes one waiting for GPUs on a machine without GPUs freely."""

    __slots__ = ("groups", "machines", "need")

    def __init__(self, machines: Iterable[Capacity]) -> None:
        self.machines = tuple(machines)
        self.need: dict[str, tuple[int, int, int]] = {}  # machine name -> (cpus, mem, gpus)
        self.groups: set[str] = set()

    def add(self, job: Waiting) -> None:
        """``job`` is blocked: keep what it needs on each machine it could ever run on."""
        s = job.schedule
        for machine in self.machines:
            if (s.on is not None and pinned(job, machine) is not None) or not machine.ever_fits(s):
                continue
            cpus, mem, gpus = self.need.get(machine.name, _NOTHING)
            self.need[machine.name] = (max(cpus, s.cpus), max(mem, s.mem), max(gpus, s.gpus))
        self.groups.add(s.group)

    def on(self, machine: Capacity) -> tuple[int, int, int]:
        """``(cpus, mem, gpus)`` passers must leave free on ``machine``."""
        return self.need.get(machine.name, _NOTHING)


def leaves_room(job: Waiting, machine: Capacity, kept: Kept, groups: Holds) -> bool:
    """Whether starting ``job`` on ``machine`` cannot delay the blocked petitions ahead
    of it (``kept``) at all (the scheduler's backfill rule, not a predicate): of each
    resource ``job`` takes on ``machine`` (CPU slots, GPUs, memory) and of a slot of a
    limited group, what is left is still enough for each of them that could ever run
    there. So it takes nothing a blocked one waits for (of that, not even what is left
    is enough), and leaves them the rest."""
    need = job.schedule
    cpus, mem, gpus = kept.on(machine)
    if machine.free_slots - need.cpus < cpus:
        return False
    if need.gpus and machine.free_gpu_count - need.gpus < gpus:
        return False
    if need.mem and machine.free_memory() - need.mem < mem:
        return False
    if need.group in kept.groups:
        limit = groups.group_limits.get(need.group)
        if limit is not None and groups.group_running.get(need.group, 0) + 1 >= limit:
            return False
    return True


def is_volatile(predicate: Predicate) -> bool:
    """Whether ``predicate``'s answer may change without an event (see the module)."""
    return bool(getattr(predicate, "volatile", False))


# -- resources (per machine) -------------------------------------------------------------------
def slots(job: Waiting, machine: Capacity) -> str | None:
    """The default predicate: its CPU slots are free on the machine."""
    need, free = job.schedule.cpus, machine.free_slots
    if need <= free:
        return None
    if need == 1:
        return f"waiting for a free slot ({machine.used_slots}/{machine.slots} CPUs in use)"
    return f"needs {need} CPUs, {max(free, 0)} free"


def pinned(job: Waiting, machine: Capacity) -> str | None:
    """``--on NAME``: it runs only on the machine NAME names (its name, host or address)."""
    where = job.schedule.on
    if where is None or where in getattr(machine, "aliases", (machine.name,)):
        return None
    return f"runs only on {where}"


def gpus(job: Waiting, machine: Capacity) -> str | None:
    """As many distinct GPUs as it asks for are free on the machine."""
    need, free = job.schedule.gpus, machine.free_gpu_count
    return None if need <= free else f"needs {need} GPU(s), {free} free"


def loan(job: Waiting, lender: Job) -> str | None:
    """It asks no more than ``lender`` (its parent, blocked on its children) holds: the
    rule for starting in the parent's loan (:mod:`orcha.service.loans`)."""
    need, held = job.schedule, lender.schedule
    if need.cpus > held.cpus or need.mem > held.mem or need.gpus > len(lender.gpu_ids):
        return f"asks for more than its parent {lender.id} holds"
    return None


class Memory:
    """The machine's available memory, minus what running petitions reserved, covers
    the request. Volatile: memory is freed without telling orcha."""

    volatile = True

    def __call__(self, job: Waiting, machine: Capacity) -> str | None:
        need = job.schedule.mem
        if not need:
            return None  # free memory is not even read
        free = machine.free_memory()
        return None if need <= free else f"needs {gib(need)}, {gib(max(free, 0))} free"


#: See :class:`Memory`.
memory = Memory()


class PetitionCondition:
    """The petition's own ``condition(petition)`` holds (for orcha's kinds: every plugin
    predicate). One that raises means "not now", logged once per petition so a plugin
    bug neither floods the log nor takes the service down."""

    volatile = True

    def __init__(self, reason: str = "waiting for a plugin's predicate to hold") -> None:
        self.reason = reason
        self._raised: set[int] = set()  # seqs of jobs whose condition raised (logged)

    def holds(self, job: Waiting) -> bool:
        try:
            return bool(job.petition.condition(job.petition))
        except (Exception, SystemExit):
            if job.seq not in self._raised:
                self._raised.add(job.seq)
                log.exception("condition of petition %s raised; it keeps waiting", job.id)
            return False

    def __call__(self, job: Waiting, machine: Capacity) -> str | None:
        return None if self.holds(job) else self.reason

    def forget(self, job: Waiting) -> None:
        """``job`` has left the queue: log its condition's next failure again."""
        self._raised.discard(job.seq)


class LegacyCondition:
    """A petition of the original API fits when a slot is free and its own condition
    holds (the original ``look_ahead`` behaviour: it blocks those behind it)."""

    volatile = True

    def __init__(self, condition: PetitionCondition) -> None:
        self.condition = condition

    def __call__(self, job: Waiting, machine: Capacity) -> str | None:
        if machine.free_slots < 1 or not self.condition.holds(job):
            return "waiting for its condition to hold"
        return None


class PluginPredicate:
    """A plugin's predicate, ``(petition, machine) -> None | reason`` (see
    :class:`orcha.plugins.contract.Predicate`), asked for petitions of orcha's kinds.
    One that raises means "not now", logged once per petition, like a condition."""

    volatile = True

    def __init__(self, predicate: Callable[[Any, Any], str | None]) -> None:
        self.predicate = predicate
        self._raised: set[int] = set()

    def __call__(self, job: Waiting, machine: Capacity) -> str | None:
        try:
            return self.predicate(job.petition, machine)
        except (Exception, SystemExit):
            if job.seq not in self._raised:
                self._raised.add(job.seq)
                log.exception("condition of petition %s raised; it keeps waiting", job.id)
            return "waiting for a plugin's predicate to hold"

    def forget(self, job: Waiting) -> None:
        self._raised.discard(job.seq)


# -- holds (global) ------------------------------------------------------------------------
class Holds:
    """The global state hold predicates read: pauses and group limits."""

    def __init__(self) -> None:
        self.paused_all = False
        self.paused_groups: set[str] = set()
        self.group_limits: dict[str, int] = {}
        self.group_running: dict[str, int] = {}  # group -> petitions of it running
        self.array_running: dict[str, int] = {}  # array (Job.array's key) -> members running

    def copy(self) -> Holds:
        """A copy to read outside the scheduler's lock (explaining)."""
        out = Holds()
        out.paused_all, out.paused_groups = self.paused_all, set(self.paused_groups)
        out.group_limits, out.group_running = dict(self.group_limits), dict(self.group_running)
        out.array_running = dict(self.array_running)
        return out

    def started(self, group: str, array: tuple[str, str, int] | None = None) -> None:
        """A petition of ``group`` (a member of ``array``, if given) has started."""
        self.group_running[group] = self.group_running.get(group, 0) + 1
        if array is not None:
            self.array_running[array[0]] = self.array_running.get(array[0], 0) + 1

    def ended(self, group: str, array: tuple[str, str, int] | None = None) -> None:
        """A petition of ``group`` (a member of ``array``, if given) has ended."""
        _decrement(self.group_running, group)
        if array is not None:
            _decrement(self.array_running, array[0])

    def set_limit(self, group: str, limit: int | None) -> None:
        """At most ``limit`` petitions of ``group`` run at once (None: no own limit)."""
        if limit is None:
            self.group_limits.pop(group, None)
        else:
            self.group_limits[group] = limit

    def pause(self, paused: bool, groups: Iterable[str], everything: bool) -> None:
        """Pause (or resume) whole groups, or everything (resuming everything resumes
        every group too)."""
        for group in groups:
            if paused:
                self.paused_groups.add(group)
            else:
                self.paused_groups.discard(group)
        if everything:
            self.paused_all = paused
            if not paused:
                self.paused_groups.clear()

    def report(self, queued: dict[str, int]) -> list[dict[str, Any]]:
        """Every group with a limit, a pause or a petition (``queued``: waiting ones by
        group): name, limit, counts, paused."""
        names = (
            {DEFAULT_GROUP} | set(self.group_limits) | self.paused_groups
            | set(self.group_running) | set(queued)
        )  # fmt: skip
        return [
            {
                "name": name,
                "max_running": self.group_limits.get(name),
                "running": self.group_running.get(name, 0),
                "queued": queued.get(name, 0),
                "paused": self.paused_all or name in self.paused_groups,
            }
            for name in sorted(names)
        ]


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 1) - 1
    if left:
        counts[key] = left
    else:
        counts.pop(key, None)


class AllPaused:
    """Not while everything is paused ('orcha pause --all')."""

    def __init__(self, holds: Holds) -> None:
        self.holds = holds

    def __call__(self, job: Waiting, machine: Capacity | None) -> str | None:
        return "all petitions are paused ('orcha resume --all')" if self.holds.paused_all else None


class Paused:
    """Not while the petition, or its group, is paused."""

    def __init__(self, holds: Holds) -> None:
        self.holds = holds

    def __call__(self, job: Waiting, machine: Capacity | None) -> str | None:
        if job.paused:
            return f"paused ('orcha resume {job.id}')"
        group = job.schedule.group
        if group in self.holds.paused_groups:
            return f"group {group} is paused ('orcha resume --group {group}')"
        return None


class GroupFull:
    """Not while its group runs as many petitions as the group's limit, nor while its
    array (``run --array 1-100%4``: a group of its own) runs as many members as its
    ``%N``."""

    def __init__(self, holds: Holds) -> None:
        self.holds = holds

    def __call__(self, job: Waiting, machine: Capacity | None) -> str | None:
        if job.array is not None:
            key, name, most = job.array
            members = self.holds.array_running.get(key, 0)
            if members >= most:
                return f"array {name} runs {members} of at most {most} at once"
        group = job.schedule.group
        limit = self.holds.group_limits.get(group)
        if limit is None:
            return None
        running = self.holds.group_running.get(group, 0)
        return f"group {group} full ({running}/{limit})" if running >= limit else None


def held(job: Waiting, machine: Capacity | None) -> str | None:
    """Not while it is held (submitted with ``--hold``) until ``orcha release``."""
    return f"held ('orcha release {job.id}')" if job.schedule.hold else None


class StartsAt:
    """Not before its start time (``--delay``, ``--at``), on the service's clock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock

    def __call__(self, job: Waiting, machine: Capacity | None) -> str | None:
        begin = job.schedule.begin
        if begin is None or begin <= self.clock():
            return None
        return starts_at(begin, self.clock())


#: How an ID that is neither queued nor running ended: (state, code), None if unknown.
EndLookup = Callable[[str], "tuple[State, int | None] | None"]

#: How many ended IDs are remembered for dependants (older ones are looked up in the
#: records).
RECENT_ENDS = 4096


class Dependencies:
    """Not before the petitions it runs ``--after`` have ended (successfully, unless
    ``--after-any``). A dependency that failed dooms it: the scheduler fails it; until
    then the reason says so."""

    def __init__(
        self,
        live: dict[str, Waiting],
        ended: EndLookup,
        met: Callable[[Waiting], None] | None = None,
        members: Callable[[str], list[str] | None] | None = None,
    ) -> None:
        """``live``: the waiting and running jobs by ID; ``ended``: the records; ``met``:
        told when a job's dependencies are met (its record keeps that: see :meth:`met`);
        ``members``: an array's members (see :mod:`orcha.service.array_ends`)."""
        from orcha.service.array_ends import ArrayEnds

        self.live = live
        self.ended = ended
        self.on_met = met
        self.recent: dict[str, tuple[State, int | None]] = {}  # ID -> how it ended
        self.arrays = ArrayEnds(members or (lambda _name: None), live, ended, self.recent)

    def met(self, job: Waiting) -> None:
        """``job``'s dependencies are met, for good, as Slurm drops a satisfied one: it
        is not checked again, not even after a restart (``on_met`` keeps it in its
        record), when what it ran after may have been cleaned or its name reused."""
        job.deps_ready = True
        if job.schedule.dependencies and self.on_met is not None:
            self.on_met(job)

    def remember(self, job: Waiting) -> str | None:
        """``job`` has ended (its dependants look its end up here first): the name of
        its array if that settles the array's dependants (ArrayEnds.ended)."""
        self.recent[job.id] = (job.state, job.code)
        if len(self.recent) > RECENT_ENDS:
            del self.recent[next(iter(self.recent))]
        return self.arrays.ended(job)

    def check(self, job: Waiting) -> tuple[str, str] | None:
        """None if its dependencies are met, ("hold", why) while one has not ended, or
        ("fail", why) once one ended in a way that dooms it."""
        schedule = job.schedule
        for dep in schedule.dependencies:
            live = self.live.get(dep)
            if live is not None and live is not job:
                return ("hold", f"after {dep} ({str(live.state).lower()})")
            end = self.recent.get(dep)
            array = self.arrays.look(dep) if end is None else None  # an array's name?
            if array is not None:
                outcome = array.outcome(dep in schedule.after_any)
                if outcome is not None:
                    return outcome
                continue
            end = end or self.ended(dep)
            if end is None:
                return ("fail", f"dependency {dep} is unknown (its record was cleaned)")
            state, code = end
            if state is not State.SUCCEEDED and dep not in schedule.after_any:
                how = f"{state}" if code is None else f"{state} (code {code})"
                return ("fail", f"dependency {dep} ended {how}")
        return None

    def __call__(self, job: Waiting, machine: Capacity | None) -> str | None:
        if job.deps_ready:
            return None
        outcome = self.check(job)
        if outcome is None:
            return None
        return outcome[1] if outcome[0] == "hold" else f"failing: {outcome[1]}"
