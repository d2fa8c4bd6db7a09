"""The records ``status`` answers with, and the listing of every record as JSON text.

:func:`record_of` is the reference: the record of one database row, with the live
state of its petition if it is queued or running. ``status --all --json`` lists every
record a page at a time (:func:`page_text`), already encoded: the text of
``json.dumps(record)`` for each record of the page, joined by ``", "``, byte for byte
what the client would have printed from the records themselves. The client writes it as
it comes, never decoding a record and encoding it again, and asks for the next page
before it writes one (the service builds it meanwhile).

The text is built from each row read as a plain tuple, without a dictionary per
record, in one loop a page: text columns through the JSON module's own C string encoder,
integers and finite floats by their ``repr`` (what ``json.dumps`` writes; any other
value goes through ``json.dumps``), each distinct text of a JSON column decoded and
encoded once per page, the fields an array's queued members share (kind to cwd,
schedule, outcome to array: the same values) formatted once per page, and the live
state as :func:`record_of` merges it (the live petitions of a page looked up under one
hold of the scheduler's lock). A row with changes not saved yet is built by
:func:`record_of` itself, read again with them applied. (SQLite cannot build the text:
it prints floats with 15 digits and leaves non-ASCII characters unescaped, and its
string concatenation costs more than Python's: measured again, its ``printf`` and
``json_quote`` for a page's text cost 1.16-1.22 s of CPU per 100,000 rows against
0.93-0.97 s here.)
"""

from __future__ import annotations

import json
import os
from functools import partial
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any, TypeVar

from orcha.defaults import STATUS_TEXT_PAGE_MAX
from orcha.protocol.selection import group_of
from orcha.service.accounting import live_usage, span, wall_time
from orcha.service.store_bulk import page_where
from orcha.states import State

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Sequence

    from orcha.protocol.requests import StatusRequest
    from orcha.service.peer import Peer
    from orcha.service.queued import Waiting
    from orcha.service.scheduler import Scheduler
    from orcha.service.service import Service
    from orcha.service.store import Store

#: The record fields ``status`` answers with, in this order (not env: big, and not
#: shown); :func:`record_of` adds ``children``, ``wall_time`` and the live fields after.
STATUS_COLUMNS = (
    "seq", "id", "kind", "state", "priority", "submitted", "started", "ended", "code",
    "message", "user", "host", "cwd", "params", "schedule", "attempt", "paused", "outcome",
    "notify_error", "machine", "parent", "leftovers", "log_truncated", "restart_of",
    "array", "array_index", "cpu_time", "peak_rss",
)  # fmt: skip

_QUEUED = str(State.QUEUED)
_T = TypeVar("_T")


def live_fields(
    job: Waiting, state: str, reasons: dict[int, str], scheduler: Scheduler, measured: bool = False
) -> tuple[Any, int, dict[str, Any]]:
    """What a live petition's record shows from its job (or compact entry, read without
    building it) rather than its row (``state``: the row's): ``(paused, attempt, fields
    added after wall_time)``; ``measured``: with the usage of its running processes so
    far (``cpu_time``, ``peak_rss``)."""
    extra: dict[str, Any] = {}
    if job.gpu_ids:
        extra["gpus"] = list(job.gpu_ids)
    if job.progress is not None:
        extra["progress"] = dict(job.progress)
    if measured and job.state is State.RUNNING:
        extra.update(live_usage(scheduler.job(job)))  # measured when asked for by ID only
    if state == _QUEUED and job.seq in reasons:
        extra["waiting"] = reasons[job.seq]
        # Aging at work: what it competes with now (lower starts first).
        # + 0.0: rounding a tiny negative gives -0.0, which reads oddly in JSON.
        extra["effective_priority"] = round(scheduler.effective_priority(job), 3) + 0.0
    elif job.stopped:
        extra["waiting"] = f"stopped (SIGSTOP); 'orcha resume {job.id}' continues it"
    elif getattr(job, "waits_for", None):  # a Job between attempts (compact entries: never)
        extra["waiting"] = job.waits_for  # type: ignore[union-attr]
    return job.paused or job.stopped, job.attempt, extra


def record_of(
    row: dict[str, Any],
    children: dict[int, list[str]],
    scheduler: Scheduler,
    reasons: dict[int, str],
    now: float,
    measured: bool = False,
) -> dict[str, Any]:
    """The record ``status`` answers with for ``row`` (a record of the store with the
    :data:`STATUS_COLUMNS`): its children's IDs, wall time, and what its job says now
    if it is live (``reasons``: why queued ones wait, by seq)."""
    record = {name: row[name] for name in STATUS_COLUMNS}
    if row["seq"] in children:
        record["children"] = children[row["seq"]]
    record["paused"] = bool(record["paused"])
    record["wall_time"] = wall_time(row, now)
    job = scheduler.peek(row["id"])  # read only: a compact entry is not built
    if job is not None and job.seq == row["seq"]:
        record["paused"], record["attempt"], extra = live_fields(
            job, row["state"], reasons, scheduler, measured
        )
        # Measured usage replaces the saved one (same keys); the rest come after.
        record.update(extra)
    return record


# -- a page of every record, as text ------------------------------------------------------
def page_reply(service: Service, peer: Peer, request: StatusRequest) -> dict[str, Any]:
    """The reply to a ``status`` request for a page of every record as text
    (``page`` and ``text``): ``{"text", "count", "next", "missing", "arrays",
    "hidden"}`` (see :func:`page_text`; at most :data:`STATUS_TEXT_PAGE_MAX` records)."""
    store, scheduler = service.store, service.scheduler
    assert request.page is not None
    if store is None:
        return {"text": "", "count": 0, "next": None, "missing": [], "arrays": {}, "hidden": 0}
    if request.after is None or peer.listing is None:  # its first page
        peer.listing = scheduler.explain()
    reasons = peer.listing
    text, count, nxt = page_text(
        store, scheduler, reasons, service.clock(), request.after,
        min(request.page, STATUS_TEXT_PAGE_MAX), request.states, request.groups,
    )  # fmt: skip
    if nxt is None:
        peer.listing = None  # the last page
    return {"text": text, "count": count, "next": nxt, "missing": [], "arrays": {}, "hidden": 0}


#: The columns of a row read for its text: those an array's members share (the last ones,
#: from kind: :func:`_shared`) after those each has of its own.
_ROW_COLUMNS = (
    "seq", "id", "params", "attempt", "paused", "array_index", "cpu_time", "peak_rss",
    "kind", "state", "priority", "submitted", "started", "ended", "code", "message", "user",
    "host", "cwd", "schedule", "outcome", "notify_error", "machine", "parent", "leftovers",
    "log_truncated", "restart_of", "array",
)  # fmt: skip
_SHARED = _ROW_COLUMNS.index("kind")
_STATE, _SCHEDULE = _ROW_COLUMNS.index("state"), _ROW_COLUMNS.index("schedule")
_SELECT = f"SELECT {', '.join(_ROW_COLUMNS)} FROM petitions"
_FEW = 900  # rows named in one query (SQLite's oldest limit is 999 variables)
_CHILDREN = (
    "SELECT parent_seq, id FROM petitions WHERE parent_seq BETWEEN ? AND ? "
    "AND parent_seq IS NOT NULL ORDER BY seq"
)

_float_repr = float.__repr__
_q = encode_basestring_ascii  # json.dumps of a str (TypeError for anything else)


def _other(value: Any) -> str:
    """``json.dumps(value)``, quickly for None (what a record's NULL columns hold)."""
    return "null" if value is None else json.dumps(value)


def _integer(value: Any) -> Any:
    """What formats as ``json.dumps(value)`` for an INTEGER column's value."""
    return value if value.__class__ is int else _other(value)


def _number(value: Any) -> str:
    """``json.dumps(value)`` for a REAL column's value, quickly for a finite float."""
    if value.__class__ is float and value - value == 0.0:  # not inf or nan
        return _float_repr(value)
    return _other(value)


class _Memo(dict[Any, _T]):
    """A value -> its text made by ``make``, each distinct one made once (an array's
    members share most of theirs); bounded: a listing of distinct values makes each
    once anyway."""

    def __init__(self, make: Callable[[Any], _T]) -> None:
        super().__init__()
        self.make = make

    def __missing__(self, value: Any) -> _T:
        if len(self) > 4096:
            self.clear()
        text = self[value] = self.make(value)
        return text


def _reencoded(text: Any) -> str:
    """``json.dumps`` of the value of a JSON column's ``text``."""
    return json.dumps(json.loads(text) if isinstance(text, str) else text)


def _shared(values: tuple[Any, ...], encoded: _Memo[str]) -> tuple[str, str, str]:
    """The texts of the fields ``kind`` to ``cwd``, of ``schedule``'s value and of the
    fields ``outcome`` to ``array`` of a record holding ``values`` (its columns from
    ``kind`` in :data:`_ROW_COLUMNS`)."""
    (kind, state, prio, submitted, started, ended, code, message, user, host, cwd, schedule,
     outcome, notify_error, machine, parent, leftovers, log_truncated, restart_of,
     array) = values  # fmt: skip
    q = _q
    head = (
        f'"kind": {q(kind)}, "state": {q(state)}, '
        f'"priority": {prio if prio.__class__ is int else _other(prio)}, '
        f'"submitted": {_number(submitted)}, '
        f'"started": {"null" if started is None else _number(started)}, '
        f'"ended": {"null" if ended is None else _number(ended)}, '
        f'"code": {"null" if code is None else _integer(code)}, '
        f'"message": {"null" if message is None else q(message)}, '
        f'"user": {q(user)}, "host": {q(host)}, '
        f'"cwd": {q(cwd if cwd.__class__ is str else os.fsdecode(cwd))}'
    )  # fmt: skip
    tail = (
        f'"outcome": {"null" if outcome is None else encoded[outcome]}, '
        f'"notify_error": {"null" if notify_error is None else q(notify_error)}, '
        f'"machine": {"null" if machine is None else q(machine)}, '
        f'"parent": {"null" if parent is None else q(parent)}, '
        f'"leftovers": {"null" if leftovers is None else _integer(leftovers)}, '
        f'"log_truncated": {"null" if log_truncated is None else q(log_truncated)}, '
        f'"restart_of": {"null" if restart_of is None else _integer(restart_of)}, '
        f'"array": {"null" if array is None else q(array)}'
    )  # fmt: skip
    return head, encoded[schedule], tail


def _group(schedule: Any) -> str:
    """The group of a record whose schedule's text is ``schedule``."""
    return group_of({"schedule": json.loads(schedule) if isinstance(schedule, str) else schedule})


def page_text(
    store: Store,
    scheduler: Scheduler,
    reasons: dict[int, str],
    now: float,
    after: int | None,
    limit: int,
    states: Sequence[str] = (),
    groups: Sequence[str] = (),
) -> tuple[str, int, int | None]:
    """``(text, count, next)``: the next ``limit`` records numbered after ``after``
    (from the first if None), oldest first, of ``states`` and ``groups`` if given, as
    the text of each record's ``json.dumps`` (:func:`record_of`) joined by ``", "``;
    ``count``: how many records it holds; ``next``: where the next page starts (None:
    this was the last). A page holds ``limit`` records unless it is the last, or
    ``groups`` left many out (then it holds those of the next ``limit`` in ``states``)."""
    texts: list[str] = []
    while True:
        more, nxt = _page_once(
            store, scheduler, reasons, now, after, limit - len(texts), states, groups
        )
        texts += more
        # A record read for a change not saved yet may be in another state by now: left
        # out, and the page filled from the records after it.
        if nxt is None or len(texts) == limit or groups:
            return ", ".join(texts), len(texts), nxt
        after = nxt


def _page_once(
    store: Store,
    scheduler: Scheduler,
    reasons: dict[int, str],
    now: float,
    after: int | None,
    limit: int,
    states: Sequence[str],
    groups: Sequence[str],
) -> tuple[list[str], int | None]:
    """The texts of the records of :func:`page_text` among the next ``limit`` records
    after ``after`` in ``states`` as saved, and where the next read starts."""
    unsaved_before = store.saver.pending_seqs() if states else []
    where, args = page_where(after, states, unsaved_before)
    sql = f"{_SELECT} WHERE {where} ORDER BY seq LIMIT ?"

    def read(db: sqlite3.Connection) -> tuple[list[Any], list[Any]]:
        cursor = db.cursor()
        cursor.row_factory = None  # plain tuples: no Row made per record
        rows = cursor.execute(sql, (*args, limit)).fetchall()
        kids = cursor.execute(_CHILDREN, (rows[0][0], rows[-1][0])).fetchall() if rows else []
        return rows, kids

    with store.saver.view_lock:  # the changes not saved yet, as they were at the read
        rows, kids = store._read(read)
        unsaved = set(store.saver.pending_seqs())
    nxt = rows[-1][0] if len(rows) == limit else None
    children: dict[int, list[str]] = {}
    for parent_seq, child in kids:
        children.setdefault(parent_seq, []).append(child)
    if states or groups:
        # Read for changes not saved when the read began, saved since: in the states asked
        # for only if its saved state is (as Store.page filters).
        grouped: dict[Any, str] = {}
        chosen = []
        for row in rows:
            if row[0] not in unsaved:
                if states and row[_STATE] not in states:
                    continue
                if groups:
                    schedule = row[_SCHEDULE]
                    group = grouped.get(schedule) or grouped.setdefault(schedule, _group(schedule))
                    if group not in groups:
                        continue
            chosen.append(row)
        rows = chosen
    texts = _texts(rows, unsaved, children, reasons, now, scheduler)
    # Rows the reference builds: with their changes not saved yet (or an odd value).
    redo = [row[0] for row, text in zip(rows, texts, strict=True) if text is None]
    if redo:
        again = {r["seq"]: r for i in range(0, len(redo), _FEW)
                 for r in store.find(seqs=redo[i : i + _FEW], columns=STATUS_COLUMNS)}  # fmt: skip
        for i, row in enumerate(rows):
            if texts[i] is None:
                found = again.get(row[0])
                if (found is not None and (not states or found["state"] in states)
                        and (not groups or group_of(found) in groups)):  # fmt: skip
                    texts[i] = json.dumps(record_of(found, children, scheduler, reasons, now))
    return [t for t in texts if t is not None], nxt


def _texts(
    rows: list[tuple[Any, ...]],
    unsaved: set[int],
    children: dict[int, list[str]],
    reasons: dict[int, str],
    now: float,
    scheduler: Scheduler,
) -> list[str | None]:
    """``json.dumps(record_of(row...))`` for each row of :data:`_ROW_COLUMNS` (tuples),
    built without the records; None for a row the reference must build: one in
    ``unsaved``, or with a text column holding something else."""
    texts: list[str | None] = []
    encoded, quoted = _Memo(_reencoded), _Memo(json.dumps)
    # The fields an array's queued members share (not started, not ended; their
    # submission time theirs), each distinct set formatted once.
    shared = _Memo(partial(_shared, encoded=encoded))
    last: tuple[Any, ...] = ()
    parts = ("", "", "")
    # What a waiting petition adds, by (reason, priority, created, state): an array's
    # members share theirs (the page's clock read once for them all).
    waits: dict[tuple[Any, ...], str] = {}
    priority, q, number, other = scheduler.effective_priority, _q, _number, _other
    queued, append = _QUEUED, texts.append
    jobs = scheduler.peek_each([row[1] for row in rows])  # peek: nothing built
    for row, job in zip(rows, jobs, strict=True):
        (seq, pid, params, attempt, paused, array_index, cpu_time, peak_rss, _, state, _,
         submitted, started, ended) = row[:14]  # fmt: skip
        if seq in unsaved:
            append(None)
            continue
        try:
            more = ""
            if job is None or job.seq != seq:
                paused_text = "true" if paused else "false"
            else:
                reason = reasons.get(seq) if state == queued else None
                if reason is not None and not job.gpu_ids and job.progress is None:
                    # The common case of a long queue, without a dictionary: live_fields's.
                    live, attempt = job.paused or job.stopped, job.attempt
                    key = (reason, job.priority, job.created, job.state)
                    more = waits.get(key) or waits.setdefault(key, (
                        f', "waiting": {quoted[reason]}, "effective_priority": '
                        f"{number(round(priority(job), 3) + 0.0)}"))  # fmt: skip
                else:
                    live, attempt, extra = live_fields(job, state, reasons, scheduler)
                    more = ", " + json.dumps(extra)[1:-1] if extra else ""
                paused_text = (
                    "true" if live is True else "false" if live is False else json.dumps(live)
                )
            kin = children.get(seq)
            family = f', "children": {json.dumps(kin)}' if kin else ""
            wall = number(span(started, ended, state, now)) if started else "null"
            # Looked up for a record neither started nor ended (an array's queued members);
            # not for a submission time of 0.0: -0.0 is equal to it but written otherwise.
            values = row[_SHARED:]
            if started is None and ended is None and submitted:
                if values != last:  # the row before's, most often: no hashing
                    last, parts = values, shared[values]
                head, schedule, tail = parts
            else:
                head, schedule, tail = _shared(values, encoded)
            # Inline (not a call per column): the calls would cost more than the rest.
            append(
                f'{{"seq": {seq if seq.__class__ is int else other(seq)}, "id": {q(pid)}, '
                f'{head}, "params": {encoded[params]}, "schedule": {schedule}, '
                f'"attempt": {attempt if attempt.__class__ is int else other(attempt)}, '
                f'"paused": {paused_text}, {tail}, '
                f'"array_index": {"null" if array_index is None else _integer(array_index)}, '
                f'"cpu_time": {"null" if cpu_time is None else number(cpu_time)}, '
                f'"peak_rss": {"null" if peak_rss is None else _integer(peak_rss)}{family}, '
                f'"wall_time": {wall}{more}}}'
            )  # fmt: skip
        except TypeError:  # a column holding an unexpected type: the reference says
            append(None)
    return texts
