"""Arrays in the service (in process, see harness): one request, one transaction, the
%N limit (also after a restart), and array names in other requests."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tests.conftest import wait_for
from tests.unit.service.harness import DEADLINE, FakePeer, Harness


def _array(
    h: Harness, name: str, indices: range | list[int], limit: int | None = None,
    peer: FakePeer | None = None, **submit: Any,
) -> dict[str, Any]:  # fmt: skip
    template = {"kind": "gate", "id": name, "params": {}, "cwd": "/", "env": {},
                "attach": False, **submit}  # fmt: skip
    return h.request(
        "submit_array", peer, submit=template, members=[[i, None] for i in indices], limit=limit
    )


def test_a_hundred_members_with_percent_4_never_run_more_than_4_at_once(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_running=8)
    try:
        lock, running, most = threading.Lock(), [0], [0]
        gate = h.gates.run

        def counted(petition_id: str, cancelled: threading.Event) -> int:
            if not petition_id.startswith("arr_"):
                return gate(petition_id, cancelled)
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            try:
                return gate(petition_id, cancelled)
            finally:
                with lock:
                    running[0] -= 1

        h.gates.run = counted  # type: ignore[method-assign]
        reply = _array(h, "arr", range(1, 101), limit=4, params={"out": "member {}\n"})
        assert reply["ok"] is True, reply
        assert reply["name"] == "arr"
        assert reply["ids"] == [f"arr_{i}" for i in range(1, 101)]
        h.gates.wait_started("arr_4")
        held = h.record("arr_5")
        assert held["state"] == "QUEUED"
        assert held["waiting"] == "array arr runs 4 of at most 4 at once"
        # Other petitions are not held back by the array's limit.
        h.submit("other")
        h.gates.wait_started("other")
        h.gates.open("other")
        for k in range(100):
            with h.gates._cond:
                assert h.gates._cond.wait_for(lambda k=k: len(h.gates.started) > k + 1, DEADLINE)
                member = [i for i in h.gates.started if i != "other"][k]
            h.gates.open(member)
        h.wait_ended(*reply["ids"])
        assert most[0] == 4
        members = h.call("status", ids=["arr"])["petitions"]
        assert [m["id"] for m in members] == reply["ids"]
        assert {m["state"] for m in members} == {"SUCCEEDED"}
        assert h.service.store is not None
        record = h.service.store.named("arr_7", 0)
        assert record is not None
        assert (record["array"], record["array_index"], record["array_limit"]) == ("arr", 7, 4)
        assert record["env"]["ORCHA_ARRAY_INDEX"] == "7"
        assert record["env"]["ORCHA_ARRAY_COUNT"] == "100"
        assert record["params"] == {"out": "member 7\n"}
        assert h.call("logs", id="arr_7")["output"] == [["stdout", "member 7\n"]]
    finally:
        h.close()


def test_an_array_is_taken_whole_or_not_at_all(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_running=1)
    try:
        h.submit("arr_3")  # a member's ID is taken
        reply = _array(h, "arr", range(1, 5))
        assert reply["ok"] is False and reply["error"] == "duplicate", reply
        assert "arr_3" in reply["message"]
        assert h.call("status", ids=[])["petitions"][-1]["id"] == "arr_3"  # nothing else
        bad = h.request("submit_array", submit={"kind": "gate", "id": "x"}, members=[])
        assert bad["error"] == "refused" and bad["message"].startswith("invalid array: ")
        twice = h.request(
            "submit_array", submit={"kind": "gate", "id": "x"}, members=[[1, None], [1, None]]
        )
        assert twice["message"] == "invalid array: index 1 is given twice"
        nameless = _array(h, "", [1, 2])
        assert nameless["name"] == "array1" and nameless["ids"] == ["array1_1", "array1_2"]
    finally:
        h.close()


def test_array_names_stand_for_their_members(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_running=1)
    try:
        h.submit("first")
        h.gates.wait_started("first")
        _array(h, "arr", [1, 2, 3])
        waiter = h.peer()
        reply = h.call("wait", waiter, ids=["arr"])
        assert reply["pending"] == ["arr_1", "arr_2", "arr_3"]
        assert reply["arrays"] == {"arr": ["arr_1", "arr_2", "arr_3"]}
        paused = h.call("pause", ids=["arr"])["results"]
        assert paused == {"arr_1": "paused", "arr_2": "paused", "arr_3": "paused"}
        assert h.record("arr_2")["paused"] is True
        watcher = h.peer()
        h.call("watch", watcher, ids=["arr"])
        for member in ("arr_1", "arr_2", "arr_3"):
            watcher.expect(event="state", petition=member)
        resumed = h.call("resume", ids=["arr"])["results"]
        assert resumed == {"arr_1": "resumed", "arr_2": "resumed", "arr_3": "resumed"}
        assert h.record("arr_2")["paused"] is False
        cancelled = h.call("cancel", ids=["arr"])["results"]
        assert cancelled == {"arr_1": "cancelled", "arr_2": "cancelled", "arr_3": "cancelled"}
        for member in ("arr_1", "arr_2", "arr_3"):
            waiter.expect(event="ended", id=member)
        # Its members have all ended: nothing of it is left to pause or cancel.
        for verb in ("pause", "cancel"):
            assert h.call(verb, ids=["arr"])["results"] == {
                "arr": "array 'arr' has no queued or running petition"
            }
        # A newer petition with the array's very name wins over the array.
        h.gates.open("first")
        h.wait_ended("first")
        h.submit("arr")
        assert [p["id"] for p in h.call("status", ids=["arr"])["petitions"]] == ["arr"]
    finally:
        h.close()


def test_a_name_belongs_to_one_queued_petition_or_array(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_running=1)
    try:
        h.submit("sh1", schedule={"hold": True})
        reply = _array(h, "sh1", [1, 2], schedule={"hold": True})
        assert (reply["error"], reply["message"]) == ("duplicate", (
            "a petition with ID 'sh1' is already queued or running; choose another ID or "
            "wait for it to finish"
        ))  # fmt: skip
        assert _array(h, "dupa", [1, 2], schedule={"hold": True})["ok"]
        array_taken = (
            "array 'dupa' has petitions queued or running; choose another ID or wait for "
            "them to finish"
        )
        reply = h.submit("dupa", schedule={"hold": True})
        assert (reply["error"], reply["message"]) == ("duplicate", array_taken)
        reply = _array(h, "dupa", [3, 4])  # another array of that name too
        assert (reply["error"], reply["message"]) == ("duplicate", array_taken)
        assert [p["id"] for p in h.call("status", ids=["sh1", "dupa"])["petitions"]] == [
            "sh1", "dupa_1", "dupa_2",
        ]  # fmt: skip
        # A nameless array is not given the name of a queued petition.
        h.submit("array1", schedule={"hold": True})
        assert _array(h, "", [1])["name"] == "array2"
        # Once the array's members have ended, its name is free.
        h.call("cancel", ids=["dupa"])
        h.wait_ended("dupa_1", "dupa_2")
        assert h.submit("dupa", schedule={"hold": True})["ok"]
    finally:
        h.close()


def test_cancelling_an_array_leaves_its_ended_members_out_quietly(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_running=1)
    try:
        _array(h, "arr", [1, 2, 3])
        h.gates.wait_started("arr_1")
        h.gates.open("arr_1")
        h.wait_ended("arr_1")
        h.gates.wait_started("arr_2")
        cancelled = h.call("cancel", ids=["arr"])["results"]
        assert cancelled == {"arr_2": "cancelled", "arr_3": "cancelled"}
        states = {m["id"]: m["state"] for m in h.call("status", ids=["arr"])["petitions"]}
        assert states == {"arr_1": "SUCCEEDED", "arr_2": "CANCELLED", "arr_3": "CANCELLED"}
        # A member named on its own is still said to have ended.
        again = h.call("cancel", ids=["arr_1", "arr"])["results"]
        assert again == {
            "arr_1": "petition 'arr_1' has already ended (SUCCEEDED)",
            "arr": "array 'arr' has no queued or running petition",
        }
    finally:
        h.close()


def test_editing_an_array_edits_its_queued_members_all_checked_first(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_running=1)
    try:
        _array(h, "arr", [1, 2, 3, 4])
        h.gates.wait_started("arr_1")
        h.submit("other")  # queued behind the array, until the edit puts the array behind it
        # One member can never meet the change (its own dependency): none is changed.
        refused = h.request("edit", id="arr", changes={"after": ["arr_3"]})
        assert refused["error"] == "refused", refused
        assert [h.record(m)["priority"] for m in ("arr_2", "arr_3", "arr_4")] == [0, 0, 0]
        reply = h.call("edit", id="arr", priority=5, changes={"timeout": 60})
        # The running member is left as it is, quietly.
        assert {k: reply[k] for k in ("id", "priority", "schedule", "edited")} == {
            "id": "arr", "priority": 5, "schedule": {"timeout": 60.0},
            "edited": ["arr_2", "arr_3", "arr_4"],
        }  # fmt: skip
        for member in ("arr_2", "arr_3", "arr_4"):
            record = h.record(member)
            assert (record["priority"], record["schedule"]) == (5, {"timeout": 60.0})
        assert h.record("arr_1")["priority"] == 0
        h.run_to_end("arr_1")
        h.gates.wait_started("other")  # the edited members now come after it
        assert h.record("arr_2")["state"] == "QUEUED"
        h.call("cancel", ids=["arr"])
        h.run_to_end("other")
        reply = h.request("edit", id="arr", priority=1)
        assert (reply["error"], reply["message"]) == (
            "no_petition",
            "array 'arr' has no queued petition; only a queued one can be edited",
        )
    finally:
        h.close()


def test_restarting_an_array_restarts_its_ended_members_or_its_failed_ones(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, max_running=2)
    try:
        _array(h, "arr", [1, 2, 3])
        for member, code in (("arr_1", 0), ("arr_2", 3)):
            h.gates.wait_started(member)
            h.gates.open(member, code)
            h.wait_ended(member)
        h.gates.wait_started("arr_3")  # still running: left out quietly
        first = h.record("arr_2")["seq"]
        reply = h.call("restart", ids=["arr"], failed=True)
        assert reply["results"] == {"arr_2": "restarted"}
        assert [r["restart_of"] for r in reply["restarted"]] == [first]
        h.gates.wait_started("arr_2")  # under its own name
        h.gates.open("arr_2", 0)
        h.wait_ended("arr_2")
        # Its newest run succeeded: nothing failed is left to restart.
        assert h.call("restart", ids=["arr"], failed=True)["results"] == {
            "arr": "array 'arr' has no failed petition to restart"
        }
        h.gates.open("arr_3", 0)
        h.wait_ended("arr_3")
        reply = h.call("restart", ids=["arr"])  # every member has ended: all again
        assert reply["results"] == dict.fromkeys(["arr_1", "arr_2", "arr_3"], "restarted")
        # A member named on its own is refused as before while it is queued or running.
        refused = h.request("restart", ids=["arr_1"])
        assert refused["error"] == "duplicate", refused
        h.call("cancel", ids=["arr"])
    finally:
        h.close()


def test_the_percent_limit_holds_again_after_a_restart(tmp_path: Path) -> None:
    first = Harness(tmp_path, max_running=4)
    first.call("pause", all=True)
    assert _array(first, "arr", range(1, 6), limit=2)["ok"] is True
    first.service.begin_stop()
    first.close()
    second = Harness(tmp_path, max_running=4)
    try:
        second.call("resume", all=True)
        second.gates.wait_started("arr_2")
        assert second.record("arr_3")["waiting"] == "array arr runs 2 of at most 2 at once"
        assert second.service.scheduler.running_count == 2
        second.run_to_end("arr_1")
        second.gates.wait_started("arr_3")
        assert second.service.scheduler.running_count == 2
    finally:
        second.close()


def test_an_attached_array_ends_with_its_client(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_running=1)
    try:
        client = h.peer()
        assert _array(h, "arr", [1, 2], attach=True)["ok"] is True  # by h.client
        other = _array(h, "keep", [1])  # detached
        assert other["ok"] is True
        h.service.peer_closed(h.client)
        h.wait_ended("arr_1", "arr_2")
        assert h.record("arr_1")["state"] == "CANCELLED"
        # The freed slot goes to keep_1 just after the members' ends are announced.
        assert wait_for(
            lambda: h.call("status", client, ids=["keep_1"])["petitions"][0]["state"] == "RUNNING"
        )
    finally:
        h.client = h.peer()
        h.close()


def test_nameless_arrays_submitted_at_once_get_names_of_their_own(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_running=1)
    try:
        store = h.service.store
        assert store is not None
        names, meet = store.array_names, threading.Barrier(2, timeout=1.0)

        def side_by_side() -> set[str]:
            # Both would look for a free name before either's members are recorded: with
            # the naming serialised, the second never gets here while the first waits.
            taken = names()
            try:
                meet.wait()
            except threading.BrokenBarrierError:
                pass
            return taken

        store.array_names = side_by_side  # type: ignore[method-assign]
        replies: list[dict[str, Any]] = []
        peers = [h.peer(), h.peer()]
        threads = [
            threading.Thread(target=lambda p=p: replies.append(_array(h, "", [1], peer=p)))
            for p in peers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE)
        assert all(r["ok"] for r in replies), replies
        assert sorted(r["name"] for r in replies) == ["array1", "array2"]
    finally:
        h.close()


def test_a_later_petition_named_like_a_member_is_not_that_member(tmp_path: Path) -> None:
    # 'sq_1' submitted on its own after the array 'sq' is not its member: an array's
    # name stands for its members' records (and the runs 'restart' made of them).
    h = Harness(tmp_path, max_running=2)
    try:
        _array(h, "sq", [1, 2])
        for member in ("sq_1", "sq_2"):
            h.run_to_end(member)
        members = [p["seq"] for p in h.call("status", ids=["sq"])["petitions"]]
        h.submit("sq_1", schedule={"hold": True})  # unrelated, queued
        # The member whose ID it took by its record number ('orcha logs sq' reads these).
        assert h.call("status", ids=["sq"])["arrays"] == {"sq": [str(members[0]), "sq_2"]}
        assert h.call("cancel", ids=["sq"])["results"] == {
            "sq": "array 'sq' has no queued or running petition"
        }
        assert h.call("pause", ids=["sq"])["results"] == {
            "sq": "array 'sq' has no queued or running petition"
        }
        assert h.request("edit", id="sq", priority=3)["error"] == "no_petition"
        assert h.call("release", ids=["sq"])["results"] == {
            "sq": "array 'sq' has no held or delayed petition"
        }
        watcher = h.peer()
        h.call("watch", watcher, ids=["sq"])  # its members' ends, not the other's state
        assert [(f["event"], f["petition"]) for f in watcher.frames] == [
            ("finished", "sq_1"),
            ("finished", "sq_2"),
        ]
        h.call("release", ids=["sq_1"])
        h.run_to_end("sq_1", 3)  # the unrelated one fails
        assert len(watcher.frames) == 2  # and the watcher of 'sq' heard nothing of it
        assert [p["seq"] for p in h.call("status", ids=["sq"])["petitions"]] == members
        waited = h.call("wait", h.peer(), ids=["sq"])
        assert [(e["id"], e["code"]) for e in waited["ended"]] == [("sq_1", 0), ("sq_2", 0)]
        handles = h.call("follow", h.peer(), ids=["sq"])["handles"]
        assert len(handles) == 2 and "sq_2" in handles
        assert h.call("restart", ids=["sq"], failed=True)["results"] == {
            "sq": "array 'sq' has no failed petition to restart"
        }
        again = h.call("restart", ids=["sq"])["restarted"]
        assert [r["restart_of"] for r in again] == members
        # Now the array's members are those new runs.
        waiter = h.peer()
        assert len(h.call("wait", waiter, ids=["sq"])["pending"]) == 2
        for run in again:
            h.gates.open(run["id"], 0)
            waiter.expect(event="ended", id=run["id"])
        assert h.call("clean", ids=["sq"], older_than=None)["removed"] == 2
        unrelated = h.record("sq_1")
        assert (unrelated["state"], unrelated["code"]) == ("FAILED", 3)
        # Nor is one queued under a member's name a live member: 'sq' is free.
        h.submit("sq_2", schedule={"hold": True})
        assert h.submit("sq", schedule={"hold": True})["ok"] is True
    finally:
        h.close()
