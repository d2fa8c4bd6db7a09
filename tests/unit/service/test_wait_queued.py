"""Waiting for queued array members (in process, see harness): a ``wait`` subscribes
to compact queue entries by record number and builds no Job for them (a wait on a
100,000-member array keeps the queue compact), and every end reaches the waiter as it
did: cancelled, failed (or by a dependency), run, ended before the wait, a waiter that goes
away, a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orcha.errors import ExitCode
from orcha.service.job import Job
from orcha.service.queued import Queued
from tests.unit.service.harness import FakePeer, Harness


def _array(h: Harness, name: str, n: int, **submit: Any) -> list[str]:
    template = {"kind": "gate", "id": name, "params": {}, "cwd": "/", "env": {},
                "attach": False, **submit}  # fmt: skip
    reply = h.call("submit_array", submit=template, members=[[i, None] for i in range(1, n + 1)])
    return list(reply["ids"])


def _held(h: Harness, ids: list[str]) -> list[type[Any]]:
    held = [h.service.scheduler.peek(i) for i in ids]
    return [type(j) for j in held]


def _ends(peer: FakePeer) -> dict[str, tuple[str, int | None]]:
    return {f["id"]: (f["state"], f["code"]) for f in peer.frames if f.get("event") == "ended"}


def test_a_wait_on_queued_members_builds_no_job_and_hears_every_end(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_running=1)
    try:
        h.submit("blocker")
        h.gates.wait_started("blocker")
        ids = _array(h, "m", 4)
        assert _held(h, ids) == [Queued] * 4
        waiter = h.peer()
        reply = h.call("wait", waiter, ids=["m"])
        assert (reply["pending"], reply["ended"], reply["arrays"]) == (ids, [], {"m": ids})
        assert _held(h, ids) == [Queued] * 4  # waited for by record number, not built
        seqs = {h.record(i)["seq"] for i in ids}
        assert waiter.subscribed == seqs
        # Two waiters of one member, and a wait given the same member twice.
        other = h.peer()
        last = str(h.record("m_4")["seq"])
        assert h.call("wait", other, ids=["m_4", last, "m_4"])["pending"] == ["m_4"]
        assert _held(h, ids) == [Queued] * 4
        # Cancelled while queued (built to be cancelled): its end by record number.
        assert h.call("cancel", ids=["m_2"])["results"] == {"m_2": "cancelled"}
        waiter.expect(event="ended", id="m_2")
        # Run (built when admitted), failed, and a member that ends before a new wait.
        h.run_to_end("blocker")
        h.gates.wait_started("m_1")
        h.run_to_end("m_1", 3)
        late = h.peer()
        reply = h.call("wait", late, ids=["m"])
        assert reply["pending"] == ["m_3", "m_4"]
        states = {e["id"]: e["state"] for e in reply["ended"]}
        assert states == {"m_1": "FAILED", "m_2": "CANCELLED"}
        h.gates.wait_started("m_3")
        assert _held(h, ["m_4"]) == [Queued]
        h.run_to_end("m_3")
        h.gates.wait_started("m_4")
        h.gates.open("m_4")
        for peer in (waiter, other, late):
            peer.expect(event="ended", id="m_4")
        assert _ends(waiter) == {
            "m_1": ("FAILED", 3), "m_2": ("CANCELLED", None), "m_3": ("SUCCEEDED", 0),
            "m_4": ("SUCCEEDED", 0),
        }  # fmt: skip
        assert list(_ends(other)) == ["m_4"] and list(_ends(late)) == ["m_3", "m_4"]
        # Each end once, and nothing kept once all have ended.
        assert len([f for f in waiter.frames if f.get("event") == "ended"]) == 4
        assert waiter.subscribed == other.subscribed == late.subscribed == set()
        assert h.service.events._waiters == {}
    finally:
        h.close()


def test_members_failed_by_their_dependency_end_for_their_waiter(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_running=1)
    try:
        h.submit("first")
        h.gates.wait_started("first")
        ids = _array(h, "d", 2, schedule={"after": ["first"]})
        waiter = h.peer()
        assert h.call("wait", waiter, ids=["d"])["pending"] == ids
        assert _held(h, ids) == [Queued] * 2
        h.run_to_end("first", 1)  # they fail (built to fail), never run
        waiter.expect(event="ended", id="d_2")
        code = int(ExitCode.DEPENDENCY_FAILED)
        assert _ends(waiter) == {"d_1": ("FAILED", code), "d_2": ("FAILED", code)}
        assert waiter.subscribed == set() and h.service.events._waiters == {}
    finally:
        h.close()


def test_a_waiter_that_goes_away_leaves_the_queue_compact_and_no_subscription(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, max_running=1)
    try:
        h.submit("blocker")
        h.gates.wait_started("blocker")
        ids = _array(h, "g", 3)
        gone, stays = h.peer(), h.peer()
        assert h.call("wait", gone, ids=["g"])["pending"] == ids
        assert h.call("follow", stays, ids=["blocker"])["missing"] == []
        assert h.call("wait", stays, ids=["g_1"])["pending"] == ["g_1"]
        h.service.peer_closed(gone)
        assert gone.subscribed == set() and _held(h, ids) == [Queued] * 3
        events = h.service.events
        assert list(events._waiters.values()) == [stays]  # g_1's, by its record number
        h.service.peer_closed(stays)  # one followed (a Job), one waited for (an entry)
        assert events._waiters == {} and events._followers == {}
        h.run_to_end("blocker")
        for petition_id in ids:
            h.gates.wait_started(petition_id)
            h.run_to_end(petition_id)
        assert gone.frames == [] and _ends(stays) == {}
    finally:
        h.close()


def test_a_wait_after_a_restart_waits_for_the_restored_entries(tmp_path: Path) -> None:
    first = Harness(tmp_path, max_running=1)
    first.call("pause", all=True)
    ids = _array(first, "r", 2)
    first.service.begin_stop()
    first.close()

    second = Harness(tmp_path, max_running=1)
    try:
        waiter = second.peer()
        assert second.call("wait", waiter, ids=["r"])["pending"] == ids
        assert _held(second, ids) == [Queued] * 2  # restored as entries, still
        second.call("resume", all=True)
        second.gates.wait_started("r_1")
        assert _held(second, ids) == [Job, Queued]
        second.gates.open("r_1", 4)
        second.gates.wait_started("r_2")
        second.gates.open("r_2")
        waiter.expect(event="ended", id="r_2")
        assert _ends(waiter) == {"r_1": ("FAILED", 4), "r_2": ("SUCCEEDED", 0)}
    finally:
        second.close()
