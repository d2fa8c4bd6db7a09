"""Recovery: what a service takes back, at start, from the one before it at its address.

Queued petitions are queued again in their order; those that were running become
INTERRUPTED and whatever of their process trees survived is stopped, unless they asked
for ``--retries`` and have attempts left: then the interrupted run counts as an attempt
and they are queued again; group limits and pauses hold again. A queued petition whose
client was sending its stdin is CANCELLED: its input went with its client. A petition that ends here
(INTERRUPTED, or CANCELLED) is announced like any end: webhooks, event sinks and the
``on_finish`` hook hear of it. (The stop that leaves
this behind is ``Service.begin_stop``.)
"""

from __future__ import annotations

import gc
import itertools
import json
import logging
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from orcha.defaults import ENV_CACHE_SIZE, STORE_START_WAIT
from orcha.errors import (
    DuplicateIdError,
    InvalidPetitionError,
    NotSavedError,
    PetitionError,
    UnknownKindError,
)  # fmt: skip
from orcha.protocol.outputs import DISCARD
from orcha.protocol.schedule import Schedule
from orcha.service import arrays
from orcha.service.job import Job
from orcha.service.queued import Queued, Source, compact_log
from orcha.service.stdin import LOST_AT_RESTART
from orcha.states import State, transition

if TYPE_CHECKING:
    from orcha.service.service import Service
    from orcha.service.store import Store

log = logging.getLogger("orcha.service")


def restore(service: Service) -> None:
    """Take back what a previous service at this address left: queued petitions are
    queued again in their order (but not child petitions: their parent was running, so
    they are CANCELLED); running ones have their processes stopped and are INTERRUPTED,
    or queued again for their next attempt if they asked for ``--retries`` and have one
    left (never otherwise: a petition without retries never runs twice)."""
    store = service.store
    assert store is not None
    address = str(service.settings.address)
    # Parameters and schedules as text: identical ones (an array's) are decoded once.
    # The plain queued records (most of a long queue) are read apart, as compact
    # entries (_Plain), when nothing is waiting to be saved (at start).
    plain = _Plain.possible(service)
    chunks = store.live_chunks(address, raw=_RAW, plain=not plain)
    first = next((chunk for chunk in chunks if chunk), [])
    if not first and (not plain or not store.has_plain_queued(address)):
        return
    now = service.clock()
    scheduler = service.scheduler
    scheduler.accepting = False  # queue them all before any starts: order holds
    requeued = interrupted = retried = 0
    # What is saved again of those queued again (a missing log path; an environment to
    # share), committed together before any may start: one transaction, not one each.
    named: dict[int, dict[str, Any]] = {}
    parsed = _Parsed()
    collecting = gc.isenabled()
    gc.disable()  # many objects and no garbage: a collection pass would scan them all
    try:
        if plain:
            requeued += _Plain(service, now).restore(store.queued_rows(address))
        for row in (row for chunk in itertools.chain([first], chunks) for row in chunk):
            # A first attempt fed by its client lost its input with it (a retry reads
            # /dev/null anyway): it must never run on an empty stdin instead.
            lost = row["state"] == str(State.QUEUED) and row["stdin"] and row["attempt"] <= 1
            if row["state"] != str(State.QUEUED) or row.get("parent") or lost:
                row = _decoded(row)  # it ends here, and is announced: as a whole record
            if row["state"] == str(State.RUNNING):
                _stop_leftovers(service, row)
                if _retry(service, row, now, named, parsed):
                    retried += 1
                    continue
                _end(
                    service, row, state=str(State.INTERRUPTED), ended=now,
                    message="the service stopped while it was running",
                )  # fmt: skip
                interrupted += 1
            elif lost:
                _end(service, row, state=str(State.CANCELLED), ended=now, message=LOST_AT_RESTART)
            elif row.get("parent"):
                # Its parent was running, so it is INTERRUPTED now: nobody waits for
                # this child any more.
                _end(
                    service, row, state=str(State.CANCELLED), ended=now,
                    message=f"its parent {row['parent']} was interrupted by a restart",
                )  # fmt: skip
            elif _requeue(service, row, now, named, parsed):
                requeued += 1
        store.update_many(named, "the queued petitions were not taken back")
    finally:
        if collecting:
            gc.enable()
        scheduler.accepting = True
    scheduler.settle_dependencies()  # also admits
    log.warning(
        "restored %d queued petition(s); %d that were running became INTERRUPTED, "
        "%d were queued for another attempt",
        requeued, interrupted, retried,
    )  # fmt: skip


_RAW = ("params", "schedule")


class _Plain:
    """Queues the plain queued records again as compact entries
    (:mod:`orcha.service.queued`), read in batches as tuples, with no petition, Job or
    log built and nothing written per record.

    What is checked, per distinct value rather than per record (an array's members
    share theirs): its kind (a plugin that provides it is loaded), its schedule
    (parsed), its parameters (its kind's check, as at submission: the same parameters
    give the same answer); a record that fails one is CANCELLED, saying why, as before.
    Its ID must not be live already. Nothing else is: the rest was checked when it was
    submitted, and its Job is built from these very values when it is admitted."""

    def __init__(self, service: Service, now: float) -> None:
        self.service = service
        self.now = now
        self.registry = getattr(service.manager, "registry", None)
        self.parsed = _Parsed()
        self.sources: dict[tuple[Any, ...], Source] = {}
        self.params: dict[tuple[str, str], Mapping[str, Any]] = {}

    @staticmethod
    def possible(service: Service) -> bool:
        """Whether records can be read this way: a service of orcha's kinds, with no
        change waiting to be saved (the tuples are read without them)."""
        store = service.store
        registry = getattr(service.manager, "registry", None)
        return store is not None and registry is not None and not store.saver.snapshot()

    def restore(self, batches: Iterator[list[tuple[Any, ...]]]) -> int:
        """Queue every record of ``batches`` (tuples of ``QUEUED_COLUMNS``) that passes
        the checks above; how many were queued."""
        scheduler = self.service.scheduler
        logs = self.service.log_path("")
        entries: list[Queued] = []  # queued at once: one heapify, not a push each
        for batch in batches:
            for row in batch:
                (seq, petition_id, _, _, params, _, _, _, _, own, log_path, _,
                 paused, _, _, deps_met) = row  # fmt: skip
                try:
                    source = self.source(row)
                    checked = self.checked(source.runs, params)
                except (ValueError, PetitionError) as e:
                    self.cancel(seq, e)
                    continue
                entries.append(
                    Queued(
                        source,
                        seq,
                        petition_id,
                        checked,
                        own,
                        compact_log(self.service, log_path, logs),
                        bool(paused),
                        bool(deps_met),
                    )
                )
        taken: list[Queued] = []  # IDs live already: the first of a name stays
        scheduler.submit_queued(entries, taken)
        for entry in taken:
            self.cancel(entry.seq, DuplicateIdError(entry.id))
        return len(entries) - len(taken)

    def cancel(self, seq: int, error: PetitionError | ValueError) -> None:
        """End record ``seq`` CANCELLED: it cannot be queued again, and says why."""
        store = self.service.store
        assert store is not None
        record = store.get(seq)
        if record is not None:
            _end(
                self.service, record, state=str(State.CANCELLED), ended=self.now,
                message=f"not queued again after a restart: {error}",
            )  # fmt: skip

    def source(self, row: tuple[Any, ...]) -> Source:
        """What the record shares with those of its kind, schedule and submission."""
        (_, _, kind, runs_as, _, priority, submitted, cwd, env_id, _, _, schedule,
         _, array, limit, _) = row  # fmt: skip
        key = (kind, runs_as, priority, submitted, cwd, env_id, schedule, array, limit)
        source = self.sources.get(key)
        if source is None:
            runs = runs_as or kind
            assert self.registry is not None
            if self.registry.plugin_kind(runs) is None:
                raise UnknownKindError(runs, self.registry.names())
            store = self.service.store
            assert store is not None
            source = Source(
                self.service, kind=kind, runs=runs, cwd=os.fsdecode(cwd),  # bytes: not UTF-8
                env=store.envs.base(env_id, store._base_text), priority=priority,
                schedule=self.parsed.schedule(schedule), created=submitted,
                array=arrays.limit_of(array, submitted, limit), token="seq",
            )  # fmt: skip
            if len(self.sources) >= ENV_CACHE_SIZE:
                self.sources.clear()
            self.sources[key] = source
        return source

    def checked(self, runs: str, text: str) -> Mapping[str, Any]:
        """The parameters of a record, as its kind's check returns them (identical
        ones checked once, and shared)."""
        key = (runs, text)
        params = self.params.get(key)
        if params is None:
            assert self.registry is not None
            kind = self.registry.plugin_kind(runs)
            assert kind is not None  # the source was made
            try:
                params = kind.check(json.loads(text))
            except PetitionError:
                raise
            except Exception as e:  # as KindManager.petition_from_request says it
                raise InvalidPetitionError(f"invalid parameters for kind {kind.name!r}: {e}") from e
            if len(self.params) >= ENV_CACHE_SIZE:
                self.params.clear()
            self.params[key] = params
        return params


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its fields left as text (:data:`_RAW`) decoded."""
    return {**row, **{k: json.loads(row[k]) for k in _RAW if isinstance(row.get(k), str)}}


class _Parsed:
    """What a restore has read already: identical schedules are parsed once (and
    shared, as an array's members share theirs), identical parameters of a kind checked
    once (the records were checked when submitted; a kind's check gives the same for the
    same parameters)."""

    def __init__(self) -> None:
        self.schedules: dict[str, Schedule] = {}
        self.params: dict[tuple[str, str], dict[str, Any]] = {}

    def schedule(self, wire: Any) -> Schedule:
        """The schedule of a record's ``schedule`` field (JSON text, or decoded)."""
        key = wire if isinstance(wire, str) else json.dumps(wire, sort_keys=True)
        schedule = self.schedules.get(key)
        if schedule is None:
            schedule = Schedule.from_wire(json.loads(wire) if isinstance(wire, str) else wire)
            if len(self.schedules) >= ENV_CACHE_SIZE:
                self.schedules.clear()
            self.schedules[key] = schedule
        return schedule

    def keep(self, key: tuple[str, str], petition: Any) -> None:
        params = getattr(petition, "params", None)
        if isinstance(params, dict):
            if len(self.params) >= ENV_CACHE_SIZE:
                self.params.clear()
            self.params[key] = params


def _retry(
    service: Service,
    row: dict[str, Any],
    now: float,
    named: dict[int, dict[str, Any]],
    parsed: _Parsed,
) -> bool:
    """Queue a petition that was RUNNING again for its next attempt, if it asked for
    ``--retries`` and has one left; the interrupted run counts as an attempt (the record's
    ``attempt`` is committed before each attempt starts). False, with nothing changed, if
    it gets no other attempt: a child (its parent was interrupted too), a petition of the
    original API, or one without attempts left."""
    if row.get("parent") or not row["kind"]:
        return False
    try:
        schedule = parsed.schedule(row["schedule"])
    except (ValueError, PetitionError):
        return False
    attempts = 1 + schedule.retries
    done = int(row.get("attempt") or 1)
    if done >= attempts:
        return False
    store = service.store
    assert store is not None
    state = transition(State.RUNNING, State.QUEUED)
    store.update(
        row["seq"], state=str(state), started=None, pids=[], attempt=done + 1,
        message=f"attempt {done} of {attempts} was interrupted by a restart; "
        f"queued for attempt {done + 1}",
    )  # fmt: skip
    return _requeue(service, row, now, named, parsed, attempt=done + 1)


def save_end(store: Store, job: Job, **fields: Any) -> None:
    """Keep how ``job`` ended (``fields``): handed to the record writer, committed a batch
    later (docs/reliability.rst), unless a restart would give it another attempt (its
    record RUNNING, with ``--retries`` left: :func:`_retry`). Then it is committed before
    its client is told: after a crash in between, it would run again though it ended."""
    if job.parent is None and job.kind and job.attempt < 1 + job.schedule.retries:
        try:
            store.update(job.seq, wait=STORE_START_WAIT, **fields)
            return
        except NotSavedError:
            pass  # the writer keeps trying; the outage is logged and in 'orcha health'
    store.update_later(job.seq, **fields)


def _end(service: Service, row: dict[str, Any], **changes: Any) -> None:
    """Record that a petition found at start has ended, and announce it as a live end
    is announced: webhooks, plugins' event sinks and the ``on_finish`` hook hear it."""
    assert service.store is not None
    service.store.update(row["seq"], **changes)
    service.events.ended_at_restart({**row, **changes})


def _stop_leftovers(service: Service, row: dict[str, Any]) -> None:
    machine = service.scheduler.machine_named(row.get("machine"))
    if row["pids"] or row["token"]:
        n = machine.stop_recorded(row["pids"], row["token"] or None, service.settings.grace)
        if n:
            log.warning("petition %s: stopped %d process(es) left running", row["id"], n)


def _requeue(
    service: Service,
    row: dict[str, Any],
    now: float,
    named: dict[int, dict[str, Any]],
    parsed: _Parsed,
    attempt: int = 1,
) -> bool:
    """Queue a recorded petition again (as its kind's petition, detached), to run as
    attempt ``attempt``; False, with the record CANCELLED and why, if it can no longer
    be built. What its record must be given (a log path it lacks, its environment to
    share) goes into ``named`` (by record number), for the caller to commit before it
    may start."""
    from orcha.protocol.messages import SubmitRequest

    store = service.store
    assert store is not None
    try:
        if not row["kind"]:
            raise InvalidPetitionError("petitions of the original Orcha API are not restored")
        schedule = parsed.schedule(row["schedule"])
        params = row["params"]
        kind = row["runs_as"] or row["kind"]
        key = (kind, params if isinstance(params, str) else json.dumps(params, sort_keys=True))
        checked = parsed.params.get(key)
        # A runtime kind's petition runs as its parent, with the settings it was
        # queued with, whatever became of the template since.
        request = SubmitRequest(
            kind, row["id"], json.loads(key[1]) if checked is None else checked,
            row["priority"], row["cwd"], row["env"], attach=False, schedule=schedule,
        )  # fmt: skip
        petition = service.manager.petition_from_request(request, DISCARD, checked=checked)
        if checked is None:
            parsed.keep(key, petition)
    except (ValueError, PetitionError) as e:
        _end(
            service, _decoded(row), state=str(State.CANCELLED), ended=now,
            message=f"not queued again after a restart: {e}",
        )  # fmt: skip
        return False
    # A token of this service (the record's is the last one's): unique here, as the
    # random ones of new petitions are; it is recorded when the petition starts
    # (Service.job_started), the only time its processes' token matters.
    job = Job(
        petition, native=True, token_prefix=service.token_prefix, kind=row["kind"],
        seq=row["seq"], token=f"{service.token_prefix}-r{row['seq']}", schedule=schedule,
        created=row["submitted"],
    )  # fmt: skip
    job.paused = bool(row["paused"])
    # Met before the restart: met for good (what it ran after may be cleaned since).
    job.deps_ready = job.deps_ready or bool(row.get("deps_met"))
    job.attempt = attempt
    job.events = service.events
    changed: dict[str, Any] = {}
    if not row["log_path"]:
        changed["log_path"] = service.log_path(os.urandom(8).hex())
    if row.get("env_whole"):
        changed["env"] = row["env"]  # saved again, shared from now on
    if changed:
        named[row["seq"]] = changed
    job.log = service.open_log(job, row["log_path"] or changed["log_path"])
    arrays.restored(job, row)  # its array's %N holds again
    service.scheduler.submit(job)
    return True


# -- group limits and pauses ------------------------------------------------------------
def save_groups(service: Service) -> None:
    """Keep the group limits and pauses for the next start."""
    if service.store is None:
        return
    scheduler = service.scheduler
    service.store.set_value(
        str(service.settings.address),
        "groups",
        {
            "limits": scheduler.group_limits(),
            "paused": sorted(scheduler.paused_groups()),
            "paused_all": scheduler.paused_all,
        },
    )


def load_groups(service: Service) -> None:
    """Set the group limits and pauses a previous service kept."""
    assert service.store is not None
    saved = service.store.get_value(str(service.settings.address), "groups", {})
    for name, limit in (saved.get("limits") or {}).items():
        service.scheduler.set_group_limit(name, int(limit))
    paused_all = bool(saved.get("paused_all"))
    service.scheduler.set_paused(True, (), saved.get("paused") or (), paused_all)
