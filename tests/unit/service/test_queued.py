"""Compact queue entries (orcha.service.queued) in the service core (in process, see
harness): detached array members wait as entries and behave as petitions in every way
a waiting petition is used; a restart queues plain records again as entries."""

from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path
from typing import Any

from orcha.service.job import Job
from orcha.service.queued import Queued
from orcha.states import State
from tests.unit.service.harness import Harness


def _array(h: Harness, name: str, n: int, **submit: Any) -> list[str]:
    template = {"kind": "gate", "id": name, "params": {}, "cwd": "/", "env": {"A": "1"},
                "attach": False, **submit}  # fmt: skip
    reply = h.call("submit_array", submit=template, members=[[i, None] for i in range(1, n + 1)])
    return list(reply["ids"])


def _held(h: Harness, petition_id: str) -> Any:
    return h.service.scheduler.peek(petition_id)


def test_members_wait_compactly_and_are_used_as_petitions(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_running=1)
    try:
        h.submit("blocker")
        h.gates.wait_started("blocker")
        ids = _array(h, "m", 5, priority=1)
        _array(h, "g", 2, schedule={"group": "grp"})
        h.submit("urgent", priority=-1)  # a Job: it goes ahead of the entries
        assert all(type(_held(h, i)) is Queued for i in [*ids, "g_1"])
        scheduler = h.service.scheduler
        assert scheduler.queued_count == 8
        # Reading does not build them: status, info, explain.
        assert h.record("m_3")["waiting"].startswith("waiting for a free slot")
        assert h.record("m_3")["state"] == "QUEUED"
        info = {p["id"]: p for p in h.call("info")["petitions"]}
        assert info["m_2"]["state"] == "QUEUED" and info["m_2"]["priority"] == 1
        assert type(_held(h, "m_3")) is Queued
        # Pausing a group leaves its members compact; pausing one by ID builds it.
        h.call("pause", groups=["grp"])
        assert h.record("g_1")["waiting"] == "group grp is paused ('orcha resume --group grp')"
        assert type(_held(h, "g_1")) is Queued
        h.call("pause", ids=["m_2"])
        assert type(_held(h, "m_2")) is Job and h.record("m_2")["paused"] is True
        # Cancelling one by ID, and editing one's priority.
        assert h.call("cancel", ids=["m_4"])["results"] == {"m_4": "cancelled"}
        assert h.record("m_4")["state"] == "CANCELLED"
        h.call("edit", id="m_5", priority=0)
        # Admission: urgent (-1), then m_5 (0), then m_1, m_3 (m_2 paused), g_* last.
        order = ["urgent", "m_5", "m_1", "m_3"]
        h.run_to_end("blocker")
        for previous, petition_id in itertools.pairwise(order):
            h.gates.wait_started(previous)
            h.run_to_end(previous)
            h.gates.wait_started(petition_id)
        assert h.gates.started == ["blocker", *order]
        running = scheduler.get("m_3")
        assert running is not None and running.state is State.RUNNING
        assert running.log is not None and running.token.startswith(h.service.token_prefix)
        assert h.service.store is not None
        record = h.service.store.get(running.seq)
        assert record is not None and running.log.path == record["log_path"]
        assert running.token == record["token"]
        h.call("resume", groups=["grp"])
        h.call("resume", ids=["m_2"])
        h.run_to_end("m_3")
        for petition_id in ("g_1", "g_2", "m_2"):  # g_* have priority 0, m_* 1
            h.gates.wait_started(petition_id)
            h.run_to_end(petition_id)
        assert h.record("m_2")["state"] == "SUCCEEDED"
    finally:
        h.close()


def test_members_after_a_petition_that_fails_fail_and_cancel_by_group(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_running=1)
    try:
        h.submit("dep")
        h.gates.wait_started("dep")
        ids = _array(h, "d", 3, schedule={"after": ["dep"]})
        _array(h, "c", 3, schedule={"group": "gone"})
        assert h.record("d_1")["waiting"] == "after dep (running)"
        assert type(_held(h, "d_1")) is Queued
        results = h.call("cancel", groups=["gone"])["results"]
        assert results == {"c_1": "cancelled", "c_2": "cancelled", "c_3": "cancelled"}
        h.run_to_end("dep", code=3)
        h.wait_ended(*ids)  # failed once dep's end is taken in: just after it is announced
        for petition_id in ids:
            record = h.record(petition_id)
            assert record["state"] == "FAILED", record
            assert record["message"] == "dependency dep ended FAILED (code 3)"
        assert h.service.scheduler.queued_count == 0
    finally:
        h.close()


def test_a_restart_queues_plain_records_as_entries_and_checks_them(tmp_path: Path) -> None:
    first = Harness(tmp_path, max_running=1)
    first.call("pause", all=True)
    _array(first, "r", 3, priority=2)
    first.submit("solo", priority=1, params={"out": "x"})
    first.submit("bad")
    first.submit("kindless")
    store = first.service.store
    assert store is not None
    first.service.begin_stop()
    bad, kindless = first.record("bad")["seq"], first.record("kindless")["seq"]
    first.close()
    # Parameters its kind refuses now, and a kind no plugin serves.
    db = sqlite3.connect(next((tmp_path / "state").glob("*.db")))
    db.execute("UPDATE petitions SET params = ? WHERE seq = ?", (json.dumps([1]), bad))
    db.execute("UPDATE petitions SET kind = 'nokind' WHERE seq = ?", (kindless,))
    db.commit()
    db.close()

    second = Harness(tmp_path, max_running=1)
    try:
        assert all(type(_held(second, i)) is Queued for i in ("r_1", "r_3", "solo"))
        record = second.record("bad")
        assert record["state"] == "CANCELLED"
        assert record["message"].startswith("not queued again after a restart: ")
        assert "no petition kind 'nokind'" in second.record("kindless")["message"]
        assert second.record("r_2")["waiting"] == "all petitions are paused ('orcha resume --all')"
        second.call("resume", all=True)
        for petition_id in ("solo", "r_1", "r_2", "r_3"):
            second.gates.wait_started(petition_id)
            second.run_to_end(petition_id)
        assert second.gates.started == ["solo", "r_1", "r_2", "r_3"]  # once each, in order
        assert second.call("logs", id="solo")["output"] == [["stdout", "x"]]  # its own log
        assert second.service.scheduler.queued_count == 0
        assert second.record("r_1")["attempt"] == 1
    finally:
        second.close()


def test_held_timed_and_dependent_entries_wait_out_of_the_order_across_a_restart(
    tmp_path: Path,
) -> None:
    first = Harness(tmp_path, max_running=1)
    first.submit("blocker")
    first.gates.wait_started("blocker")
    _array(first, "h", 2, schedule={"hold": True})
    _array(first, "t", 1, schedule={"begin": first.clock.now + 60})
    _array(first, "a", 2, schedule={"after": ["h_1"]})
    assert first.record("h_1")["waiting"] == "held ('orcha release h_1')"
    first.service.begin_stop()
    first.wait_ended("blocker")
    first.close()

    second = Harness(tmp_path, max_running=1, clock=first.clock)
    try:
        assert all(type(_held(second, i)) is Queued for i in ("h_1", "h_2", "t_1", "a_1"))
        assert second.record("h_2")["waiting"] == "held ('orcha release h_2')"
        assert second.record("a_1")["waiting"] == "after h_1 (queued)"
        assert second.record("t_1")["waiting"].startswith("starts at ")
        assert second.call("release", ids=["h_1"])["results"] == {"h_1": "released"}
        second.gates.wait_started("h_1")
        second.run_to_end("h_1")
        for petition_id in ("a_1", "a_2"):  # h_2 is still held, t_1 not due
            second.gates.wait_started(petition_id)
            second.run_to_end(petition_id)
        second.clock.advance(61)
        second.service.scheduler.admit()  # what the daemon's timer does
        second.gates.wait_started("t_1")
        second.run_to_end("t_1")
        assert second.record("h_2")["state"] == "QUEUED"
        assert second.gates.started == ["h_1", "a_1", "a_2", "t_1"]
    finally:
        second.close()


def test_an_entry_read_before_gives_the_job_it_became(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_running=1)
    try:
        _array(h, "v", 1)
        h.gates.wait_started("v_1")  # started at once: built by the walk
        (view,) = [j for j in h.service.scheduler.views() if j.id == "v_1"]
        assert type(view) is Job
        h.call("pause", all=True)
        _array(h, "w", 1)
        (entry,) = h.service.scheduler.waiting_views()  # read, not built
        assert type(entry) is Queued
        h.call("resume", all=True)
        h.run_to_end("v_1")
        h.gates.wait_started("w_1")
        h.run_to_end("w_1")
        job = h.service.scheduler.job(entry)  # the one Job it became, ended
        assert job.state is State.SUCCEEDED and h.service.scheduler.job(entry) is job
        h.service.cancel(job, "late", by_client=False)  # nothing: it has ended
        assert h.record("w_1")["state"] == "SUCCEEDED"
    finally:
        h.close()


def test_an_arrays_name_releases_its_held_members(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_running=1)
    try:
        h.submit("blocker")
        h.gates.wait_started("blocker")
        _array(h, "h", 12, schedule={"hold": True})
        h.call("cancel", ids=["h_3"])
        results = h.call("release", ids=["h"])["results"]
        # Its held members, not the cancelled one (left out quietly, as for pause).
        assert results == {f"h_{i}": "released" for i in range(1, 13) if i != 3}
        assert h.record("h_5")["state"] == "QUEUED" and "hold" not in h.record("h_5")["schedule"]
        assert h.call("release", ids=["h"])["results"] == {
            "h": "array 'h' has no held or delayed petition"
        }
        h.run_to_end("blocker")
        h.gates.wait_started("h_1")
    finally:
        h.close()
