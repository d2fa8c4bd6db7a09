"""Records in bulk: the members of an array (``run --array``, ``run --each``) added in
one transaction and found again by the array's name; ended records removed by selection
(``clean``); the records run again (``restart --failed``); the live records (a
restart's, in chunks), the default status view and listings in pages, read through
indexes. Mixed into :class:`~orcha.service.store.Store`, whose connections it uses."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from orcha.defaults import STORE_CLEAN_FLUSH_WAIT
from orcha.service.store_access import StoreAccess
from orcha.text import is_utf8

if TYPE_CHECKING:
    from orcha.service.environments import EnvironmentTable
    from orcha.service.saving import Saver


#: The condition of the partial indexes of live records (petitions_live, _waiting).
_LIVE = "state IN ('QUEUED', 'RUNNING')"
#: Queued records a restart queues again as they are (:meth:`BulkRecords.queued_rows`):
#: not children, of a kind, with a shared environment and a log path, not fed by a client.
_PLAIN_QUEUED = (
    "state = 'QUEUED' AND parent IS NULL AND kind != '' AND env_id IS NOT NULL "
    "AND log_path IS NOT NULL AND stdin = 0"
)
#: Their columns, in this order.
QUEUED_COLUMNS = (
    "seq", "id", "kind", "runs_as", "params", "priority", "submitted", "cwd", "env_id",
    "env", "log_path", "schedule", "paused", "array", "array_limit", "deps_met",
)  # fmt: skip


class BulkRecords(StoreAccess):
    """What :class:`~orcha.service.store.Store` does to many records at once."""

    saver: Saver
    envs: EnvironmentTable

    @staticmethod
    def _encode(record: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def flush(self, timeout: float | None = None) -> bool:
        raise NotImplementedError

    def remove_finished(
        self,
        before: float | None = None,
        seqs: Sequence[int] | None = None,
        states: Sequence[str] = (),
        groups: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Delete ended records (ended before ``before`` if given; only records ``seqs``
        if given; only in ``states`` and of ``groups`` if given); return what was
        deleted. Changes waiting to be saved are saved first (within a bound), so a
        petition that has just ended is removed too; records whose changes still are not
        saved are kept (their end may not be). NotSavedError if the database cannot be
        written now."""
        if seqs is not None and not seqs:
            return []
        self.flush(STORE_CLEAN_FLUSH_WAIT)
        clause = "state NOT IN ('QUEUED', 'RUNNING')"
        args: list[Any] = []
        if before is not None:
            clause += " AND ended < ?"
            args.append(before)
        for column, values in (("seq", seqs or ()), ("state", states)):
            if values:
                clause += f" AND {column} IN ({', '.join('?' for _ in values)})"
                args.extend(values)
        if groups:
            # A record's group is in its schedule, which leaves out the default one.
            clause += (
                " AND COALESCE(json_extract(schedule, '$.group'), 'default') IN "
                f"({', '.join('?' for _ in groups)})"
            )
            args.extend(groups)
        unsaved = self.saver.pending_seqs()
        if unsaved:
            clause += f" AND seq NOT IN ({', '.join('?' for _ in unsaved)})"
            args.extend(unsaved)

        def delete(db: sqlite3.Connection) -> list[sqlite3.Row]:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute(
                f"SELECT seq, id, log_path FROM petitions WHERE {clause}", args
            ).fetchall()
            db.execute(f"DELETE FROM petitions WHERE {clause}", args)
            if rows:  # environments no record uses any more
                db.execute(
                    "DELETE FROM environments WHERE id NOT IN "
                    "(SELECT env_id FROM petitions WHERE env_id IS NOT NULL)"
                )
            db.execute("COMMIT")
            if rows:
                self.envs.forget()  # under the write lock: no insert uses a deleted id
            return rows

        rows = self._write(delete, "nothing was removed")
        return [dict(r) for r in rows]

    def add_many(
        self, records: Sequence[dict[str, Any]], what: str = "nothing was submitted"
    ) -> list[int]:
        """Insert new records in one transaction (all or none, as an array is taken);
        return their ``seq``s in order. NotSavedError (with ``what`` was not done) if they
        cannot be saved within a bound. A record whose ``id`` is None is named by its
        ``seq``, as text, in the same transaction (never a record without a name)."""
        rows = [self._encode(record) for record in records]

        new_envs: dict[str, int] = {}

        def insert(db: sqlite3.Connection) -> list[int]:
            seqs: list[int] = []
            new_envs.clear()  # a retry starts again: what a rollback undid is not kept
            db.execute("BEGIN IMMEDIATE")  # a failure rolls back (Writes.run)
            for values in rows:
                by_seq = values.get("id") is None
                if by_seq:
                    values = {**values, "id": ""}
                if "env" in values:  # its shared base stored once, the rest with it
                    env_id, own = self.envs.store(db, values["env"], new_envs)
                    values = {**values, "env": own, "env_id": env_id}
                cur = db.execute(
                    f"INSERT INTO petitions ({', '.join(values)}) "
                    f"VALUES ({', '.join('?' for _ in values)})",
                    tuple(values.values()),
                )
                seq = int(cur.lastrowid or 0)
                if by_seq:
                    db.execute("UPDATE petitions SET id = ? WHERE seq = ?", (str(seq), seq))
                seqs.append(seq)
            db.execute("COMMIT")
            return seqs

        seqs = self._write(insert, what)
        self.envs.committed(new_envs)
        return seqs

    def update_many(self, changes: dict[int, dict[str, Any]], what: str) -> None:
        """Change fields of many records in one transaction (all or none); NotSavedError
        (with ``what`` was not done) if it cannot be saved within a bound."""
        if not changes:
            return
        encoded = [(seq, self._encode(fields)) for seq, fields in changes.items()]
        new_envs: dict[str, int] = {}

        def update(db: sqlite3.Connection) -> None:
            new_envs.clear()  # a retry starts again: what a rollback undid is not kept
            db.execute("BEGIN IMMEDIATE")  # a failure rolls back (Writes.run)
            for seq, values in encoded:
                if "env" in values:  # kept shared from now on
                    env_id, own = self.envs.store(db, values["env"], new_envs)
                    values = {**values, "env": own, "env_id": env_id}
                assignments = ", ".join(f"{name} = ?" for name in values)
                db.execute(
                    f"UPDATE petitions SET {assignments} WHERE seq = ?", (*values.values(), seq)
                )
            db.execute("COMMIT")

        self._write(update, what)
        self.envs.committed(new_envs)
        for seq, fields in changes.items():
            self.saver.supersede(seq, set(fields))

    def _records(
        self,
        work: Callable[[sqlite3.Connection], list[Any]],
        marked: bool = False,
        raw: tuple[str, ...] = (),
    ) -> list[dict[str, Any]]:
        raise NotImplementedError

    def recent(
        self, ended: int, columns: Sequence[str], queued: int | None = None
    ) -> tuple[list[dict[str, Any]], int, int]:
        """``(records, hidden, hidden_queued)``: every running record, the ``queued``
        first submitted queued ones (all if None) and the ``ended`` most recently ended
        ones (by end time, then number), oldest first, as
        :func:`orcha.protocol.selection.select` and
        :func:`~orcha.protocol.selection.first_queued` keep them; ``hidden`` and
        ``hidden_queued`` count the ended and queued ones left out. Read through
        indexes: the cost does not grow with the number of records left out. Records
        with changes not saved yet are read whole and counted with those changes."""
        unsaved = self.saver.pending_seqs()
        cols = ", ".join(dict.fromkeys(["seq", "state", "ended", *columns]))
        marks = ", ".join("?" for _ in unsaved)
        others = f" AND seq NOT IN ({marks})" if unsaved else ""
        counts: list[int] = []

        def read(db: sqlite3.Connection) -> list[Any]:
            def query(sql: str, *args: Any) -> list[Any]:
                return db.execute(sql, args).fetchall()

            # Running ones and those with unsaved changes: whole.
            # "state IN (live)" too: SQLite uses a partial index only for a query that
            # repeats its condition (state = 'QUEUED' alone scans the table).
            rows = query(
                f"SELECT {cols} FROM petitions WHERE ({_LIVE} AND state = 'RUNNING')"
                + (f" OR seq IN ({marks})" if unsaved else ""),
                *unsaved,
            )
            waiting = f"{_LIVE} AND state = 'QUEUED'{others}"
            done = f"state NOT IN ('QUEUED', 'RUNNING'){others}"
            for clause in (waiting, done):
                counts.append(
                    query(f"SELECT COUNT(*) FROM petitions WHERE {clause}", *unsaved)[0][0]
                )
            limit = -1 if queued is None else queued  # -1: no limit
            rows += query(
                f"SELECT {cols} FROM petitions WHERE {waiting} ORDER BY seq LIMIT ?",
                *unsaved,
                limit,
            )
            rows += query(
                f"SELECT {cols} FROM petitions WHERE {done} ORDER BY ended DESC, seq DESC LIMIT ?",
                *unsaved,
                ended,
            )
            return rows

        records = sorted(
            {r["seq"]: r for r in self._records(read)}.values(), key=lambda r: r["seq"]
        )
        pending = set(unsaved)
        live = [r for r in records if r["state"] in ("QUEUED", "RUNNING")]
        finished = [r for r in records if r["state"] not in ("QUEUED", "RUNNING")]
        all_ended = counts[1] + sum(1 for r in finished if r["seq"] in pending)
        all_queued = counts[0] + sum(
            1 for r in live if r["seq"] in pending and r["state"] == "QUEUED"
        )
        finished.sort(key=lambda r: (r.get("ended") or 0, r["seq"]))
        shown = finished[len(finished) - ended :] if ended > 0 else []
        from orcha.protocol.selection import first_queued

        live, _ = first_queued(live, queued)
        out = sorted([*live, *shown], key=lambda r: r["seq"])
        shown_queued = sum(1 for r in live if r["state"] == "QUEUED")
        return out, all_ended - len(shown), all_queued - shown_queued

    def page(
        self, after: int | None, limit: int, states: Sequence[str], columns: Sequence[str]
    ) -> tuple[list[dict[str, Any]], int | None]:
        """``(records, next)``: the next ``limit`` records numbered after ``after`` (from
        the first if None), oldest first, of ``states`` if given (as they are with the
        changes not saved yet); ``next``: where the page after starts (None: this was
        the last). A page holds ``limit`` records unless it is the last."""
        cols = ", ".join(dict.fromkeys(["seq", "state", *columns]))
        out: list[dict[str, Any]] = []
        while True:
            want = limit - len(out)
            where, args = page_where(after, states, self.saver.pending_seqs() if states else [])
            sql = f"SELECT {cols} FROM petitions WHERE {where} ORDER BY seq LIMIT ?"
            rows = self._records(partial(_fetch, sql, (*args, want)))
            after = rows[-1]["seq"] if len(rows) == want else None
            # A record read for a change not saved yet may be in another state by now:
            # left out, and the page filled from the records after it.
            out += [r for r in rows if r["state"] in states] if states else rows
            if after is None or len(out) == limit:
                return out, after

    def live(self, service: str, raw: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Queued and running records of ``service``, in arrival order, with the JSON
        fields named in ``raw`` left as text (for a caller that decodes identical ones
        once); ``env_whole`` in those whose env is not shared yet (written by an older
        orcha: saving the env again, with :meth:`update_many`, shares it)."""
        records = self._records(
            lambda db: db.execute(
                "SELECT * FROM petitions WHERE service = ? AND state IN ('QUEUED', 'RUNNING') "
                "ORDER BY seq",
                (service,),
            ).fetchall(),
            marked=True,
            raw=raw,
        )
        return [r for r in records if r["state"] in ("QUEUED", "RUNNING")]  # ended, unsaved

    def queued_rows(self, service: str, size: int = 5000) -> Iterator[list[tuple[Any, ...]]]:
        """The plain queued records of ``service`` (:data:`_PLAIN_QUEUED`), ``size``
        at a time in arrival order, as tuples of :data:`QUEUED_COLUMNS` straight from
        the database: JSON fields as text, ``env`` the record's own variables (JSON),
        changes not committed yet NOT applied (for a restart, which reads before any
        change is made). Each batch is one read, through the live records' index."""
        columns = ", ".join(QUEUED_COLUMNS)
        sql = (
            f"SELECT {columns} FROM petitions WHERE service = ? AND {_LIVE} "
            f"AND {_PLAIN_QUEUED} AND seq > ? ORDER BY seq LIMIT ?"
        )
        after = -1

        def read(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
            cursor = db.cursor()
            cursor.row_factory = None  # plain tuples: no Row made per record
            return cursor.execute(sql, (service, after, size)).fetchall()

        while True:
            rows = self._read(read)
            if not rows:
                return
            yield rows
            after = rows[-1][0]

    def has_plain_queued(self, service: str) -> bool:
        """Whether :meth:`queued_rows` would read any record."""
        sql = f"SELECT 1 FROM petitions WHERE service = ? AND {_LIVE} AND {_PLAIN_QUEUED} LIMIT 1"
        return bool(self._read(lambda db: db.execute(sql, (service,)).fetchall()))

    def live_chunks(
        self, service: str, raw: tuple[str, ...] = (), size: int = 1000, plain: bool = True
    ) -> Iterator[list[dict[str, Any]]]:
        """:meth:`live`'s records, ``size`` at a time (in arrival order): a long queue
        is never all in memory twice, as records and as what is made of them. Without
        ``plain``, those :meth:`queued_rows` reads are left out."""
        other = "" if plain else f" AND NOT ({_PLAIN_QUEUED})"
        seqs = self._read(
            lambda db: [
                r[0]
                for r in db.execute(
                    f"SELECT seq FROM petitions WHERE service = ? AND {_LIVE}{other}",
                    (service,),
                )
            ]
        )
        seqs.sort()
        for i in range(0, len(seqs), size):
            chunk = seqs[i : i + size]

            def read(db: sqlite3.Connection, chunk: list[int] = chunk) -> list[Any]:
                marks = ", ".join("?" for _ in chunk)
                sql = f"SELECT * FROM petitions WHERE seq IN ({marks}) ORDER BY seq"
                return db.execute(sql, chunk).fetchall()

            records = self._records(read, marked=True, raw=raw)
            yield [r for r in records if r["state"] in ("QUEUED", "RUNNING")]

    def array_refs(self, name: str) -> tuple[int, list[str]] | None:
        """(the newest record number, a reference to each member by index) of the newest
        array called ``name`` (its members were recorded together: they share their
        submission time); None if no array has that name. A member is its record, or
        the newest run ``orcha restart`` made of it (linked by ``restart_of``); it is
        referred to by its ID while that run is the newest record of its ID, else by the
        run's record number: a petition submitted later under a member's name is not
        the member."""
        if not is_utf8(name):
            return None  # no name holds a byte that is not UTF-8 (check_id)

        def read(db: sqlite3.Connection) -> list[Any]:
            # Each member's runs, through the restart_of index: few steps each.
            return db.execute(
                "WITH RECURSIVE runs(member, idx, seq) AS ("
                " SELECT seq, array_index, seq FROM petitions WHERE array = ? AND submitted ="
                " (SELECT submitted FROM petitions WHERE array = ? ORDER BY seq DESC LIMIT 1)"
                " UNION ALL SELECT runs.member, runs.idx, p.seq FROM petitions p"
                " JOIN runs ON p.restart_of = runs.seq)"
                " SELECT newest.member, newest.seq, p.id, NOT EXISTS (SELECT 1 FROM petitions"
                " q WHERE q.id = p.id AND q.seq > p.seq) FROM (SELECT member, idx, MAX(seq)"
                " AS seq FROM runs GROUP BY member) newest JOIN petitions p ON p.seq ="
                " newest.seq ORDER BY newest.idx",
                (name, name),
            ).fetchall()

        rows = self._read(read)
        if not rows:
            return None
        refs = [petition_id if newest else str(seq) for _, seq, petition_id, newest in rows]
        return max(r[0] for r in rows), refs

    def restarted(self) -> set[int]:
        """The numbers of the records that were run again (``orcha restart``): the
        ``restart_of`` of every record."""
        rows = self._read(
            lambda db: db.execute(
                "SELECT DISTINCT restart_of FROM petitions WHERE restart_of IS NOT NULL"
            ).fetchall()
        )
        return {seq for (seq,) in rows}

    def array_names(self) -> set[str]:
        """The name of every array recorded."""
        rows = self._read(
            lambda db: db.execute(
                "SELECT DISTINCT array FROM petitions WHERE array IS NOT NULL"
            ).fetchall()
        )
        return {r[0] for r in rows}


def page_where(
    after: int | None, states: Sequence[str], unsaved: Sequence[int]
) -> tuple[str, list[Any]]:
    """The WHERE clause (and its arguments) of a page of records numbered after
    ``after`` (from the first if None) in ``states`` (any if none), with the records of
    ``unsaved`` (changes not saved yet, whose state in the database may be stale) read
    whatever their saved state: the caller filters those by their state as changed."""
    where = "seq > ?"
    args: list[Any] = [after if after is not None else -1]
    if states:
        marks = ", ".join("?" for _ in states)
        extra = f" OR seq IN ({', '.join('?' for _ in unsaved)})" if unsaved else ""
        where += f" AND (state IN ({marks}){extra})"
        args += [*states, *unsaved]
    return where, args


def _fetch(sql: str, args: Sequence[Any], db: sqlite3.Connection) -> list[Any]:
    """The rows ``sql`` reads with ``args``."""
    return db.execute(sql, args).fetchall()
