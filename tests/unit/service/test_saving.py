"""The record writer (orcha.service.saving) and the store under write faults: retries with
backoff, merged changes, one log line per outage, a refused value costs only itself, reads
see unsaved changes, and a write a caller waits for fails within a bound with 212."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orcha.errors import WIRE_ERRORS, ExitCode, NotSavedError
from orcha.service import service as service_module
from orcha.service.saving import Changes, Outage, Saver, describe
from orcha.service.store import Store
from tests.conftest import wait_for
from tests.unit.service.harness import Harness

FULL = sqlite3.OperationalError("database or disk is full")
LOCKED = sqlite3.OperationalError("database is locked")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeDatabase:
    """A commit that fails with ``errors`` (one per try) until they run out."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.committed: list[Changes] = []
        self.tries = 0

    def commit(self, batch: Changes) -> None:
        self.tries += 1
        if self.errors:
            raise self.errors.pop(0)
        self.committed.append(batch)


def saver_over(db: FakeDatabase, clock: FakeClock | None = None) -> Saver:
    return Saver(
        db.commit, Outage(clock or FakeClock()), retry_first=0.1, retry_max=1.0, start=False
    )


def test_a_failing_write_is_retried_with_a_growing_pause_and_nothing_is_lost() -> None:
    db = FakeDatabase(FULL, FULL, FULL, FULL, FULL)
    saver = saver_over(db)
    saver.put(1, {"state": "SUCCEEDED"})
    pauses = [saver.step() for _ in range(5)]
    assert pauses == [0.1, 0.2, 0.4, 0.8, 1.0]  # doubling, up to the most
    assert saver.overlay(1) == {"state": "SUCCEEDED"}  # kept, and readers see it
    assert saver.step() == 0.0  # the disk has room again
    assert db.committed == [{1: {"state": "SUCCEEDED"}}]
    assert saver.pending == 0 and saver.overlay(1) is None
    db.errors = [LOCKED]
    saver.put(2, {"code": 0})
    assert saver.step() == 0.1  # a new outage starts from the first pause again


def test_changes_queued_meanwhile_are_merged_per_record() -> None:
    db = FakeDatabase(LOCKED)
    saver = saver_over(db)
    saver.put(1, {"state": "RUNNING", "pids": [[10, 1]]})
    saver.step()  # fails: all stays queued
    saver.put(1, {"pids": [[10, 1], [11, 2]]})
    saver.put(2, {"paused": 1})
    saver.put(1, {"state": "FAILED", "code": 3})
    saver.step()
    assert db.committed == [
        {1: {"state": "FAILED", "pids": [[10, 1], [11, 2]], "code": 3}, 2: {"paused": 1}}
    ]


def test_a_value_changed_during_a_commit_stays_queued() -> None:
    saver: Saver

    def commit(batch: Changes) -> None:
        if not changed:
            changed.append(True)
            saver.put(1, {"code": 2})  # arrives while the batch is being written

    changed: list[bool] = []
    saver = Saver(commit, Outage(FakeClock()), start=False)
    saver.put(1, {"state": "FAILED", "code": 1})
    saver.step()
    assert saver.overlay(1) == {"code": 2}  # the newer value: not forgotten
    saver.step()
    assert saver.pending == 0


def test_an_outage_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    outage = Outage(clock)
    db = FakeDatabase(*[FULL] * 20)
    saver = Saver(db.commit, outage, start=False)
    saver.put(1, {"state": "SUCCEEDED"})
    with caplog.at_level(logging.INFO, logger="orcha.service.store"):
        for _ in range(20):
            saver.step()
            clock.now += 1
        assert outage.problem == "disk full: database or disk is full"
        saver.step()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "cannot save the petition records: disk full" in lines[0]
    assert "saved again (after 20.0s and 20 failed writes)" in lines[1]
    assert outage.ok


def test_a_value_the_database_refuses_costs_only_that_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    committed: list[Changes] = []

    def commit(batch: Changes) -> None:
        for fields in batch.values():
            if any(isinstance(v, int) and v >= 2**63 for v in fields.values()):
                raise OverflowError("Python int too large to convert to SQLite INTEGER")
        committed.append(batch)

    saver = Saver(commit, Outage(FakeClock()), start=False)
    saver.put(1, {"state": "FAILED", "code": 2**63})
    saver.put(2, {"state": "SUCCEEDED"})
    with caplog.at_level(logging.ERROR, logger="orcha.service.store"):
        assert saver.step() == 0.0
    assert {1: {"state": "FAILED"}} in committed and {2: {"state": "SUCCEEDED"}} in committed
    assert saver.dropped == 1 and saver.pending == 0 and saver.outage.ok
    assert "record 1: the database refused code=" in caplog.text


def test_the_writer_thread_survives_anything_and_flush_is_bounded() -> None:
    db = FakeDatabase(RuntimeError("boom"), MemoryError(), LOCKED)
    saver = Saver(db.commit, Outage(), retry_first=0.01, retry_max=0.02)
    saver.put(1, {"state": "SUCCEEDED"})
    assert saver.flush(timeout=10)
    # The first two failures were not the disk's: each field was tried on its own.
    assert {1: {"state": "SUCCEEDED"}} in db.committed or saver.dropped
    saver.put(2, {"code": 0})
    assert saver.flush(timeout=10)  # still alive
    assert {2: {"code": 0}} in db.committed
    blocked = FakeDatabase(*[LOCKED] * 10_000)
    stuck = Saver(blocked.commit, Outage(), retry_first=0.01, retry_max=0.01)
    stuck.put(1, {"code": 0})
    assert not stuck.flush(timeout=0.2)  # bounded: it never waits for ever
    assert stuck.close(timeout=0.1) == 1  # one record left unsaved


def test_describe_says_what_failed() -> None:
    assert describe(FULL) == "disk full: database or disk is full"
    assert describe(LOCKED) == "database is locked"
    assert describe(OSError(28, "No space left on device")) == "No space left on device"


# -- the store, with another process's lock on its database ------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Any:
    store = Store(str(tmp_path / "orcha.db"), sync_wait=1.0)
    store._db.execute("PRAGMA busy_timeout=50")  # a lock costs the test 50 ms, not 2 s
    store.saver.retry_first = store.saver.retry_max = 0.01
    yield store
    store.close(timeout=1)


def _record(petition_id: str) -> dict[str, Any]:
    return {"service": "s", "id": petition_id, "kind": "shell", "params": {}, "priority": 0,
            "state": "QUEUED", "submitted": 1.0, "user": "u", "host": "h", "cwd": "/",
            "env": {}}  # fmt: skip


def test_a_locked_database_refuses_new_records_but_keeps_answering(store: Store) -> None:
    seq = store.add(_record("a"))
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(NotSavedError) as refused:
            store.add(_record("b"))
        assert refused.value.exit_code == ExitCode.NOT_SAVED
        assert "database is locked" in refused.value.message
        assert "nothing was submitted" in refused.value.message
        store.update_later(seq, state="SUCCEEDED", code=0)
        assert not store.flush(timeout=0.3)  # retried in the background, not lost
        ok, words = store.health()
        assert not ok and words.startswith("UNSAVED (database is locked")
        # Reads answer, with the change not saved yet.
        assert store.named("a")["state"] == "SUCCEEDED"  # type: ignore[index]
        assert [r["id"] for r in store.find(states=["SUCCEEDED"])] == ["a"]
        assert store.live("s") == []
    finally:
        other.execute("COMMIT")
        other.close()
    assert store.flush(timeout=5)
    assert store.health() == (True, "saving ok")
    check = sqlite3.connect(store.path)
    assert check.execute("SELECT state FROM petitions WHERE id = 'a'").fetchone() == ("SUCCEEDED",)
    check.close()
    store.add(_record("b"))


def test_a_start_is_retried_for_its_bound_then_refused(store: Store) -> None:
    seq = store.add(_record("a"))
    other = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")
    with pytest.raises(NotSavedError, match="petition a was not started"):
        store.update(seq, state="RUNNING", wait=0.2, what="petition a was not started")
    # Released while a start is retried: it is saved.
    release = threading.Timer(0.2, lambda: other.execute("COMMIT"))
    release.start()
    try:
        store.update(seq, state="RUNNING", started=2.0, wait=5)
    finally:
        release.join()
        other.close()
    assert store.get(seq)["state"] == "RUNNING"  # type: ignore[index]


# -- the service core, in process, with a writing connection that fails on demand ------


class Breakable:
    """The store's writing connection, failing like a full disk while ``broken``."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.broken = False

    def execute(self, *args: Any) -> Any:
        if self.broken:
            raise FULL
        return self.db.execute(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


@pytest.fixture
def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    monkeypatch.setattr(service_module, "STORE_START_WAIT", 0.2)
    harness = Harness(tmp_path, max_running=1)
    store = harness.service.store
    assert store is not None
    store.saver.retry_first = store.saver.retry_max = 0.01
    store._db = Breakable(store._db)  # type: ignore[assignment]
    yield harness
    store._db.broken = False  # type: ignore[attr-defined]
    harness.close()


def _saved(h: Harness, petition_id: str) -> tuple[str, int | None]:
    """State and code of a petition as saved in the database (another connection)."""
    assert h.service.store is not None and h.service.store.flush(timeout=5)
    db = sqlite3.connect(h.service.store.path)
    try:
        row = db.execute(
            "SELECT state, code FROM petitions WHERE id = ? ORDER BY seq DESC", (petition_id,)
        ).fetchone()
    finally:
        db.close()
    return (row[0], row[1])


def test_while_state_cannot_be_saved_submits_are_refused_and_the_rest_answers(
    h: Harness,
) -> None:
    store = h.service.store
    assert store is not None
    assert h.submit("a")["ok"]
    h.gates.wait_started("a")
    store._db.broken = True  # type: ignore[attr-defined]
    refused = h.submit("b")
    assert (refused["ok"], refused["error"]) == (False, "not_saved")
    assert refused["message"].startswith("the service cannot save its state (disk full")
    assert WIRE_ERRORS["not_saved"] == ExitCode.NOT_SAVED
    health = h.call("health")
    assert health["healthy"] is False and health["state"].startswith("UNSAVED (disk full")
    h.run_to_end("a")  # its end cannot be saved: kept, and shown
    assert h.record("a")["state"] == "SUCCEEDED"
    assert h.request("status", ids=["b"])["missing"] == ["b"]
    clean = h.request("clean")
    assert clean["ok"] is False and clean["error"] == "not_saved"
    assert "nothing was removed" in clean["message"]
    store._db.broken = False  # type: ignore[attr-defined]
    assert _saved(h, "a") == ("SUCCEEDED", 0)
    assert h.call("health")["state"] == "saving ok"
    assert h.submit("b")["ok"]


def test_a_start_that_cannot_be_saved_fails_the_petition_without_running_it(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    store = h.service.store
    assert store is not None
    assert h.submit("first")["ok"]
    h.gates.wait_started("first")
    assert h.submit("second")["ok"]  # queued behind it: one slot
    store._db.broken = True  # type: ignore[attr-defined]
    with caplog.at_level(logging.INFO, logger="orcha"):
        h.run_to_end("first")
        h.wait_ended("second")
    record = h.record("second")
    assert (record["state"], record["code"]) == ("FAILED", int(ExitCode.NOT_SAVED))
    assert "it did not run" in record["message"]
    assert "second" not in h.gates.started  # never run
    assert "petition second not started: its start could not be saved" in caplog.text
    assert "worker task raised" not in caplog.text and "Traceback" not in caplog.text
    store._db.broken = False  # type: ignore[attr-defined]
    assert _saved(h, "second") == ("FAILED", int(ExitCode.NOT_SAVED))


def test_only_a_write_that_saved_something_ends_an_outage(store: Store) -> None:
    store.outage.failed("disk full: database or disk is full")
    assert store.remove_finished() == []  # a transaction that changed nothing
    assert not store.outage.ok  # proves nothing: on a full disk it writes nothing
    store.saver.failing = True  # the writer's queued changes still fail meanwhile
    store.add(_record("a"))
    assert not store.outage.ok
    store.saver.failing = False
    store.add(_record("b"))
    assert store.outage.ok and store.health() == (True, "saving ok")


def test_flush_hurries_a_writer_pausing_between_tries() -> None:
    db = FakeDatabase(LOCKED)
    tried = threading.Event()
    commit = db.commit

    def counted(batch: Changes) -> None:
        try:
            commit(batch)
        finally:
            tried.set()

    saver = Saver(counted, Outage(), retry_first=60, retry_max=60)  # a long pause
    saver.put(1, {"code": 0})
    assert tried.wait(10)  # the first try failed: the writer pauses for 60 s
    assert saver.flush(timeout=10)  # but a flush (a stop) has it try again at once
    assert db.committed == [{1: {"code": 0}}]
    saver.close(timeout=1)


class FilledBy(Breakable):
    """The writing connection of a disk a file filled: full while that file exists."""

    def __init__(self, db: sqlite3.Connection, path: str) -> None:
        super().__init__(db)
        self.path = path

    @property  # type: ignore[override]
    def broken(self) -> bool:
        return os.path.exists(self.path)

    @broken.setter
    def broken(self, value: bool) -> None:
        pass  # only removing the file frees the disk


class Full(Breakable):
    """The writing connection of a full disk, as SQLite has it: a change fails, a
    transaction that changes nothing (a clean that deletes nothing) does not."""

    def execute(self, *args: Any) -> Any:
        if self.broken and str(args[0]).lstrip().upper().startswith(("UPDATE", "INSERT")):
            raise FULL
        return self.db.execute(*args)


def _clean_with_its_end_unsaved(h: Harness, petition: str, freed: bool, **clean: Any) -> None:
    """``petition`` (running) ends while the disk is full, so its end is not saved; then
    ``clean`` (its request's fields). ``freed``: removing its log frees the disk."""
    store = h.service.store
    assert store is not None
    path = store.named(petition)["log_path"]  # type: ignore[index]
    assert wait_for(lambda: os.path.exists(path))
    breakable = store._db
    inner = breakable.db  # type: ignore[attr-defined]
    store._db = FilledBy(inner, path) if freed else Full(inner)  # type: ignore[assignment]
    store._db.broken = True  # type: ignore[attr-defined]
    try:
        h.run_to_end(petition)
        assert not store.flush(timeout=0.1)  # its end is not saved
        reply = h.call("clean", older_than=None, **clean)
        assert not os.path.exists(path)
        if freed:
            assert (reply["removed"], reply["results"]) == (1, {})
            assert h.request("status", ids=[petition])["missing"] == [petition]
        else:
            assert (reply["removed"], list(reply["results"])) == (0, [petition])
            assert reply["results"][petition].startswith(
                f"petition '{petition}' has ended but its end is not saved yet (disk full: "
            )
            assert reply["results"][petition].endswith(
                "its output log was removed to free space: clean it again once 'orcha "
                "health' says the service saves again"
            )
    finally:
        store._db = breakable
        breakable.broken = False  # type: ignore[attr-defined]
    assert store.flush(timeout=5)
    assert h.call("health")["state"] == "saving ok"


@pytest.mark.parametrize("freed", [True, False])
def test_cleaning_the_petition_whose_end_is_not_saved_removes_its_log_to_free_space(
    h: Harness, freed: bool
) -> None:
    # Its log filled the disk, so its end is not saved (the database says RUNNING):
    # 'clean big' removes that log, and then the end and the removal are saved. If the
    # disk stays full even so, it says why the record is left, and what to do.
    h.submit("big", params={"out": "x" * 1000})
    h.gates.wait_started("big")
    _clean_with_its_end_unsaved(h, "big", freed, ids=["big"])


@pytest.mark.parametrize("freed", [True, False])
@pytest.mark.parametrize(
    "selection",
    [{"states": ["SUCCEEDED"]}, {}, {"groups": ["default"]}, {"ids": ["arr"]}],
    ids=["state", "all", "group", "array"],
)
def test_a_clean_by_selection_frees_the_log_of_a_petition_whose_end_is_not_saved(
    h: Harness, freed: bool, selection: dict[str, Any]
) -> None:
    # As 'clean ID' (above), for each such petition a selection keeps: its log is
    # removed, then its end is saved and its record removed; if the disk stays full, it
    # says so and what to do (exit 209).
    template = {"kind": "gate", "id": "arr", "params": {"out": "x" * 1000}, "cwd": "/",
                "env": {}, "attach": False}  # fmt: skip
    h.call("submit_array", submit=template, members=[[1, None]], limit=None)
    h.gates.wait_started("arr_1")
    _clean_with_its_end_unsaved(h, "arr_1", freed, **selection)
