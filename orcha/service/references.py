"""References: what a user types to name a petition, and the one function that resolves it.

Every submission keeps its own record (and log) until ``orcha clean``, so one name may
belong to several records. A *reference* names records this way, in every command
(``status``, ``logs``, ``follow``, ``wait``, ``watch``, ``cancel``, ``pause``,
``resume``, ``--after``...):

``12``
    a record number (``seq``, all ASCII digits): exactly that record. A petition
    submitted without an ID is named by its record number, so its name and its number
    agree.
``NAME``
    the newest record named NAME. While a petition of that name is queued or running,
    that one: a name belongs to one queued or running petition at most (the intake
    refuses a second), so the newest record is the live one.
``NAME~N``
    the N-th record named NAME before the newest (``NAME~0`` is ``NAME``), as git's
    ``HEAD~N``.

So that a reference always means one thing, a name given to a new petition may not be
all digits nor end in ``~`` and digits (:func:`check_name`). Petitions of the original
Orcha API keep whatever ID their message has; one with a numeric ID is reached by its
record number.

:func:`resolve` is the single place that turns a reference into records; the handlers
call it, and nothing else interprets references.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orcha.errors import InvalidPetitionError
from orcha.protocol.ids import check_name, is_number, split

__all__ = [
    "Target",
    "check_name",
    "intake_name",
    "is_number",
    "label",
    "labeller",
    "pin",
    "resolve",
    "resolve_all",
    "split",
]

if TYPE_CHECKING:
    from collections.abc import Iterable

    from orcha.service.job import Job
    from orcha.service.queued import Waiting
    from orcha.service.scheduler import Scheduler
    from orcha.service.store import Store


def intake_name(petition_id: object, native: bool) -> str:
    """The name a new petition takes: ``""`` if it has none (the service names it by
    its record number); InvalidPetitionError if an orcha client's petition (``native``)
    has a name that looks like a reference (:func:`check_name`). Messages of the
    original API keep theirs."""
    if petition_id is None or petition_id == "":
        return ""
    try:
        return check_name(str(petition_id)) if native else str(petition_id)
    except ValueError as e:
        raise InvalidPetitionError(str(e)) from None


class Target:
    """One record a reference names: its number ``seq``, its petition's name ``id``, the
    live ``job`` if it is queued or running in this service (None otherwise), and its
    ``record`` (read when first asked for; None without records)."""

    __slots__ = ("_held", "_record", "_scheduler", "_store", "id", "ref", "seq")

    def __init__(
        self,
        ref: str,
        seq: int | None,
        petition_id: str,
        job: Waiting | None,
        record: dict[str, Any] | None = None,
        store: Store | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.ref, self.seq, self.id, self._held = ref, seq, petition_id, job
        self._record, self._store, self._scheduler = record, store, scheduler

    @property
    def live(self) -> bool:
        """Whether it is queued or running here (nothing is built to say so)."""
        return self._held is not None

    @property
    def held(self) -> Waiting | None:
        """The live petition as the scheduler held it when resolved (a compact queue
        entry is not built): for reading, or for waiting by record number."""
        return self._held

    @property
    def job(self) -> Job | None:
        """The live Job (a compact queue entry is built when first asked for: only
        what acts on a petition asks; a listing reads ``seq``)."""
        held = self._held
        if held is None or self._scheduler is None:
            return held  # type: ignore[return-value]  # without a scheduler: a Job
        job = self._held = self._scheduler.job(held)
        return job

    @property
    def record(self) -> dict[str, Any] | None:
        if self._record is None and self._store is not None and self.seq is not None:
            self._record = self._store.get(self.seq)
        return self._record

    def __repr__(self) -> str:
        return f"Target({self.ref!r} -> #{self.seq} {self.id!r}, live={self.live})"


#: The largest record number and offset SQLite stores (a signed 64-bit integer).
_LARGEST = 2**63 - 1


def _live(scheduler: Scheduler, petition_id: str, seq: int | None = None) -> Waiting | None:
    """The queued or running job named ``petition_id`` (that is record ``seq``), as the
    scheduler holds it (see :attr:`Target.job`)."""
    found = scheduler.peek(petition_id)
    return found if found is not None and (seq is None or found.seq == seq) else None


def resolve(ref: str, scheduler: Scheduler, store: Store | None) -> list[Target]:
    """The records ``ref`` names (see the module's docstring), oldest first; empty if
    none. A reference names one record today; the result is a list so that a name may
    come to mean several (an array's members).

    The live job is the scheduler's (a queued or running petition), the record the
    store's, with the changes not saved yet."""
    parts = split(ref)
    if parts is None:  # a record number
        seq = int(ref)
        if seq > _LARGEST:
            return []  # no record has it (SQLite would refuse to look it up)
        if store is None:  # no records: numbers are the jobs' own
            job = next((j for j in scheduler.jobs() if j.seq == seq), None)
            return [Target(ref, seq, job.id, job)] if job is not None else []
        record = store.get(seq)
        if record is None:
            return []
        live = _live(scheduler, record["id"], seq)
        return [Target(ref, seq, record["id"], live, record, scheduler=scheduler)]
    # The name as given first: a name of the original API may itself end in ~N.
    held = _live(scheduler, ref)  # the live one is the newest of its name
    if held is not None:
        return [Target(ref, held.seq, held.id, held, store=store, scheduler=scheduler)]
    record = store.named(ref, 0) if store is not None else None
    name, back = parts
    if back > _LARGEST:
        return []  # no name has that many records (SQLite would refuse the offset)
    if record is None and name != ref:  # NAME~N
        held = _live(scheduler, name) if back == 0 else None
        if held is not None:
            return [Target(ref, held.seq, held.id, held, store=store, scheduler=scheduler)]
        record = store.named(name, back) if store is not None else None
    if record is None:
        return []
    seq = record["seq"]
    live = _live(scheduler, record["id"], seq)
    return [Target(ref, seq, record["id"], live, record, scheduler=scheduler)]


def pin(dep: str, scheduler: Scheduler, store: Store | None) -> str | None:
    """What a petition that runs after ``dep`` keeps as its dependency: the name of the
    queued or running petition ``dep`` names (the only live one of that name), the
    record number of an ended one named ``NAME~N`` (which names another record once
    NAME is used again), else ``dep`` as given; None if ``dep`` names no petition."""
    found = resolve(dep, scheduler, store)
    if not found:
        return None
    target = found[-1]
    if target.live or target.seq is None:
        return target.id
    parts = split(dep)
    return str(target.seq) if parts is not None and parts[0] != dep else dep


def resolve_all(
    refs: Iterable[str], scheduler: Scheduler, store: Store | None
) -> tuple[list[Target], list[str]]:
    """(the records ``refs`` name, each once, in the order first named; the references
    that name none)."""
    targets: list[Target] = []
    missing: list[str] = []
    seen: set[int | None] = set()
    for ref in refs:
        found = resolve(ref, scheduler, store)
        if not found:
            missing.append(ref)
        for target in found:
            key = target.seq if target.seq is not None else id(target.job)
            if key not in seen:
                seen.add(key)
                targets.append(target)
    return targets, missing


def label(target: Target, targets: list[Target]) -> str:
    """How a reply names ``target`` among ``targets`` (as ``follow``'s handles): the
    reference given, or its ID where several share that reference, or its record number
    where several share that ID too."""
    return labeller(targets)(target)


def labeller(targets: list[Target]) -> Callable[[Target], str]:
    """:func:`label` for each of many ``targets`` (an array's members): the counts are
    taken once, so naming all of them costs their number, not its square."""
    refs = Counter(t.ref for t in targets)
    ids = Counter(t.id for t in targets)

    def name(target: Target) -> str:
        if refs[target.ref] == 1:
            return target.ref
        if ids[target.id] == 1:
            return target.id
        return str(target.seq)

    return name
