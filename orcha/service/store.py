"""Store: petition records in an embedded SQLite database (the user's state directory).

WAL mode, and reads on a connection of their own, so readers (status, wait, logs) never
wait for the service's writes; one small transaction per event (submitted, started,
ended), indexed so its cost does not grow with the number of records. A write that fails
(disk full, database locked by another process) never wedges the service: queued
changes are kept and retried by :class:`~orcha.service.saving.Saver`, reads see them at
once, and a write a caller waits for (a new record) fails within a bound with
:class:`~orcha.errors.NotSavedError` while :attr:`Store.outage` reports why.

The schema is versioned (:mod:`orcha.service.migrations`): a database is migrated
forward at open and never wiped. A database from a newer orcha is refused rather than guessed at.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from orcha.defaults import (
    STORE_CLOSE_WAIT,
    STORE_OPEN_BUSY_MS,
    STORE_READ_BUSY_MS,
    STORE_RETRY_FIRST,
    STORE_RETRY_MAX,
    STORE_SYNC_WAIT,
    STORE_WRITE_BUSY_MS,
)
from orcha.errors import ConfigError, NotSavedError, PetitionError
from orcha.service.db_faults import damaged, is_damage, open_refusal, read_refusal
from orcha.service.environments import EnvironmentTable
from orcha.service.migrations import check_pages, migrate
from orcha.service.saving import Changes, Outage, Saver, Writes
from orcha.service.store_bulk import BulkRecords
from orcha.service.store_values import KeptValues
from orcha.text import escaped, is_utf8

_T = TypeVar("_T")
log = logging.getLogger("orcha.service.store")


_JSON_FIELDS = ("params", "pids", "schedule", "outcome")  # and env: see environments
_COLUMNS = (
    "seq", "service", "id", "kind", "params", "priority", "state", "submitted", "started",
    "ended", "code", "message", "user", "host", "cwd", "env", "log_path", "token", "pids",
    "schedule", "attempt", "paused", "outcome", "notify_error", "runs_as", "machine",
    "parent", "parent_seq", "leftovers", "log_truncated", "cpu_time", "peak_rss",
    "restart_of", "array", "array_index", "array_limit", "deps_met", "stdin",
)  # fmt: skip


def _row(row: sqlite3.Row, decoded: tuple[str, ...] = _JSON_FIELDS) -> dict[str, Any]:
    record = dict(row)
    for name in decoded:
        if name in record and isinstance(record[name], str):
            record[name] = json.loads(record[name])
    if record.get("cwd").__class__ is bytes:  # not UTF-8: kept as its bytes (see _text)
        record["cwd"] = os.fsdecode(record["cwd"])
    return record


def _text(name: str, value: Any) -> Any:
    """A text field's value as the database can hold it: SQLite's text is UTF-8, and a
    client's text may hold bytes that are not (its working directory, its command's
    name in a message). A cwd is kept as those very bytes (a BLOB: it must run there
    again after a restart); any other text, only shown, with them escaped (``\\xff``)."""
    if value.__class__ is not str or is_utf8(value):
        return value
    return os.fsencode(value) if name == "cwd" else escaped(value)


def _column(name: str, value: Any) -> Any:
    """A field's value as its column holds it (a changed env is kept whole, unshared)."""
    if name == "env":
        return json.dumps(dict(value))
    return json.dumps(value) if name in _JSON_FIELDS else _text(name, value)


def _probe(db: sqlite3.Connection) -> None:
    """A small write: whether the database takes writes again."""
    db.execute(
        "INSERT INTO service_state (service, key, value) VALUES ('', 'saved', ?) "
        "ON CONFLICT (service, key) DO UPDATE SET value = excluded.value",
        (json.dumps(time.time()),),
    )


def _check_fields(fields: Iterable[str]) -> None:
    unknown = set(fields) - set(_COLUMNS)
    if unknown:
        raise ValueError(f"unknown record fields: {sorted(unknown)}")


class Store(BulkRecords, KeptValues):
    """The petition records. Thread-safe: a writing connection behind one lock, a
    reading connection behind another.

    :meth:`add` commits before it returns (a client told "queued" can rely on it), or
    raises NotSavedError within a bound; :meth:`update_later` hands changes to the
    writer thread (:class:`~orcha.service.saving.Saver`), which commits whatever has
    accumulated in one transaction, so a burst of state changes costs one commit, and
    retries for as long as it fails. Reads include the changes not committed yet.
    """

    def __init__(
        self,
        path: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        sync_wait: float = STORE_SYNC_WAIT,
    ) -> None:
        self.path = path
        self.sync_wait = sync_wait
        try:
            # Private from the start: SQLite gives its -wal and -shm files this file's mode.
            # O_EXCL tells a database we create from one that exists: only ours is new.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            existing = False
        except FileExistsError:
            existing = True
        except OSError as e:
            raise ConfigError(f"cannot open the petition database {path}: {e.strerror}") from e
        try:
            if existing and os.stat(path).st_size == 0:
                # Not one SQLite would make (it writes its header at the first commit):
                # taking it as new would silently drop every petition it held.
                raise ConfigError(damaged(path, "it is empty"))
            os.chmod(path, 0o600)
        except OSError as e:
            raise ConfigError(f"cannot open the petition database {path}: {e.strerror}") from e
        self._read_lock = threading.Lock()  # the reading connection
        self.damage: str | None = None  # why a read found the file damaged (it stays so)
        self.envs = EnvironmentTable()
        self.outage = Outage(clock)
        self.saver = Saver(
            self._commit, self.outage, retry_first=STORE_RETRY_FIRST, retry_max=STORE_RETRY_MAX
        )
        self._writes = Writes(lambda: self._db, self.saver, sync_wait)
        self._lock = self._writes.lock  # the writing connection
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as e:
            raise ConfigError(f"cannot open the petition database {path}: {e}") from e
        try:
            self._db.row_factory = sqlite3.Row
            # At open, a lock may be waited for longer: nothing else is served yet.
            self._db.execute(f"PRAGMA busy_timeout={STORE_OPEN_BUSY_MS}")
            if existing:
                check_pages(self._db, path)
            migrate(self._db, path)  # first: a newer database is refused before anything is written
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints
            self._reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._reader.row_factory = sqlite3.Row
            self._reader.execute(f"PRAGMA busy_timeout={STORE_READ_BUSY_MS}")
            self._db.execute(f"PRAGMA busy_timeout={STORE_WRITE_BUSY_MS}")
        except sqlite3.Error as e:
            self._db.close()
            # Only a damaged file is to be moved aside: a full disk or a lock is not.
            raise open_refusal(path, e) from e
        except BaseException:
            self._db.close()
            raise

    @property
    def version(self) -> int:
        return int(self._read(lambda db: db.execute("PRAGMA user_version").fetchone()[0]))

    # -- saving -------------------------------------------------------------------------
    def health(self) -> tuple[bool, str]:
        """(saving works, in words): ``saving ok`` or ``UNSAVED (why; N waiting)``.

        During an outage with nothing queued (a refused submit started it), a small
        write is tried first: health tells when saving works again without a submit."""
        if self.outage.problem is not None and not self.saver.pending:
            with contextlib.suppress(NotSavedError):  # it fails: the outage goes on
                self._writes.run(_probe, "nothing", probe=True)
        # Reads too: a damaged file may take writes and fail every read. Counting the
        # records walks one index's pages (milliseconds for 100,000 records), where a
        # full check (PRAGMA quick_check) reads every page: seconds for a big database.
        with contextlib.suppress(PetitionError):  # damaged: noted; busy: not a fault
            self._read(lambda db: db.execute("SELECT count(*) FROM petitions").fetchone())
        if self.damage is not None:
            return False, f"DAMAGED: {damaged(self.path, self.damage, running=True)}"
        problem = self.outage.problem
        if problem is None:
            return True, "saving ok"
        waiting = self.saver.pending
        more = f"; changes of {waiting} petition(s) waiting" if waiting else ""
        return False, f"UNSAVED ({problem}{more})"

    def _write(
        self,
        work: Callable[[sqlite3.Connection], _T],
        what: str,
        wait: float = 0,
        give_up: Callable[[], bool] | None = None,
    ) -> _T:
        return self._writes.run(work, what, wait, give_up)

    def _read(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` on the reading connection, in one read transaction (its queries
        see one state of the database: a view made of several queries, e.g. running,
        queued and ended records, cannot miss a record that changed between two of
        them); a PetitionError (refused) if the database cannot be read now."""
        with self._read_lock:
            reader = self._reader
            try:
                reader.execute("BEGIN")
                try:
                    return work(reader)
                finally:
                    reader.execute("COMMIT")  # ends the read snapshot; nothing was written
            except sqlite3.DatabaseError as e:  # damaged (212, sticky: see health), busy
                if is_damage(e):
                    self.damage = " ".join(str(e).split())
                elif not isinstance(e, sqlite3.OperationalError):
                    raise  # a misuse (closed): not the database's fault
                raise read_refusal(self.path, e) from None

    def _records(
        self,
        work: Callable[[sqlite3.Connection], list[Any]],
        marked: bool = False,
        raw: tuple[str, ...] = (),
    ) -> list[dict[str, Any]]:
        """The rows ``work`` reads, as records with the changes not committed yet
        applied (the overlay is looked at after the read, before a commit is forgotten)."""
        with self.saver.view_lock:
            rows = [r for r in self._read(work) if r is not None]
            return self._overlaid(rows, marked, raw)

    def _overlaid(
        self, rows: list[sqlite3.Row], marked: bool = False, raw: tuple[str, ...] = ()
    ) -> list[dict[str, Any]]:
        """Rows as records, with the changes not committed yet applied (``marked``: a
        record whose env is kept whole, from before environments were shared, says
        ``env_whole``)."""
        decoded = tuple(name for name in _JSON_FIELDS if name not in raw)
        records = [_row(r, decoded) for r in rows]
        if records and "env" in records[0]:
            decode = self.envs.decode
            for record in records:
                env_id = record.pop("env_id", None)
                record["env"] = decode(env_id, record["env"], self._base_text)
                if marked and env_id is None:
                    record["env_whole"] = True  # written before environments were shared
        unsaved = self.saver.snapshot()
        if unsaved:
            for record in records:
                fields = unsaved.get(record.get("seq", -1))
                if fields:
                    record.update((k, v) for k, v in fields.items() if k in record)
        return records

    def _base_text(self, env_id: int) -> str | None:
        """The JSON of the shared environment ``env_id`` (None if there is none)."""
        row = self._read(
            lambda db: db.execute("SELECT env FROM environments WHERE id = ?", (env_id,)).fetchone()
        )
        return str(row[0]) if row else None

    # -- writing --------------------------------------------------------------------------
    def add(self, record: dict[str, Any], what: str = "nothing was submitted") -> int:
        """Insert a new record (one transaction); return its ``seq``. NotSavedError (with
        ``what`` was not done) if it cannot be saved within a bound. A record whose
        ``id`` is None is named by its ``seq``, as text."""
        return self.add_many([record], what)[0]

    @staticmethod
    def _encode(record: dict[str, Any]) -> dict[str, Any]:
        """A new record's fields, checked, JSON fields encoded, without ``seq``."""
        _check_fields(record)
        values = {k: v if k in _JSON_FIELDS else _text(k, v) for k, v in record.items()
                  if k != "seq"}  # fmt: skip
        for name in _JSON_FIELDS:
            if name in values:
                values[name] = json.dumps(values[name])
        return values  # env: stored once, at insert (store_bulk)

    def update(
        self,
        seq: int,
        *,
        wait: float = 0,
        give_up: Callable[[], bool] | None = None,
        what: str = "the change was not saved",
        **fields: Any,
    ) -> None:
        """Change some fields of record ``seq`` (one transaction), retried for ``wait``
        seconds or until ``give_up()``; NotSavedError if it could not be saved by then."""
        if not fields:
            return
        _check_fields(fields)
        if "env" in fields:
            fields["env_id"] = None  # kept whole, no longer over a shared base
        values = {k: _column(k, v) for k, v in fields.items()}
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self.saver.order:  # never overtaken by an older batch being committed
            self._write(
                lambda db: db.execute(
                    f"UPDATE petitions SET {assignments} WHERE seq = ?", (*values.values(), seq)
                ),
                what,
                wait,
                give_up,
            )
            self.saver.supersede(seq, set(fields))

    def update_later(self, seq: int, **fields: Any) -> None:
        """Queue a change of record ``seq``; committed soon, with others, and retried
        until it is (reads see it at once)."""
        _check_fields(fields)
        if "env" in fields:
            fields["env_id"] = None  # kept whole, no longer over a shared base
        self.saver.put(seq, fields)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued change is committed (at most ``timeout`` seconds);
        whether they all were."""
        return self.saver.flush(timeout)

    def _commit(self, batch: Changes) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for seq, fields in batch.items():
                    values = {k: _column(k, v) for k, v in fields.items()}
                    assignments = ", ".join(f"{name} = ?" for name in values)
                    self._db.execute(
                        f"UPDATE petitions SET {assignments} WHERE seq = ?",
                        (*values.values(), seq),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    try:
                        self._db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the connection rolls back by itself when it can
                raise

    # -- reading --------------------------------------------------------------------------
    def get(self, seq: int) -> dict[str, Any] | None:
        rows = self._records(
            lambda db: [db.execute("SELECT * FROM petitions WHERE seq = ?", (seq,)).fetchone()]
        )
        return rows[0] if rows else None

    def named(self, petition_id: str, back: int = 0) -> dict[str, Any] | None:
        """The record with this ID ``back`` records before the newest (0: the newest)."""
        if not is_utf8(petition_id):
            return None  # no ID holds a byte that is not UTF-8 (check_id), nor could SQLite
        sql = "SELECT * FROM petitions WHERE id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?"
        rows = self._records(lambda db: [db.execute(sql, (petition_id, back)).fetchone()])
        return rows[0] if rows else None

    def find(
        self,
        ids: Sequence[str] = (),
        states: Iterable[str] = (),
        columns: Sequence[str] = _COLUMNS,
        seqs: Sequence[int] | None = None,
    ) -> list[dict[str, Any]]:
        """Records, oldest first: the newest record of each of ``ids`` (all if empty), or
        the records numbered ``seqs`` if given, restricted to ``states`` if given."""
        where: list[str] = []
        args: list[Any] = []
        if seqs is not None:
            where.append(f"seq IN ({', '.join('?' for _ in seqs)})" if seqs else "0")
            args.extend(seqs)
        elif ids:
            ids = [i for i in ids if is_utf8(i)]  # no ID holds a byte that is not UTF-8
            where.append(
                f"seq IN (SELECT MAX(seq) FROM petitions WHERE id IN "
                f"({', '.join('?' for _ in ids)}) GROUP BY id)"
                if ids
                else "0"
            )
            args.extend(ids)
        states = list(states)
        # Records whose state is queued but not committed may match: taken too, then
        # filtered once their queued changes are applied.
        unsaved = self.saver.pending_seqs() if states else []
        if states:
            clause = f"state IN ({', '.join('?' for _ in states)})"
            args.extend(states)
            if unsaved:
                clause = f"({clause} OR seq IN ({', '.join('?' for _ in unsaved)}))"
                args.extend(unsaved)
            where.append(clause)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        wanted = [c for c in columns if c in _COLUMNS]
        if "env" in wanted and "env_id" not in wanted:
            wanted.append("env_id")  # to read env (popped once it is)
        cols = ", ".join(dict.fromkeys(["seq", *wanted])) if wanted else "*"
        records = self._records(
            lambda db: db.execute(f"SELECT {cols} FROM petitions{clause} ORDER BY seq", args)
            .fetchall()
        )  # fmt: skip
        if unsaved:
            records = [r for r in records if r.get("state") in states or "state" not in r]
        if wanted and "seq" not in wanted:
            for record in records:
                del record["seq"]
        return records

    def children(self, seqs: Sequence[int] | None = None) -> dict[int, list[str]]:
        """The IDs of the children of the records ``seqs`` (of every record if None),
        by the parent's record number, oldest first; parents without any are left out."""
        args: list[Any] = []
        clause = "parent_seq IS NOT NULL"
        if seqs is not None:
            seqs = list(seqs)
            if not seqs:
                return {}
            clause = f"parent_seq IN ({', '.join('?' for _ in seqs)})"
            args.extend(seqs)
        rows = self._read(
            lambda db: db.execute(
                f"SELECT parent_seq, id FROM petitions WHERE {clause} ORDER BY seq", args
            ).fetchall()
        )
        out: dict[int, list[str]] = {}
        for parent_seq, child in rows:
            out.setdefault(parent_seq, []).append(child)
        return out

    def close(self, timeout: float = STORE_CLOSE_WAIT) -> None:
        """Give queued changes ``timeout`` seconds to be committed, then close (what is
        still unsaved then is logged and lost: a stop never waits on a full disk)."""
        unsaved = self.saver.close(timeout)
        if unsaved:
            log.error(
                "stopping with changes of %d petition record(s) not saved (%s)",
                unsaved, self.outage.problem or "the database was busy",
            )  # fmt: skip
        with self._read_lock:
            self._reader.close()
        if self._lock.acquire(timeout=timeout):
            try:
                self._db.close()
            finally:
                self._lock.release()
