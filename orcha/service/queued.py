"""Queued petitions held compactly, built into a :class:`~orcha.service.job.Job` only
when one is needed.

A waiting petition of orcha's kinds that no client is attached to and that has no
parent (an array's member submitted detached, or any such petition queued again after a
restart) costs the service a :class:`Queued` entry: its record number, ID, rank,
parameters (identical ones shared), log name, per-petition environment variables and a
few flags, about a fifth of a Job with its petition, locks and log. What the members of
one submission share (kind, working directory, environment, schedule, priority,
submission time, array, attempt) is one :class:`Source` they point to; of its
environment an entry keeps only its own variables (an array member's index, name and
size): a flat tuple of names and values (:func:`own_variables`), or, after a restart,
the JSON its record keeps them in. So 100,000 queued cost about 85 MB over an idle
service (330 MB as Jobs), and a restart reads rows into entries without building
petitions.

The contract (what the scheduler and the listing paths may do with an entry):

* **read** what deciding and showing a waiting petition needs, with a Job's names:
  ``seq``, ``id``, ``kind``, ``native`` (always true), ``state`` (always QUEUED),
  ``schedule``, ``priority``, ``created``, ``attempt``, ``array``, ``paused``,
  ``deps_ready``, ``blocked_since``, the rank (:func:`rank_of`), ``describe()``,
  ``summary()``, and the fields a running Job has, at their values before it starts
  (``started`` None, ``gpu_ids`` empty, ...). ``petition`` builds a new petition each
  time, for predicates that read it (plugins'): it is not the petition that will run.
* **change** only ``paused``, ``deps_ready``, ``blocked_since`` and the rank (the
  scheduler's walk, ``pause``/``resume``, a reload's new aging).
* waiting for its end builds nothing: a waiter is subscribed by its record number
  (:meth:`~orcha.service.events.Events.wait_for`), and the Job built later announces
  its end by that number.
* anything else (start it, cancel it, fail it, change its schedule or priority, follow
  it) needs its Job: :meth:`Source.build`, through the scheduler
  (:meth:`~orcha.service.queued_control.QueuedControl.get`, ``.job``), which puts the
  Job in the entry's place for good and keeps it as the entry's ``built``: an entry
  read before gives that Job. A Job is never turned back into an entry: whoever holds
  it keeps the one petition there is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from orcha.protocol.outputs import DISCARD
from orcha.service.environments import joined, split
from orcha.states import State

if TYPE_CHECKING:
    from typing import TypeAlias

    from orcha.model import Petition
    from orcha.protocol.messages import SubmitRequest
    from orcha.protocol.schedule import Schedule
    from orcha.service.job import Job
    from orcha.service.service import Service

    #: A waiting petition as the scheduler holds it: its Job, or a compact entry.
    Waiting: TypeAlias = "Job | Queued"


class Source:
    """What the entries of one submission (or the restored records of one array, kind,
    schedule and submission time) share, and the service that builds their Jobs.

    ``kind``: the kind the records name (a template's name, for a petition of a runtime
    kind); ``runs``: the plugin kind that runs it; ``token``: how a Job's process token
    is made (``"log"``: from its log's unique name, as a new petition's; ``"seq"``: from
    its record number, as a restored one's); ``array``: the ``%N`` limit it is under
    (:attr:`~orcha.service.job.Job.array`), or None."""

    __slots__ = (
        "array", "attempt", "created", "cwd", "env", "kind", "priority", "runs", "schedule",
        "service", "token",
    )  # fmt: skip

    def __init__(
        self,
        service: Service,
        *,
        kind: str,
        runs: str,
        cwd: str,
        env: Mapping[str, str],
        priority: int | None,
        schedule: Schedule,
        created: float,
        attempt: int = 1,
        array: tuple[str, str, int] | None = None,
        token: str = "log",
    ) -> None:
        self.service = service
        self.kind = kind
        self.runs = runs
        self.cwd = cwd
        self.env = env  # the shared base
        self.priority = priority
        self.schedule = schedule
        self.created = created
        self.attempt = attempt
        self.array = array
        self.token = token

    def petition(self, entry: Queued) -> Petition:
        """A petition of ``entry``, as its kind made it when it was queued (its
        parameters were checked then: they are not checked again)."""
        from orcha.service.kinds import KindPetition

        petition = KindPetition(
            id=entry.id, queue=DISCARD, kind=self.runs, params=dict(entry.params),
            cwd=self.cwd, env=self.environment(entry),  # type: ignore[arg-type]  # read-only
        )  # fmt: skip
        if self.priority is not None:
            petition.priority = self.priority
        return petition

    def environment(self, entry: Queued) -> Mapping[str, str]:
        """``entry``'s environment: the shared base with its own variables over it."""
        own = entry.env
        if not own:
            return self.env
        if isinstance(own, str):  # as its record keeps them (a restart reads no more)
            return joined(self.env, json.loads(own))
        return joined(self.env, dict(zip(own[::2], own[1::2], strict=True)))

    def build(self, entry: Queued) -> Job:
        """The Job of ``entry``: the petition it stands for, as intake or a restart
        would have queued it (detached, its log opened, its pause and %N kept)."""
        from orcha.service.job import Job

        service = self.service
        petition = self.petition(entry)
        petition.rank = entry.rank
        prefix = service.token_prefix
        log = entry.log
        if isinstance(log, bytes):  # the unique name of a log where the service keeps them
            uid = log.hex()
            path = service.log_path(uid)
        else:
            path, uid = log, log.rsplit("/", 1)[-1].removesuffix(".log")
        token = f"{prefix}-r{entry.seq}" if self.token == "seq" else f"{prefix}-{uid}"
        job = Job(
            petition, native=True, token_prefix=prefix, kind=self.kind, seq=entry.seq,
            token=token, schedule=self.schedule, created=self.created,
        )  # fmt: skip
        job.paused = entry.paused
        job.attempt = self.attempt
        job.array = self.array
        job.deps_ready = entry.deps_ready
        job.blocked_since = entry.blocked_since
        job.events = service.events
        job.log = service.open_log(job, path)
        return job


class Queued:
    """One waiting petition, compactly (see the module docstring for the contract)."""

    __slots__ = (
        "blocked_since", "built", "deps_ready", "env", "id", "log", "params", "paused", "rank",
        "seq", "source",
    )  # fmt: skip

    # What a Job that has not started says (read by listings and predicates).
    native = True
    state = State.QUEUED
    stopped = False
    started: float | None = None
    ended: float | None = None
    code: int | None = None
    message: str | None = None
    machine: Any = None
    gpu_ids: tuple[str, ...] = ()
    progress: dict[str, Any] | None = None
    outcome: Any = None
    announced = False
    parent: Any = None
    family: Any = None
    session: Any = None
    cpu_time: float | None = None
    peak_rss: int | None = None
    queue = DISCARD

    def __init__(
        self,
        source: Source,
        seq: int,
        petition_id: str,
        params: Mapping[str, Any],
        env: tuple[str, ...] | str,
        log: str | bytes,
        paused: bool = False,
        deps_met: bool = False,
    ) -> None:
        """``deps_met``: its record says its dependencies were met (before a restart)."""
        self.source = source
        self.seq = seq
        self.id = petition_id
        self.params = params
        # Its own variables over its source's: a flat tuple (own_variables), or the JSON
        # its record keeps them in ("{}": none).
        self.env = env if env != "{}" else ()
        self.log = log  # its log's path, or its unique name (see compact_log)
        self.paused = paused
        self.rank: tuple[Any, ...] = ()
        self.deps_ready = deps_met or not source.schedule.dependencies
        self.blocked_since: float | None = None
        self.built: Job | None = None  # its Job, once built (Scheduler.job)

    @property
    def kind(self) -> str:
        return self.source.kind

    @property
    def schedule(self) -> Schedule:
        return self.source.schedule

    @property
    def created(self) -> float:
        return self.source.created

    @property
    def priority(self) -> int:
        return int(self.source.priority or 0)

    @property
    def attempt(self) -> int:
        return self.source.attempt

    @property
    def array(self) -> tuple[str, str, int] | None:
        return self.source.array

    @array.setter
    def array(self, array: tuple[str, str, int] | None) -> None:
        # The members of one submission share their source, and their array's limit.
        self.source.array = array

    @property
    def petition(self) -> Petition:
        """A new petition of it each time (see the module docstring)."""
        return self.source.petition(self)

    def summary(self) -> dict[str, Any]:
        """As :meth:`Job.summary <orcha.service.job.Job.summary>`."""
        return {
            "id": self.id, "state": str(self.state), "code": None, "message": None,
            "attempt": self.attempt, "outcome": None,
        }  # fmt: skip

    def describe(self) -> dict[str, Any]:
        """As :meth:`Job.describe <orcha.service.job.Job.describe>`."""
        return {
            "id": self.id, "kind": self.kind, "state": str(self.state),
            "priority": self.priority, "created": self.created, "started": None,
            "ended": None, "code": None, "attempt": self.attempt, "gpus": [],
            "machine": None, "paused": self.paused,
        }  # fmt: skip

    def __repr__(self) -> str:
        return f"Queued({self.id!r}, seq={self.seq})"


def queue_many(
    service: Service,
    built: list[tuple[Petition, SubmitRequest, Schedule]],
    named: list[tuple[str, str]],
    requests: list[SubmitRequest],
    seqs: list[int],
    created: float,
    prepare: Callable[[Waiting], None] | None = None,
) -> list[Queued]:
    """Queue recorded petitions of one submission (detached, no parent) as compact
    entries, under the scheduler's lock: ``built`` (each petition as its kind made it,
    its resolved request, its schedule), ``named`` (token, log path), ``requests`` (as
    sent), ``seqs`` (record numbers); ``prepare(entry)`` on each before it is queued.
    Identical parameters (an array's, without ``{}``) are kept once."""
    sources: dict[tuple[Any, ...], Source] = {}
    entries: list[Queued] = []
    events = service.events
    last: Mapping[str, Any] | None = None
    for (petition, resolved, schedule), (_, log), request, seq in zip(
        built, named, requests, seqs, strict=True
    ):
        base, own = split(resolved.env)
        key = (request.kind, resolved.kind, resolved.cwd, resolved.priority, id(schedule), id(base))
        source = sources.get(key)
        if source is None:
            source = sources[key] = Source(
                service, kind=request.kind, runs=resolved.kind, cwd=resolved.cwd, env=base,
                priority=resolved.priority, schedule=schedule, created=created,
            )  # fmt: skip
        params: Mapping[str, Any] = petition.params  # type: ignore[attr-defined]
        if params == last:
            params = last
        last = params
        entry = Queued(
            source, seq, str(petition.id), params, own_variables(own), compact_log(service, log)
        )
        if prepare is not None:
            prepare(entry)
        entries.append(entry)
        # Before it is queued: it may start at once, and watchers must see "submitted"
        # before "started".
        events.watch_event(entry, "submitted", {"priority": entry.priority})
    service.scheduler.submit_queued(entries)
    return entries


def compact_log(service: Service, path: str, logs: str | None = None) -> str | bytes:
    """A petition's log path as an entry keeps it: where the service keeps logs, its
    unique name as 8 bytes (a third of the path's size), else the path itself.
    ``logs``: the service's ``log_path("")``, for a caller that asks many times."""
    if logs is None:
        logs = service.log_path("")
    # logs is ".../NAME.log" for NAME "": a log of the service is that with 16 hex digits.
    if len(path) == len(logs) + 16 and path.startswith(logs[:-4]) and path.endswith(".log"):
        try:
            return bytes.fromhex(path[-20:-4])
        except ValueError:
            pass
    return path


def own_variables(own: Mapping[str, str], known: dict[str, str] | None = None) -> tuple[str, ...]:
    """A petition's own environment variables as a flat tuple ``(name, value, ...)``:
    a third of a dict's size. ``known``: strings seen before, to share (a restart's
    records repeat an array's name and size)."""
    if not own:
        return ()
    if known is None:
        return tuple(s for item in own.items() for s in item)
    return tuple(known.setdefault(s, s) for item in own.items() for s in item)


def rank_of(job: Job | Queued) -> tuple[Any, ...]:
    """The place of a waiting petition in the order (its petition's rank)."""
    if type(job) is Queued:
        return job.rank
    return job.petition.rank


def set_rank(job: Job | Queued, rank: tuple[Any, ...]) -> None:
    """Give a waiting petition its place in the order."""
    if type(job) is Queued:
        job.rank = rank
    else:
        job.petition.rank = rank
