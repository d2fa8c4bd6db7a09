"""What a service takes back from the one before it (in process, see harness)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orcha.states import State
from tests.unit.service.harness import Harness


def test_a_restart_requeues_in_order_and_interrupts_what_was_running(tmp_path: Path) -> None:
    first = Harness(tmp_path, max_running=1)
    first.submit("a")
    first.gates.wait_started("a")
    first.submit("b", priority=5)
    first.submit("c")
    first.submit("d")
    first.call("group", name="g", max_running=3)
    first.service.begin_stop()  # keeps b, c, d queued; cancels a
    first.wait_ended("a")
    seq = first.record("a")["seq"]
    assert first.service.store is not None
    # As if the service had died while 'a' ran:
    first.service.store.update(seq, state=str(State.RUNNING), pids=[], token="token-a")
    first.close()

    second = Harness(tmp_path, max_running=1)
    try:
        a = second.record("a")
        assert (a["state"], a["message"]) == (
            "INTERRUPTED",
            "the service stopped while it was running",
        )
        assert ([], "token-a", False) in second.procs.stopped  # its leftovers were stopped
        second.gates.wait_started("c")
        states = [second.record(i)["state"] for i in ("c", "d", "b")]
        assert states == ["RUNNING", "QUEUED", "QUEUED"]
        second.run_to_end("c")
        second.gates.wait_started("d")
        second.run_to_end("d")
        second.gates.wait_started("b")
        assert second.gates.started == ["c", "d", "b"]
        (g,) = [group for group in second.call("group")["groups"] if group["name"] == "g"]
        assert g["max_running"] == 3
    finally:
        second.close()


def test_a_restart_keeps_pauses(tmp_path: Path) -> None:
    first = Harness(tmp_path, max_running=1)
    first.call("pause", all=True)
    first.submit("a")
    first.service.begin_stop()
    first.close()
    second = Harness(tmp_path, max_running=1)
    try:
        assert second.record("a")["waiting"] == "all petitions are paused ('orcha resume --all')"
        second.call("resume", all=True)
        second.gates.wait_started("a")
    finally:
        second.close()


@pytest.mark.parametrize("how", ["all", "named", "group limit"])
def test_a_resume_or_a_higher_limit_is_saved_before_what_it_lets_start_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    # A petition a resume starts may crash the service at once (a restart must not find
    # the pause again): what each start sees saved is the resume.
    import threading

    from orcha.service.handlers import control
    from orcha.service.service import Service

    h = Harness(tmp_path, max_running=2 if how == "group limit" else 1)
    try:
        store, address = h.service.store, str(h.settings.address)
        assert store is not None
        if how == "named":  # paused by its ID alone: the resume of its ID lets it start
            h.submit("first")
            h.gates.wait_started("first")
            h.submit("a")
            h.call("pause", ids=["a"])
            h.run_to_end("first")
        elif how == "group limit":  # a group full at 1: a limit of 2 lets it start
            h.call("group", name="g", max_running=1)
            h.submit("first", schedule={"group": "g"})
            h.gates.wait_started("first")
            h.submit("a", schedule={"group": "g"})
        else:
            h.call("pause", all=True)
            h.submit("a")
        assert h.record("a")["state"] == "QUEUED"
        seen: list[object] = []
        started = threading.Event()
        job_started = Service.job_started

        def spy(service: Service, job: object, wait: bool = True) -> None:
            row = store.named("a")
            seen.append((store.get_value(address, "groups", {}), row and row["paused"]))
            started.set()
            job_started(service, job, wait)

        monkeypatch.setattr(Service, "job_started", spy)
        save = control.save_groups

        def late_save(service: Service) -> None:
            started.wait(0.5)  # a start that came before the save would be seen here
            save(service)

        monkeypatch.setattr(control, "save_groups", late_save)
        if how == "group limit":
            h.call("group", name="g", max_running=2)
        else:
            h.call("resume", **({"ids": ["a"]} if how == "named" else {"all": True}))
        h.gates.wait_started("a")
        limits = {"g": 2} if how == "group limit" else {}
        assert seen == [({"limits": limits, "paused": [], "paused_all": False}, 0)]
    finally:
        h.close()


def test_a_restart_cancels_the_queued_children_of_an_interrupted_parent(tmp_path: Path) -> None:
    first = Harness(tmp_path, max_running=1)
    first.call("pause", all=True)
    first.submit("p.1")
    first.submit("alone")
    first.service.begin_stop()
    assert first.service.store is not None
    # As if the service had died while 'p' ran and 'p.1', its child, waited:
    first.service.store.update(first.record("p.1")["seq"], parent="p")
    first.close()
    second = Harness(tmp_path, max_running=1)
    try:
        child = second.record("p.1")
        assert (child["state"], child["message"]) == (
            "CANCELLED",
            "its parent p was interrupted by a restart",
        )
        assert second.record("alone")["state"] == "QUEUED"  # not a child: queued again
    finally:
        second.close()


def test_a_petition_is_recorded_running_before_its_work_starts(tmp_path: Path) -> None:
    # Read by another connection, without the service flushing its queued changes: what
    # a restart after a crash at this moment would find.
    import sqlite3

    h = Harness(tmp_path, max_running=1)
    try:
        assert h.service.store is not None
        # Changes queued for the background writer never land (as when the service dies
        # before it writes them): only what is committed at once counts.
        h.service.store.update_later = lambda seq, **fields: None  # type: ignore[method-assign]
        h.submit("a")
        h.gates.wait_started("a")  # its kind's run has begun
        db = sqlite3.connect(tmp_path / "state" / "orcha.db")
        try:
            (state,) = db.execute("SELECT state FROM petitions WHERE id = 'a'").fetchone()
        finally:
            db.close()
        assert state == "RUNNING"
    finally:
        h.close()


def _as_if_died(tmp_path: Path, h: Harness, fields: dict[str, dict[str, object]]) -> None:
    """Close ``h`` and leave the records of ``fields``' petitions RUNNING (with those
    fields), as a service that died while they ran would (the harness's close cancels
    them; their records are put back once all its writes have landed)."""
    import sqlite3

    h.close()
    db = sqlite3.connect(tmp_path / "state" / "orcha.db")
    try:
        for petition_id, values in fields.items():
            values = {"state": "RUNNING", "pids": "[]", "token": f"token-{petition_id}", **values}
            names = ", ".join(f"{name} = ?" for name in values)
            db.execute(
                f"UPDATE petitions SET {names} WHERE id = ?", (*values.values(), petition_id)
            )
        db.commit()
    finally:
        db.close()


def _die_while_running(h: Harness, tmp_path: Path, petition_id: str, attempt: int) -> None:
    _as_if_died(tmp_path, h, {petition_id: {"attempt": attempt}})


def test_an_interrupted_petition_with_retries_left_is_queued_again_and_the_attempt_counts(
    tmp_path: Path,
) -> None:
    first = Harness(tmp_path, max_running=1)
    first.submit("r", schedule={"retries": 2})
    first.gates.wait_started("r")
    _die_while_running(first, tmp_path, "r", attempt=1)

    second = Harness(tmp_path, max_running=1)
    try:
        second.gates.wait_started("r")  # run again: attempt 2 of 3
        row = second.record("r")
        assert (row["state"], row["attempt"]) == ("RUNNING", 2)
        assert ([], "token-r", False) in second.procs.stopped  # the old tree was stopped
        assert second.service.store is not None
        stored = second.service.store.named("r")
        assert stored is not None and stored["attempt"] == 2
        assert stored["message"] == (
            "attempt 1 of 3 was interrupted by a restart; queued for attempt 2"
        )
    except BaseException:
        second.close()
        raise
    _die_while_running(second, tmp_path, "r", attempt=2)

    third = Harness(tmp_path, max_running=1)
    try:
        third.gates.wait_started("r")
        assert third.record("r")["attempt"] == 3
    except BaseException:
        third.close()
        raise
    _die_while_running(third, tmp_path, "r", attempt=3)

    fourth = Harness(tmp_path, max_running=1)  # attempts used up: INTERRUPTED, not run
    try:
        row = fourth.record("r")
        assert (row["state"], row["attempt"]) == ("INTERRUPTED", 3)
        assert fourth.gates.started == []
    finally:
        fourth.close()


def test_the_end_of_a_petition_a_restart_would_retry_is_committed_before_it_is_told(
    tmp_path: Path,
) -> None:
    # Its record RUNNING with attempts left after a crash, it would run again though it
    # had ended: its end is committed at once, not a batch of the record writer later.
    import sqlite3

    h = Harness(tmp_path, max_running=2)
    try:
        assert h.service.store is not None
        saver = h.service.store.saver
        assert saver._thread is None
        saver._start = False  # no record writer: what is handed to it waits (Saver(start=))
        h.submit("retried", schedule={"retries": 2})
        h.submit("plain")
        h.gates.wait_started("retried")
        h.gates.wait_started("plain")
        h.run_to_end("retried")  # its client is told here...
        h.run_to_end("plain")

        def committed(petition_id: str) -> str:
            db = sqlite3.connect(f"file:{tmp_path / 'state' / 'orcha.db'}?mode=ro", uri=True)
            try:
                query = "SELECT state FROM petitions WHERE id = ?"
                return str(db.execute(query, (petition_id,)).fetchone()[0])
            finally:
                db.close()

        assert committed("retried") == "SUCCEEDED"  # ...and it was committed before
        assert committed("plain") == "RUNNING"  # a batch later: no restart runs it again
        saver.step()
        assert committed("plain") == "SUCCEEDED"
    finally:
        h.close()


def test_an_interrupted_petition_without_retries_or_with_a_parent_is_never_run_again(
    tmp_path: Path,
) -> None:
    first = Harness(tmp_path, max_running=2)
    first.submit("once")
    first.submit("child.1", schedule={"retries": 3})
    first.gates.wait_started("once")
    first.gates.wait_started("child.1")
    _as_if_died(tmp_path, first, {"once": {}, "child.1": {"parent": "child"}})

    second = Harness(tmp_path, max_running=2)
    try:
        assert [second.record(i)["state"] for i in ("once", "child.1")] == ["INTERRUPTED"] * 2
        assert second.gates.started == []
    finally:
        second.close()


def test_the_on_finish_hook_hears_of_petitions_a_restart_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orcha.service.notify import FinishHooks

    heard: list[tuple[str, str, str, str]] = []
    monkeypatch.setattr(
        FinishHooks, "record_ended",
        lambda self, row, group: heard.append((row["id"], row["state"], group, row["log_path"])),
    )  # fmt: skip
    first = Harness(tmp_path, max_running=1)
    first.submit("a", schedule={"group": "g"}, params={"out": "x"})
    first.gates.wait_started("a")
    first.service.begin_stop()
    first.wait_ended("a")
    a = first.record("a")
    assert first.service.store is not None
    first.service.store.update(a["seq"], state=str(State.RUNNING), pids=[], token="t")
    first.close()
    second = Harness(tmp_path, max_running=1)
    try:
        ((petition_id, state, group, log_path),) = heard
        assert (petition_id, state, group) == ("a", "INTERRUPTED", "g")
        assert log_path.startswith(str(tmp_path)) and log_path.endswith(".log")
    finally:
        second.close()


@pytest.mark.parametrize("after", ["after", "after_any"])
@pytest.mark.parametrize("plain", [True, False])
def test_a_met_dependency_stays_met_after_a_restart_though_its_record_was_cleaned(
    tmp_path: Path, after: str, plain: bool
) -> None:
    # 'dep' may start once 'a' succeeded; a clean of 'a' and a restart must not undo
    # that (its dependency is not unknown: it was met). ``plain``: restored as a compact
    # entry (the common case), else as a Job (a record whose environment is its own).
    first = Harness(tmp_path, max_running=1)
    first.submit("a")
    first.run_to_end("a")
    first.submit("dep", schedule={after: ["a"], "hold": True})
    assert first.call("clean", ids=["a"], older_than=None)["removed"] == 1
    store = first.service.store
    assert store is not None
    if not plain:
        store.update(first.record("dep")["seq"], env={"OWN": "1"})
    first.service.begin_stop()
    first.close()

    second = Harness(tmp_path, max_running=1)
    try:
        record = second.record("dep")
        assert (record["state"], record.get("waiting")) == ("QUEUED", "held ('orcha release dep')")
        second.call("release", ids=["dep"])
        second.gates.wait_started("dep")
    finally:
        second.close()


def test_dependencies_edited_after_theirs_were_met_are_waited_for_after_a_restart(
    tmp_path: Path,
) -> None:
    first = Harness(tmp_path, max_running=1)
    first.submit("a")
    first.run_to_end("a")
    first.submit("b", schedule={"hold": True})
    first.submit("dep", schedule={"after": ["a"], "hold": True})  # met at once
    first.call("edit", id="dep", changes={"after": ["b"]})  # not met
    first.service.begin_stop()
    first.close()

    second = Harness(tmp_path, max_running=1)
    try:
        second.call("release", ids=["dep"])
        assert second.record("dep")["waiting"] == "after b (queued)"
    finally:
        second.close()


def test_a_restart_cancels_a_queued_petition_whose_client_was_sending_its_stdin(
    tmp_path: Path,
) -> None:
    # After a crash its client is gone, and its input with it: it must not run on an
    # empty stdin as if that were its input. One without a fed stdin is queued again.
    import sqlite3

    first = Harness(tmp_path, max_running=1)
    first.call("pause", all=True)
    fed = first.submit("fed", attach=True, stdin=True)["handle"]
    first.call("stdin", handle=fed, data=b"1\n2\n", eof=True)
    first.submit("plain", attach=True)
    first.close()
    # As if the service had died while both were queued:
    with sqlite3.connect(tmp_path / "state" / "orcha.db") as db:
        db.execute("UPDATE petitions SET state = 'QUEUED', ended = NULL, message = NULL")
    second = Harness(tmp_path, max_running=1)
    try:
        record = second.record("fed")
        assert record["state"] == "CANCELLED", record
        assert "stdin" in record["message"] and "submit it again" in record["message"]
        assert second.record("plain")["state"] == "QUEUED"
    finally:
        second.close()
