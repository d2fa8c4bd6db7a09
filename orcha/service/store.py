"""Store: petition records in an embedded SQLite database (the user's state directory).

WAL mode, so readers never block the scheduler's writes; one small transaction per
event (submitted, started, ended), indexed so its cost does not grow with the number of
records. The schema is versioned: :data:`MIGRATIONS` holds, in order, the statements that
bring a database from each version to the next; a database is migrated forward at open
and never wiped. A database from a newer orcha is refused rather than guessed at.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from orcha.errors import ConfigError

#: MIGRATIONS[n] brings a database from version n to version n + 1.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE petitions (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- arrival order, kept across restarts
            service TEXT NOT NULL,     -- address of the service that owns it
            id TEXT NOT NULL,
            kind TEXT NOT NULL,        -- '' for petitions of the original Orcha API
            params TEXT NOT NULL,      -- JSON
            priority INTEGER NOT NULL,
            state TEXT NOT NULL,
            submitted REAL NOT NULL,
            started REAL,
            ended REAL,
            code INTEGER,
            message TEXT,
            user TEXT NOT NULL,
            host TEXT NOT NULL,
            cwd TEXT NOT NULL,
            env TEXT NOT NULL,         -- JSON: needed to start it after a restart
            log_path TEXT,
            token TEXT NOT NULL DEFAULT '',  -- ORCHA_PETITION_TOKEN of its processes
            pids TEXT NOT NULL DEFAULT '[]'  -- JSON [[pid, start time], ...]
        )""",
        "CREATE INDEX petitions_by_id ON petitions (id, seq)",
        "CREATE INDEX petitions_live ON petitions (service, state) "
        "WHERE state IN ('QUEUED', 'RUNNING')",
    ],
    [
        # Resource-aware scheduling: what each petition asked for, its attempt, its pause.
        "ALTER TABLE petitions ADD COLUMN schedule TEXT NOT NULL DEFAULT '{}'",  # JSON
        "ALTER TABLE petitions ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE petitions ADD COLUMN paused INTEGER NOT NULL DEFAULT 0",
        # Settings a service keeps across restarts (group limits, pauses): JSON values.
        """CREATE TABLE service_state (
            service TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (service, key)
        )""",
    ],
    [
        # Plugins' own persistent key-value state (JSON values), one namespace each.
        """CREATE TABLE plugin_state (
            plugin TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            updated REAL NOT NULL,
            PRIMARY KEY (plugin, key)
        )""",
    ],
    [
        "ALTER TABLE petitions ADD COLUMN outcome TEXT",  # JSON a kind recorded, or NULL
    ],
    [
        "ALTER TABLE petitions ADD COLUMN notify_error TEXT",  # the last failed webhook
    ],
    [
        # A petition of a runtime kind: the kind it runs as (its record keeps the
        # template's settings, so it runs even if the template is removed meanwhile).
        "ALTER TABLE petitions ADD COLUMN runs_as TEXT",
    ],
    [
        # The machine it was admitted onto (Machine.name: 'local' for the service's host).
        "ALTER TABLE petitions ADD COLUMN machine TEXT",
    ],
    [
        # A child petition's parent (submitted by its kind's ctx.submit): the parent's ID
        # and record number (an ID may be reused; the number names one run of it).
        "ALTER TABLE petitions ADD COLUMN parent TEXT",
        "ALTER TABLE petitions ADD COLUMN parent_seq INTEGER",
        "CREATE INDEX petitions_parent ON petitions (parent_seq) WHERE parent_seq IS NOT NULL",
    ],
    [
        # How many processes of its tree were still alive after its main process ended,
        # and were stopped then (NULL: none were looked for, e.g. it never started).
        "ALTER TABLE petitions ADD COLUMN leftovers INTEGER",
        # Why its log is incomplete (a write failed: disk full, ...), or NULL if complete.
        "ALTER TABLE petitions ADD COLUMN log_truncated TEXT",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)

_JSON_FIELDS = ("params", "env", "pids", "schedule", "outcome")
_COLUMNS = (
    "seq", "service", "id", "kind", "params", "priority", "state", "submitted", "started",
    "ended", "code", "message", "user", "host", "cwd", "env", "log_path", "token", "pids",
    "schedule", "attempt", "paused", "outcome", "notify_error", "runs_as", "machine",
    "parent", "parent_seq", "leftovers", "log_truncated",
)  # fmt: skip


def _damaged(path: str, why: str) -> str:
    """The one line that refuses a damaged database and says how to recover."""
    return (
        f"the petition database {path} is damaged ({why}); move it aside to start "
        "afresh, or restore it from a backup"
    )


def _row(row: sqlite3.Row) -> dict[str, Any]:
    record = dict(row)
    for name in _JSON_FIELDS:
        if name in record and isinstance(record[name], str):
            record[name] = json.loads(record[name])
    return record


class Store:
    """The petition records. Thread-safe: one connection behind one lock.

    :meth:`add` commits before it returns (a client told "queued" can rely on it);
    :meth:`update_later` hands changes to a writer thread that commits whatever has
    accumulated in one transaction, so a burst of state changes costs one commit.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        import os

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
                raise ConfigError(_damaged(path, "it is empty"))
            os.chmod(path, 0o600)
        except OSError as e:
            raise ConfigError(f"cannot open the petition database {path}: {e.strerror}") from e
        self._lock = threading.Lock()
        self._pending: list[tuple[int, dict[str, Any]]] = []
        self._pending_cond = threading.Condition()
        self._writing = False
        self._writer: threading.Thread | None = None
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as e:
            raise ConfigError(f"cannot open the petition database {path}: {e}") from e
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA busy_timeout=5000")
            if existing:
                self._check()
            self._migrate()  # first: a newer database is refused before anything is written
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints
        except sqlite3.Error as e:
            self._db.close()
            if type(e) is sqlite3.DatabaseError:  # not a database, or malformed; not busy
                raise ConfigError(_damaged(path, str(e))) from e
            raise ConfigError(
                f"cannot use the petition database {path}: {e}; move it aside to start afresh"
            ) from e
        except BaseException:
            self._db.close()
            raise

    def _check(self) -> None:
        """ConfigError if the database's pages are damaged (``PRAGMA quick_check``: reads
        every page once, without the index cross-checks of ``integrity_check``), so a
        damaged database is refused at start rather than failing on a later write."""
        with self._lock:
            rows = self._db.execute("PRAGMA quick_check(1)").fetchall()  # the first error
        problems = [" ".join(str(row[0]).split()) for row in rows]  # one line: no newlines
        if problems != ["ok"]:
            raise ConfigError(_damaged(self.path, "; ".join(problems)))

    def _migrate(self) -> None:
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"the petition database {self.path} was written by a newer orcha "
                    f"(schema {version}, this one knows {SCHEMA_VERSION}); upgrade orcha"
                )
            for target in range(version, SCHEMA_VERSION):
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in MIGRATIONS[target]:
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {target + 1}")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")

    @property
    def version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def add(self, record: dict[str, Any]) -> int:
        """Insert a new record (one transaction); return its ``seq``."""
        unknown = set(record) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown record fields: {sorted(unknown)}")
        values = {k: v for k, v in record.items() if k != "seq"}
        for name in _JSON_FIELDS:
            if name in values:
                values[name] = json.dumps(values[name])
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self._lock:
            cur = self._db.execute(
                f"INSERT INTO petitions ({names}) VALUES ({marks})", tuple(values.values())
            )
            return int(cur.lastrowid or 0)

    def update(self, seq: int, **fields: Any) -> None:
        """Change some fields of record ``seq`` (one transaction)."""
        if not fields:
            return
        for name in _JSON_FIELDS:
            if name in fields:
                fields[name] = json.dumps(fields[name])
        unknown = set(fields) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown record fields: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._lock:
            self._db.execute(
                f"UPDATE petitions SET {assignments} WHERE seq = ?", (*fields.values(), seq)
            )

    def update_later(self, seq: int, **fields: Any) -> None:
        """Queue a change of record ``seq``; committed soon, in order, with others."""
        unknown = set(fields) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown record fields: {sorted(unknown)}")
        with self._pending_cond:
            self._pending.append((seq, fields))
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="store", daemon=True)
                self._writer.start()
            self._pending_cond.notify_all()

    def flush(self) -> None:
        """Wait until every queued change is committed."""
        with self._pending_cond:
            self._pending_cond.wait_for(lambda: not self._pending and not self._writing)

    def _write_loop(self) -> None:
        while True:
            with self._pending_cond:
                self._pending_cond.wait_for(lambda: bool(self._pending))
                batch, self._pending = self._pending, []
                self._writing = True
            try:
                self._commit(batch)
            finally:
                with self._pending_cond:
                    self._writing = False
                    self._pending_cond.notify_all()

    def _commit(self, batch: list[tuple[int, dict[str, Any]]]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for seq, fields in batch:
                    values = {
                        k: json.dumps(v) if k in _JSON_FIELDS else v for k, v in fields.items()
                    }
                    assignments = ", ".join(f"{name} = ?" for name in values)
                    self._db.execute(
                        f"UPDATE petitions SET {assignments} WHERE seq = ?",
                        (*values.values(), seq),
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def live(self, service: str) -> list[dict[str, Any]]:
        """Queued and running records of ``service``, in arrival order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM petitions WHERE service = ? AND state IN ('QUEUED', 'RUNNING') "
                "ORDER BY seq",
                (service,),
            ).fetchall()
        return [_row(r) for r in rows]

    def get(self, seq: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM petitions WHERE seq = ?", (seq,)).fetchone()
        return _row(row) if row else None

    def latest(self, petition_id: str) -> dict[str, Any] | None:
        """The newest record with this ID (IDs may be reused once a petition has ended)."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM petitions WHERE id = ? ORDER BY seq DESC LIMIT 1", (petition_id,)
            ).fetchone()
        return _row(row) if row else None

    def find(
        self,
        ids: Sequence[str] = (),
        states: Iterable[str] = (),
        columns: Sequence[str] = _COLUMNS,
    ) -> list[dict[str, Any]]:
        """Records, oldest first: the newest record of each of ``ids`` (all if empty),
        restricted to ``states`` if given."""
        where: list[str] = []
        args: list[Any] = []
        if ids:
            where.append(
                f"seq IN (SELECT MAX(seq) FROM petitions WHERE id IN "
                f"({', '.join('?' for _ in ids)}) GROUP BY id)"
            )
            args.extend(ids)
        states = list(states)
        if states:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            args.extend(states)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        cols = ", ".join(c for c in columns if c in _COLUMNS) or "*"
        with self._lock:
            rows = self._db.execute(
                f"SELECT {cols} FROM petitions{clause} ORDER BY seq", args
            ).fetchall()
        return [_row(r) for r in rows]

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
        with self._lock:
            rows = self._db.execute(
                f"SELECT parent_seq, id FROM petitions WHERE {clause} ORDER BY seq", args
            ).fetchall()
        out: dict[int, list[str]] = {}
        for parent_seq, child in rows:
            out.setdefault(parent_seq, []).append(child)
        return out

    def remove_finished(self, before: float | None = None) -> list[dict[str, Any]]:
        """Delete ended records (ended before ``before`` if given); return what was deleted."""
        clause = "state NOT IN ('QUEUED', 'RUNNING')"
        args: list[Any] = []
        if before is not None:
            clause += " AND ended < ?"
            args.append(before)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    f"SELECT seq, id, log_path FROM petitions WHERE {clause}", args
                ).fetchall()
                self._db.execute(f"DELETE FROM petitions WHERE {clause}", args)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return [dict(r) for r in rows]

    def get_value(self, service: str, key: str, default: Any = None) -> Any:
        """A JSON value the service kept under ``key`` (``default`` if none)."""
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM service_state WHERE service = ? AND key = ?", (service, key)
            ).fetchone()
        return json.loads(row[0]) if row else default

    def set_value(self, service: str, key: str, value: Any) -> None:
        """Keep a JSON value under ``key`` (one transaction)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO service_state (service, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (service, key) DO UPDATE SET value = excluded.value",
                (service, key, json.dumps(value)),
            )

    # -- plugins' state ------------------------------------------------------------------
    def state_items(self, plugin: str) -> dict[str, Any]:
        """Every key of ``plugin``'s state with its value, by key."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, value FROM plugin_state WHERE plugin = ? ORDER BY key", (plugin,)
            ).fetchall()
        return {key: json.loads(value) for key, value in rows}

    def state_get(self, plugin: str, key: str) -> tuple[bool, Any]:
        """(found, value) of one key of ``plugin``'s state."""
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM plugin_state WHERE plugin = ? AND key = ?", (plugin, key)
            ).fetchone()
        return (True, json.loads(row[0])) if row else (False, None)

    def state_set(self, plugin: str, key: str, value: Any) -> None:
        """Keep a JSON value (one transaction). ValueError if it is not JSON data."""
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"the value of {key!r} is not JSON data: {e}") from None
        import time

        with self._lock:
            self._db.execute(
                "INSERT INTO plugin_state (plugin, key, value, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value, "
                "updated = excluded.updated",
                (plugin, key, text, time.time()),
            )

    def state_rm(self, plugin: str, key: str) -> bool:
        """Forget one key; False if it was not there."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM plugin_state WHERE plugin = ? AND key = ?", (plugin, key)
            )
        return cur.rowcount > 0

    def close(self) -> None:
        """Commit what is queued, then close."""
        if self._writer is not None:
            self.flush()
        with self._lock:
            self._db.close()
