"""Migrations: the schema of the petition database, version by version, and the checks
made when it is opened.

:data:`MIGRATIONS` holds, in order, the statements that bring a database from each
version to the next (``PRAGMA user_version``); :func:`migrate` applies them when
:class:`orcha.service.store.Store` opens it, each version in one transaction, so a
database is migrated forward and never wiped. A database from a newer orcha is refused
rather than guessed at, and so is one whose pages are damaged (:func:`check_pages`).
Never edit a migration that has shipped: add the next.
"""

from __future__ import annotations

import sqlite3

from orcha.errors import ConfigError
from orcha.service.db_faults import damaged

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
    [
        # Accounting (as sacct gives it): CPU seconds (user + system) used by the
        # petition's tree over all its attempts, and the tree's peak resident memory in
        # bytes (NULL: not measured, e.g. it never started).
        "ALTER TABLE petitions ADD COLUMN cpu_time REAL",
        "ALTER TABLE petitions ADD COLUMN peak_rss INTEGER",
        # 'orcha restart': the record number this petition runs again (NULL: a new one).
        "ALTER TABLE petitions ADD COLUMN restart_of INTEGER",
        # A member of an array ('run --array', 'run --each'): the array's name and this
        # member's index in it (NULL: not a member of an array).
        "ALTER TABLE petitions ADD COLUMN array TEXT",
        "ALTER TABLE petitions ADD COLUMN array_index INTEGER",
        "CREATE INDEX petitions_array ON petitions (array, array_index) WHERE array IS NOT NULL",
    ],
    [
        # An array member's '%N' (at most N members of its array run at once; NULL: no
        # limit), kept so the limit holds again after a restart.
        "ALTER TABLE petitions ADD COLUMN array_limit INTEGER",
    ],
    [
        # Each distinct environment once (orcha.service.environments), by its digest: a
        # record names its shared base (env_id) and keeps only the variables of its own
        # in 'env' (NULL env_id: the whole environment is in 'env', as before).
        """CREATE TABLE environments (
            id INTEGER PRIMARY KEY,
            digest TEXT NOT NULL UNIQUE,  -- sha256 of env
            env TEXT NOT NULL             -- JSON, keys sorted
        )""",
        "ALTER TABLE petitions ADD COLUMN env_id INTEGER",
        # 'orcha status': the last ended records, newest first, without reading them all.
        "CREATE INDEX petitions_ended ON petitions (ended, seq) "
        "WHERE state NOT IN ('QUEUED', 'RUNNING')",
        # ... and the first queued ones, in arrival order, and how many there are.
        "CREATE INDEX petitions_waiting ON petitions (state, seq) "
        "WHERE state IN ('QUEUED', 'RUNNING')",
    ],
    [
        # 1 once every petition it runs --after (--after-any) has ended as it must: met
        # for good, so a restart does not look them up again (their records may have
        # been cleaned meanwhile, or their names reused).
        "ALTER TABLE petitions ADD COLUMN deps_met INTEGER NOT NULL DEFAULT 0",
    ],
    [
        # The runs 'orcha restart' made of a record, found from it: an array's name
        # stands for its members' newest runs (orcha.service.arrays.expand).
        "CREATE INDEX petitions_restart_of ON petitions (restart_of) WHERE restart_of IS NOT NULL",
    ],
    [
        # 1: its attached client sends its stdin ('orcha run' with piped input). That
        # input cannot outlive the client: a restart finding it queued cancels it
        # rather than run it on an empty stdin.
        "ALTER TABLE petitions ADD COLUMN stdin INTEGER NOT NULL DEFAULT 0",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)


def check_pages(db: sqlite3.Connection, path: str) -> None:
    """ConfigError if the database's pages are damaged (``PRAGMA quick_check``: reads
    every page once, without the index cross-checks of ``integrity_check``), so a
    damaged database is refused at start rather than failing on a later write."""
    rows = db.execute("PRAGMA quick_check(1)").fetchall()  # the first error
    problems = [" ".join(str(row[0]).split()) for row in rows]  # one line: no newlines
    if problems != ["ok"]:
        raise ConfigError(damaged(path, "; ".join(problems)))


def migrate(db: sqlite3.Connection, path: str) -> None:
    """Bring the database to :data:`SCHEMA_VERSION`; ConfigError if it is newer."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"the petition database {path} was written by a newer orcha "
            f"(schema {version}, this one knows {SCHEMA_VERSION}); upgrade orcha"
        )
    for target in range(version, SCHEMA_VERSION):
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[target]:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {target + 1}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
