"""Saving: the background writer of record changes, and the state of saving (ok, or an
outage and its reason).

A change handed to :class:`Saver` is kept in memory until it is committed: it is retried
with a growing pause (``STORE_RETRY_*``) for as long as the commit fails, changes of one
record queued meanwhile are merged into one, and readers see it at once through
:meth:`Saver.overlay` (status shows the newest state even while it cannot be saved). The
writer never dies: whatever a commit raises is caught. A failure that is not the disk's
or the lock's (a value the database refuses) costs only that value, never the others.

:class:`Writes` runs the writes a caller waits for (a new record, a start) on the same
connection, one at a time, each within a bound: retried while the disk or a lock fails
it, then :class:`~orcha.errors.NotSavedError`.

:class:`Outage` says whether the service can save its state. The first failure of an
outage is logged once (not each retry), ``orcha health`` reports it, and the first write
that succeeds ends it (logged once too).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from orcha.defaults import (
    STORE_BATCH_SECONDS,
    STORE_RETRY_FIRST,
    STORE_RETRY_MAX,
    STORE_SYNC_WAIT,
)
from orcha.errors import NotSavedError

log = logging.getLogger("orcha.service.store")

#: Changes by record number: {seq: {field: value}}.
Changes = dict[int, dict[str, Any]]

_T = TypeVar("_T")


def is_transient(error: BaseException) -> bool:
    """Whether a failed write may succeed later as it is (disk full, database locked or
    busy, I/O error), as opposed to a value the database refuses (it never will)."""
    return isinstance(error, (sqlite3.OperationalError, OSError)) or (
        type(error) is sqlite3.DatabaseError  # e.g. 'database disk image is malformed'
    )


def describe(error: BaseException) -> str:
    """A short reason for a failed write, for logs, health and refusals."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = " ".join(str(error).split()) or type(error).__name__
    if text in ("database or disk is full",):
        return "disk full: " + text
    return text


class Outage:
    """Whether the records can be saved now; thread-safe.

    ``problem`` is None while saving works, else the reason of the last failure; the
    outage's start is logged once, and so is its end."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.problem: str | None = None
        self.since: float | None = None
        self.failures = 0  # in this outage
        self._lock = threading.Lock()

    def failed(self, reason: str) -> None:
        with self._lock:
            first = self.problem is None
            self.problem = reason
            self.failures += 1
            if first:
                self.since = self.clock()
        if first:
            log.error(
                "cannot save the petition records: %s; changes are kept in memory and "
                "retried, new submits are refused until saving works again",
                reason,
            )

    def succeeded(self) -> None:
        if self.problem is None:  # the common case: no lock
            return
        with self._lock:
            if self.problem is None:
                return
            lasted = self.clock() - (self.since or self.clock())
            failures, self.problem, self.since, self.failures = self.failures, None, None, 0
        log.warning(
            "the petition records are saved again (after %.1fs and %d failed writes)",
            lasted,
            failures,
        )

    @property
    def ok(self) -> bool:
        return self.problem is None


class Saver:
    """Commits queued changes in the background, in batches, and never dies.

    ``commit(changes)`` writes a batch in one transaction (raising if it fails). The
    thread starts with the first change (``start=False``: none, a test calls
    :meth:`step`)."""

    def __init__(
        self,
        commit: Callable[[Changes], None],
        outage: Outage,
        *,
        retry_first: float = STORE_RETRY_FIRST,
        retry_max: float = STORE_RETRY_MAX,
        start: bool = True,
        batch: float = STORE_BATCH_SECONDS,
    ) -> None:
        """``batch``: seconds the changes queued after a first one may gather before
        they are committed together (0: at once)."""
        self._commit = commit
        self.batch = batch
        self.outage = outage
        self.retry_first = retry_first
        self.retry_max = retry_max
        self._start = start
        self._pending: Changes = {}  # not committed yet, by record; merged per record
        # Held by a reader from its database read to its look at the overlay, and by the
        # writer to forget committed values: a reader that read before a commit still
        # finds the values in the overlay (it never waits for a commit, only for this).
        self.view_lock = threading.Lock()
        # Held by the writer from taking a batch until it is committed, and by a direct
        # write of a record (Store.update) until it has superseded what is queued: so a
        # batch taken before a direct write never commits its older values after it.
        self.order = threading.RLock()
        self._cond = threading.Condition()
        self._busy = False  # a batch is being committed
        self._hurry = False  # flush() or close() wants the next try now, not after the pause
        self._closed = False
        self._idle = False  # the writer waits for a first change (without a timeout)
        self._thread: threading.Thread | None = None
        self._pause = 0.0  # before the next try (0: none failed)
        self.failing = False  # the last try failed: queued changes wait for a retry
        self.dropped = 0  # values the database refused (never retried)

    # -- what callers use ------------------------------------------------------------------
    def put(self, seq: int, fields: dict[str, Any]) -> None:
        """Queue a change of record ``seq`` (merged with one not yet committed)."""
        with self._cond:
            self._pending.setdefault(seq, {}).update(fields)
            if self._thread is None and self._start and not self._closed:
                self._thread = threading.Thread(target=self._loop, name="store", daemon=True)
                self._thread.start()
            if self._idle:  # else the writer looks again by itself, within a batch time
                self._cond.notify_all()

    def supersede(self, seq: int, names: set[str] | Any) -> None:
        """Fields of ``seq`` were just committed directly: older queued values of them
        must not overwrite them."""
        with self.view_lock, self._cond:
            fields = self._pending.get(seq)
            if fields is not None:
                for name in names:
                    fields.pop(name, None)
                if not fields:
                    del self._pending[seq]

    def overlay(self, seq: int) -> dict[str, Any] | None:
        """What is queued for record ``seq`` and not committed yet (a copy), or None."""
        with self._cond:
            fields = self._pending.get(seq)
            return dict(fields) if fields else None

    def snapshot(self) -> Changes:
        """Everything queued and not committed yet (copies), by record."""
        with self._cond:
            return {seq: dict(fields) for seq, fields in self._pending.items()}

    def pending_seqs(self) -> list[int]:
        with self._cond:
            return list(self._pending)

    @property
    def pending(self) -> int:
        """How many records have changes not committed yet."""
        with self._cond:
            return len(self._pending)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued change is committed (at most ``timeout`` seconds);
        whether they all were."""
        with self._cond:
            self._hurry = True  # a writer pausing between tries tries again now
            self._cond.notify_all()
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def close(self, timeout: float) -> int:
        """Give queued changes ``timeout`` seconds; then stop. How many records kept
        unsaved changes."""
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            return len(self._pending)

    # -- the writer ---------------------------------------------------------------------------
    def _loop(self) -> None:
        """Commit what is queued; then, with ``batch``, linger that long, so that the
        changes of the next moments are gathered without waking the writer each (a
        wake-up per change cost a thread switch each); nothing queued after that, wait
        without a timeout for a first change."""
        while True:
            with self._cond:
                if not self._pending and not self._closed:
                    self._idle = True
                    self._cond.wait_for(lambda: bool(self._pending) or self._closed)
                    self._idle = False
                    if self.batch and not self._hurry:
                        # A first change: let those of the next moments join it.
                        self._cond.wait_for(lambda: self._hurry or self._closed, self.batch)
                if self._closed:
                    return
            try:
                pause = self.step()
            except BaseException:  # never: step catches; but the writer must not die
                log.exception("the record writer failed; it goes on")
                pause = self.retry_max
            if pause or self.batch:
                with self._cond:
                    # Early only for flush() or close(): new changes wait for the pause
                    # (after a failure) or the batch time.
                    self._cond.wait_for(lambda: self._hurry or self._closed, pause or self.batch)
                    if self._closed:
                        return

    def step(self) -> float:
        """Try to commit what is queued, once; the pause before the next try (0 when it
        was committed, or nothing was queued)."""
        with self.order:
            return self._step()

    def _step(self) -> float:
        with self._cond:
            self._hurry = False
            if not self._pending:
                return 0.0
            batch = {seq: dict(fields) for seq, fields in self._pending.items()}
            self._busy = True
        try:
            try:
                self._commit(batch)
            except BaseException as e:
                if not is_transient(e):
                    # A value the database refuses (an integer beyond 64 bits, say):
                    # save the rest, one field at a time, and drop only what fails.
                    self._commit_apart(batch)
                    self.failing = False
                    self.outage.succeeded()
                else:
                    self._failed(e)
                    return self._pause
            else:
                self.failing = False
                self.outage.succeeded()
            self._pause = 0.0
            self._done(batch)
            return 0.0
        except BaseException as e:
            # _commit_apart met a transient failure: the whole batch stays queued.
            self._failed(e)
            return self._pause
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _failed(self, error: BaseException) -> None:
        self.failing = True
        self.outage.failed(describe(error))
        self._pause = min(self.retry_max, max(self.retry_first, self._pause * 2))

    def _commit_apart(self, batch: Changes) -> None:
        for seq, fields in batch.items():
            for name, value in fields.items():
                try:
                    self._commit({seq: {name: value}})
                except BaseException as e:
                    if is_transient(e):
                        raise
                    self.dropped += 1
                    log.error(
                        "record %d: the database refused %s=%.80r (%s: %s); not saved",
                        seq, name, value, type(e).__name__, e,
                    )  # fmt: skip

    def _done(self, batch: Changes) -> None:
        """``batch`` is committed: forget the values of it that are still the newest."""
        with self.view_lock, self._cond:
            for seq, fields in batch.items():
                queued = self._pending.get(seq)
                if queued is None:
                    continue
                for name, value in fields.items():
                    if name in queued and queued[name] is value:
                        del queued[name]
                if not queued:
                    del self._pending[seq]


class Writes:
    """The writing connection (``connection()``), one write at a time behind ``lock``:
    the writes callers wait for, bounded, and what they tell the outage."""

    def __init__(
        self,
        connection: Callable[[], sqlite3.Connection],
        saver: Saver,
        sync_wait: float = STORE_SYNC_WAIT,
    ) -> None:
        self.connection = connection
        self.saver = saver
        self.outage = saver.outage
        self.sync_wait = sync_wait
        self.lock = threading.Lock()

    def run(
        self,
        work: Callable[[sqlite3.Connection], _T],
        what: str,
        wait: float = 0,
        give_up: Callable[[], bool] | None = None,
        probe: bool = False,
    ) -> _T:
        """Run ``work`` on the connection (it commits); retried for ``wait`` seconds (or
        until ``give_up()``) while it fails as a full disk or a lock does. NotSavedError
        (saying ``what`` was not done) once that is over, or if the connection stays
        taken longer than ``sync_wait`` (``probe``: if it is not free at once)."""
        deadline = time.monotonic() + wait
        pause = self.saver.retry_first
        while True:
            if not self.lock.acquire(timeout=0 if probe else self.sync_wait):
                raise NotSavedError(self.outage.problem or "the database is busy", what)
            db = self.connection()
            try:
                changes = db.total_changes
                result = work(db)
            except Exception as e:
                if db.in_transaction:
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the connection rolls back by itself when it can
                if not is_transient(e):
                    raise
                self.outage.failed(describe(e))
                if time.monotonic() + pause > deadline or (give_up is not None and give_up()):
                    raise NotSavedError(describe(e), what) from None
            else:
                # It ends an outage only if it wrote something (a transaction that
                # changed nothing writes nothing, on a full disk too) and the queued
                # changes are not failing meanwhile.
                if db.total_changes > changes and not self.saver.failing:
                    self.outage.succeeded()
                return result
            finally:
                self.lock.release()
            time.sleep(pause)
            pause = min(self.saver.retry_max, pause * 2)
