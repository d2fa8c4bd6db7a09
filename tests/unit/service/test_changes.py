"""Changes after submission, in process on the fake clock: --hold and release, --delay and
--at (start times), edit, restart."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest

from orcha.units import clock_time as when
from tests.unit.service.harness import Harness


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, max_running=2)
    yield harness
    harness.close()


def _state(h: Harness, petition_id: str) -> str:
    return str(h.record(petition_id)["state"])


# -- hold and release --------------------------------------------------------------------------
def test_a_held_petition_never_starts_until_released(h: Harness) -> None:
    h.submit("held", schedule={"hold": True})
    h.submit("free")
    h.gates.wait_started("free")
    record = h.record("held")
    assert record["state"] == "QUEUED"
    assert record["waiting"] == "held ('orcha release held')"
    assert record["schedule"]["hold"] is True
    h.run_to_end("free")  # a slot frees: still held
    assert _state(h, "held") == "QUEUED"
    assert h.call("release", ids=["held"])["results"] == {"held": "released"}
    h.gates.wait_started("held")
    # the release is in the record: a restart of the service does not hold it again
    assert "hold" not in h.record("held")["schedule"]


def test_release_says_why_not_for_each_id(h: Harness) -> None:
    h.submit("plain", schedule={"hold": False})
    h.gates.wait_started("plain")
    h.submit("waits", schedule={"cpus": 2})  # waits for CPUs, neither held nor delayed
    results = h.call("release", ids=["plain", "waits", "nope"])["results"]
    assert results == {
        "plain": "petition 'plain' is running; only a queued one can be released",
        "waits": "petition 'waits' is neither held nor delayed",
        "nope": "no petition has ID 'nope'; see 'orcha status'",
    }


def test_a_held_petition_holds_nothing_back(h: Harness) -> None:
    h.submit("big", schedule={"hold": True, "cpus": 2})
    h.submit("small")
    h.gates.wait_started("small")


# -- start times -------------------------------------------------------------------------------
def test_a_delayed_petition_starts_once_its_time_comes_on_the_service_clock(h: Harness) -> None:
    start = h.clock.now + 90
    h.submit("later", schedule={"delay": 90})
    record = h.record("later")
    assert record["schedule"]["begin"] == pytest.approx(start)  # kept as a time
    assert "delay" not in record["schedule"]
    assert record["waiting"] == f"starts at {when(start, h.clock.now)}"
    assert h.service.scheduler.next_start() == pytest.approx(start)  # the one timer
    h.clock.advance(89)
    h.service.scheduler.admit()  # what the daemon does when its timer fires
    assert _state(h, "later") == "QUEUED"
    h.clock.advance(1)
    h.service.scheduler.admit()
    h.gates.wait_started("later")
    assert h.service.scheduler.next_start() is None  # idle: no timer left


def test_durations_and_start_times_beyond_ten_years_are_refused_not_run(h: Harness) -> None:
    """From a client that bypasses the CLI's checks: refused with one line, nothing
    queued (a retry delay of 200000 days once failed its petition with a traceback)."""
    for schedule in ({"timeout": 1.728e10}, {"retries": 1, "retry_delay": 1.728e10},
                     {"delay": 1e300}, {"begin": h.clock.now + 1e12}):  # fmt: skip
        reply = h.submit("far", schedule=schedule)
        assert reply["error"] == "refused", schedule
        assert "3650d (10 years)" in reply["message"] and "\n" not in reply["message"]
    assert h.call("status", ids=["far"])["petitions"] == []
    h.submit("w", schedule={"hold": True})
    reply = h.request("edit", id="w", changes={"delay": 1e300})
    assert reply["error"] == "refused"
    assert reply["message"] == (
        "invalid request: 'delay' must be at most 315360000 seconds (3650d (10 years)), got 1e+300"
    )
    assert h.record("w")["schedule"] == {"hold": True}


def test_an_idle_service_has_no_timer(h: Harness) -> None:
    assert h.service.scheduler.next_start() is None
    h.submit("held", schedule={"hold": True})
    assert h.service.scheduler.next_start() is None


def test_release_drops_the_start_time(h: Harness) -> None:
    h.submit("at", schedule={"begin": h.clock.now + 3600})
    assert h.service.scheduler.next_start() is not None
    assert h.call("release", ids=["at"])["results"] == {"at": "released"}
    h.gates.wait_started("at")
    assert h.service.scheduler.next_start() is None  # its timer went with it


def test_a_cancelled_delayed_petition_leaves_no_timer(h: Harness) -> None:
    h.submit("at", schedule={"delay": 60})
    h.call("cancel", ids=["at"])
    assert h.service.scheduler.next_start() is None


def test_start_times_read_as_today_tomorrow_or_a_date() -> None:
    now = datetime.datetime(2026, 12, 3, 10, 0).timestamp()
    at = datetime.datetime(2026, 12, 3, 14, 30).timestamp()
    assert when(at, now) == "14:30"
    assert when(at + 15, now) == "14:30:15"
    assert when(at + 86400, now) == "14:30 tomorrow"
    assert when(at + 7 * 86400, now) == "2026-12-10 14:30"


# -- edit --------------------------------------------------------------------------------------
def test_edit_moves_a_queued_petition_in_the_order_and_keeps_it(h: Harness) -> None:
    h.submit("run1")
    h.submit("run2")
    for name in ("a", "b", "c"):
        h.submit(name)
    reply = h.call("edit", id="c", priority=-5, changes={"cpus": 1, "timeout": 60})
    assert reply["priority"] == -5
    assert reply["schedule"] == {"timeout": 60.0}
    record = h.record("c")
    assert (record["priority"], record["schedule"]) == (-5, {"timeout": 60.0})
    h.run_to_end("run1")
    h.gates.wait_started("c")  # first now: its new priority
    h.run_to_end("run2")
    h.gates.wait_started("a")


def test_edit_is_refused_with_one_line_once_it_runs_or_ended(h: Harness) -> None:
    h.submit("a")
    h.gates.wait_started("a")
    reply = h.request("edit", id="a", priority=3)
    assert reply["error"] == "no_petition"  # as cancel of an ended one: exit 209
    assert reply["message"] == "petition 'a' is running; only a queued one can be edited"
    h.run_to_end("a")
    reply = h.request("edit", id="a", priority=3)
    assert reply["error"] == "no_petition"
    assert reply["message"] == (
        "petition 'a' has ended (SUCCEEDED); only a queued one can be edited "
        "('orcha restart a' runs it again)"
    )
    assert h.request("edit", id="zz", priority=1)["error"] == "no_petition"


def test_edit_refuses_what_can_never_fit_and_keeps_the_old_request(h: Harness) -> None:
    h.submit("w", schedule={"hold": True})
    reply = h.request("edit", id="w", changes={"cpus": 64})
    assert reply["error"] == "refused"
    assert "asks for 64 CPUs" in reply["message"]
    assert h.request("edit", id="w", changes={"retries": -1})["error"] == "refused"
    assert h.request("edit", id="w", changes={"after": ["w"]})["error"] == "refused"
    assert h.record("w")["schedule"] == {"hold": True}


def test_edit_can_hold_and_group_a_waiting_petition(h: Harness) -> None:
    h.submit("w", schedule={"hold": True})
    h.call("edit", id="w", changes={"group": "gpu", "hold": False})
    h.gates.wait_started("w")
    assert h.record("w")["schedule"] == {"group": "gpu"}


def test_edit_refuses_a_dependency_cycle_naming_it(h: Harness) -> None:
    h.submit("cy1", schedule={"hold": True})
    h.submit("cy2", schedule={"after": ["cy1"]})
    h.submit("cy3", schedule={"after": ["cy2"]})
    reply = h.request("edit", id="cy1", changes={"after": ["cy3"]})
    assert reply["error"] == "refused"
    assert reply["message"] == (
        "petition 'cy1' cannot run after 'cy3': that makes a dependency cycle "
        "(cy1 -> cy3 -> cy2 -> cy1) in which none would ever start; check --after"
    )
    reply = h.request("edit", id="cy1", changes={"after_any": ["cy2"]})
    assert "(cy1 -> cy2 -> cy1)" in reply["message"]
    assert h.record("cy1")["schedule"] == {"hold": True}  # unchanged
    h.call("release", ids=["cy1"])
    for name in ("cy1", "cy2", "cy3"):
        h.gates.wait_started(name)
        h.run_to_end(name)


def test_edit_of_an_array_refuses_a_cycle_through_its_members(h: Harness) -> None:
    members = [[1, None], [2, None]]
    template = {"kind": "gate", "id": "arr", "params": {}, "cwd": "/", "env": {},
                "attach": False, "schedule": {"hold": True}}  # fmt: skip
    h.call("submit_array", submit=template, members=members, limit=None)
    h.submit("x", schedule={"after": ["arr_2"]})
    reply = h.request("edit", id="arr", changes={"after": ["x"]})
    assert reply["error"] == "refused"
    assert "(arr_2 -> x -> arr_2)" in reply["message"]
    assert h.record("arr_1")["schedule"] == {"hold": True}  # no member changed


# -- restart -----------------------------------------------------------------------------------
def test_restart_runs_an_ended_petition_again_as_a_new_linked_record(h: Harness) -> None:
    h.submit("job", params={"out": "x\n"}, priority=3, schedule={"timeout": 30})
    h.gates.wait_started("job")
    h.run_to_end("job", code=4)
    old = h.record("job")
    reply = h.call("restart", ids=["job"], changes={"retries": 1})
    assert reply["results"] == {"job": "restarted"}
    (new,) = reply["restarted"]
    assert new["restart_of"] == old["seq"] and new["seq"] > old["seq"]
    h.gates.wait_started("job")
    record = h.record("job")
    assert record["seq"] == new["seq"]
    assert record["restart_of"] == old["seq"]
    assert record["params"] == {"out": "x\n"} and record["priority"] == 3
    assert record["schedule"] == {"timeout": 30.0, "retries": 1}


def test_restart_of_a_live_petition_is_refused_with_one_line(h: Harness) -> None:
    h.submit("live")
    h.gates.wait_started("live")
    reply = h.request("restart", ids=["live"])
    assert reply["error"] == "duplicate"
    assert reply["message"] == (
        "petition 'live' is still running; restart it once it has ended "
        "(or 'orcha cancel live' first)"
    )
    assert h.request("restart", ids=["ghost"])["error"] == "no_petition"


def test_a_petition_named_twice_counts_once(h: Harness) -> None:
    h.submit("w1")
    h.run_to_end("w1", code=1)
    seq = str(h.record("w1")["seq"])
    reply = h.call("restart", ids=["w1", "w1", seq], changes={"hold": True})
    assert reply["results"] == {"w1": "restarted"}
    assert len(reply["restarted"]) == 1
    for verb, word in (("pause", "paused"), ("resume", "resumed"), ("release", "released")):
        assert h.call(verb, ids=["w1", "w1"])["results"] == {"w1": word}, verb
    h.gates.wait_started("w1")
    assert h.call("cancel", ids=["w1", "w1"])["results"] == {"w1": "cancelled"}
    h.wait_ended("w1")
    assert h.call("clean", ids=["w1", "w1"]) == {"re": "clean", "ok": True, "removed": 1,
                                                 "results": {}}  # fmt: skip


def test_restart_failed_picks_the_newest_failed_records_of_a_group(h: Harness) -> None:
    for name, group, code in (("f1", "a", 1), ("f2", "b", 2), ("ok", "a", 0)):
        h.submit(name, schedule={"group": group})
        h.gates.wait_started(name)
        h.run_to_end(name, code=code)
    reply = h.call("restart", group="a")
    assert reply["results"] == {"f1": "restarted"}
    h.gates.wait_started("f1")
    h.run_to_end("f1", code=0)  # its newest record succeeded: no longer "failed"
    reply = h.call("restart", failed=True, priority=-1)
    assert reply["results"] == {"f2": "restarted"}
    h.gates.wait_started("f2")
    assert h.record("f2")["priority"] == -1


def test_a_numbered_petition_is_restarted_as_a_new_number_and_once_by_failed(
    h: Harness,
) -> None:
    first = h.submit(None)["id"]  # type: ignore[arg-type]  # no ID: the service numbers it
    h.gates.wait_started(first)
    h.run_to_end(first, code=3)
    reply = h.call("restart", ids=[first])
    (new,) = reply["restarted"]
    assert reply["results"] == {first: "restarted"}
    assert new["id"] == str(new["seq"]) and new["restart_of"] == int(first)
    h.gates.wait_started(new["id"])
    h.run_to_end(new["id"], code=4)
    # Only the newest run of that lineage is picked: the first was run again already.
    reply = h.call("restart", failed=True)
    assert reply["results"] == {new["id"]: "restarted"}
    assert reply["restarted"][0]["restart_of"] == new["seq"]


def test_a_restart_by_an_older_run_s_reference_takes_the_name_again(h: Harness) -> None:
    for code in (5, 0):
        h.submit("nm")
        h.gates.wait_started("nm")
        h.run_to_end("nm", code=code)
    old = h.call("status", ids=["nm~1"])["petitions"][0]
    reply = h.call("restart", ids=["nm~1"])
    assert reply["results"] == {"nm~1": "restarted"}
    assert reply["restarted"][0] == {
        "id": "nm",
        "seq": reply["restarted"][0]["seq"],
        "restart_of": old["seq"],
    }


def test_restart_can_hold_or_delay_the_new_run(h: Harness) -> None:
    h.submit("j")
    h.gates.wait_started("j")
    h.run_to_end("j")
    h.call("restart", ids=["j"], changes={"hold": True})
    assert h.record("j")["waiting"] == "held ('orcha release j')"


def test_holds_start_times_and_edits_survive_a_restart_of_the_service(tmp_path: Path) -> None:
    first = Harness(tmp_path, max_running=1)
    begin = first.clock.now + 600
    first.submit("held", schedule={"hold": True})
    first.submit("later", schedule={"delay": 600})
    first.submit("edited", schedule={"hold": True})
    first.call("edit", id="edited", priority=-2, changes={"timeout": 5})
    first.service.begin_stop()
    first.close()
    second = Harness(tmp_path, max_running=1, clock=first.clock)
    try:
        assert second.record("held")["waiting"] == "held ('orcha release held')"
        assert second.record("later")["waiting"] == f"starts at {when(begin, first.clock.now)}"
        edited = second.record("edited")
        assert (edited["priority"], edited["schedule"]) == (-2, {"hold": True, "timeout": 5.0})
        assert second.service.scheduler.next_start() == pytest.approx(begin)
        second.clock.advance(600)
        second.service.scheduler.admit()
        second.gates.wait_started("later")
    finally:
        second.close()


def test_edit_delay_counts_from_now_and_replaces_an_earlier_start_time(h: Harness) -> None:
    h.submit("at", schedule={"begin": h.clock.now + 3600})
    h.clock.advance(10)
    reply = h.call("edit", id="at", changes={"delay": 5})
    assert reply["schedule"]["begin"] == pytest.approx(h.clock.now + 5)
    h.clock.advance(5)
    h.service.scheduler.admit()
    h.gates.wait_started("at")


def test_restart_failed_takes_interrupted_runs_but_not_cancelled_ones(h: Harness) -> None:
    h.submit("crashed")
    h.gates.wait_started("crashed")
    h.run_to_end("crashed")
    store = h.service.store
    assert store is not None
    store.flush()
    store.update(h.record("crashed")["seq"], state="INTERRUPTED")  # as after a crash
    h.submit("stopped", schedule={"hold": True})
    h.call("cancel", ids=["stopped"])
    assert h.call("restart", failed=True)["results"] == {"crashed": "restarted"}


def test_restart_failed_with_ids_restarts_only_those_that_failed(h: Harness) -> None:
    for name, code in (("ok", 0), ("bad", 3)):
        h.submit(name)
        h.gates.wait_started(name)
        h.run_to_end(name, code)
    reply = h.call("restart", ids=["ok", "bad"], failed=True)
    assert reply["results"] == {
        "ok": "petition 'ok' did not fail (SUCCEEDED); not restarted",
        "bad": "restarted",
    }
    assert [r["id"] for r in reply["restarted"]] == ["bad"]
    h.gates.wait_started("bad")
    h.run_to_end("bad")
    # Without --failed, the IDs given are restarted whatever their end.
    assert h.call("restart", ids=["ok"])["results"] == {"ok": "restarted"}
    h.gates.wait_started("ok")
    h.run_to_end("ok")


def test_while_the_service_stops_a_queued_petition_is_cancelled_in_its_record_not_edited(
    tmp_path: Path,
) -> None:
    # The stop puts the queued petitions away for the next start: a cancel of one must
    # be honoured (it must not run then); a release or an edit is refused, saying why,
    # not that it "has ended (QUEUED)".
    first = Harness(tmp_path, max_running=1)
    first.submit("q", schedule={"hold": True})
    first.submit("k", schedule={"hold": True})
    first.submit("one", schedule={"hold": True})
    first.service.begin_stop()
    try:
        for op, fields in (("release", {"ids": ["q"]}), ("edit", {"id": "q", "priority": 3})):
            refused = first.request(op, **fields)
            assert (refused["error"], refused["message"]) == (
                "refused",
                "the service is stopping; its queued petitions stay as they are for its next "
                f"start: {op} them once 'orcha serve' runs again",
            )
        assert first.call("cancel", ids=["q"])["results"] == {"q": "cancelled"}
        assert first.call("cancel", id="one")["id"] == "one"  # the original API's form
        q = first.record("q")
        assert (q["state"], q["message"]) == (
            "CANCELLED",
            "cancelled with 'orcha cancel' while the service was stopping",
        )
    finally:
        first.close()
    second = Harness(tmp_path, max_running=1)
    try:
        assert [second.record(i)["state"] for i in ("q", "one", "k")] == [
            "CANCELLED",
            "CANCELLED",
            "QUEUED",
        ]
    finally:
        second.close()
