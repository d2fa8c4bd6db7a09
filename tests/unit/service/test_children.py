"""Child petitions, in process (see harness): a kind's ``ctx.submit``, the records that
link children to their parent, ``status``'s ``parent`` and ``children``, cancelling with
the parent, the loans that keep parents from deadlocking the queue, and the children a
parent's run leaves behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orcha.errors import ExitCode
from orcha.protocol.messages import STDERR, STDOUT
from orcha.service.job import End
from orcha.states import State
from tests.unit.service.harness import Harness

CANCELLED = int(ExitCode.CANCELLED)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, max_running=2)
    yield harness
    harness.close()


def gates(n: int, **child: Any) -> dict[str, Any]:
    """fanout params: ``n`` gate children."""
    return {"children": [dict(child) for _ in range(n)]}


def run_children(h: Harness, codes: dict[str, int]) -> None:
    """Open each child's gate with its code, in order, as each starts."""
    for petition_id, code in codes.items():
        h.gates.wait_started(petition_id)
        h.gates.open(petition_id, code)


def test_children_get_ids_records_and_status_fields(h: Harness) -> None:
    params = {"children": [{"params": {"out": "one\n"}}, {}], "stream": True}
    assert h.submit("p", attach=True, kind="fanout", params=params)["ok"]
    run_children(h, {"p.1": 0, "p.2": 3})
    items = h.client.read_until_end(1)
    end = items[-1]
    assert isinstance(end, End)
    assert (end.state, end.code, end.outcome) == (State.FAILED, 3, {"codes": [0, 3]})
    assert (STDOUT, b"one\n") in items  # the child's output, streamed by its parent
    parent, one, two = h.record("p"), h.record("p.1"), h.record("p.2")
    assert parent["parent"] is None and parent["children"] == ["p.1", "p.2"]
    assert (one["parent"], one["state"], one["kind"]) == ("p", "SUCCEEDED", "gate")
    assert (two["parent"], two["state"], two["code"]) == ("p", "FAILED", 3)
    assert "children" not in one
    # Without IDs too: every parent with its children, every child with its parent.
    rows = {r["id"]: r for r in h.call("status")["petitions"]}
    assert rows["p"]["children"] == ["p.1", "p.2"] and rows["p.2"]["parent"] == "p"


def test_a_child_goes_through_the_same_intake(h: Harness) -> None:
    params = {
        "children": [
            {"id": "mine", "requests": {"priority": 5, "group": "kids", "timeout": "1m"}},
            {"kind": "nope"},
        ]
    }
    assert h.submit("p", attach=True, kind="fanout", params=params)["ok"]
    items = h.client.read_until_end(1)
    end = items[-1]
    assert isinstance(end, End) and end.state is State.FAILED
    assert "unknown" in (end.message or "").lower() and "nope" in (end.message or "")
    # The first child was queued (then cancelled when its parent's run raised).
    mine = h.record("mine")
    assert (mine["parent"], mine["priority"], mine["state"]) == ("p", 5, "CANCELLED")
    assert mine["schedule"] == {"group": "kids", "timeout": 60.0}
    assert h.record("p")["children"] == ["mine"]


def test_a_failing_child_does_not_fail_its_parent_by_itself(h: Harness) -> None:
    assert h.submit("p", kind="fanout", params={**gates(1), "lenient": True})["ok"]
    run_children(h, {"p.1": 7})
    h.wait_ended("p")
    assert h.record("p.1")["code"] == 7
    parent = h.record("p")
    assert (parent["state"], parent["code"], parent["outcome"]) == ("SUCCEEDED", 0, {"codes": [7]})


def test_cancelling_the_parent_cancels_its_children_first(h: Harness) -> None:
    assert h.submit("p", kind="fanout", params=gates(3))["ok"]
    h.gates.wait_started("p.1")  # in the free slot
    h.gates.wait_started("p.2")  # in p's loan (p waits on p.1); p.3 waits
    h.call("cancel", ids=["p"])
    h.wait_ended("p", "p.1", "p.2", "p.3")
    parent = h.record("p")
    assert parent["state"] == "CANCELLED"
    for kid in ("p.1", "p.2", "p.3"):
        record = h.record(kid)
        assert (record["state"], record["message"]) == ("CANCELLED", "its parent p was cancelled")
        assert record["ended"] <= parent["ended"]


def test_a_cancelled_child_gives_its_parent_the_code_orcha_run_would(h: Harness) -> None:
    assert h.submit("p", kind="fanout", params={**gates(2), "lenient": True})["ok"]
    h.gates.wait_started("p.2")  # in p's loan: p waits on p.1
    h.call("cancel", ids=["p.2"])
    h.gates.open("p.1", 0)
    h.wait_ended("p")
    assert h.record("p")["outcome"] == {"codes": [0, CANCELLED]}


def test_parents_filling_every_slot_do_not_deadlock(h: Harness) -> None:
    # Both parents start in one admission walk: submitted one after the other, a's
    # first child could take the free slot before b is submitted (fair, but then b
    # and its children wait for a's, and nothing fills every slot with parents).
    h.call("pause", all=True)
    for parent in ("a", "b"):
        assert h.submit(parent, kind="fanout", params=gates(3))["ok"]
    assert h.submit("other")["ok"]  # queued behind the parents' children
    h.call("resume", all=True)
    for n in (1, 2, 3):
        for parent in ("a", "b"):
            child = f"{parent}.{n}"
            h.gates.wait_started(child)
            assert h.service.scheduler.machines[0].used_slots == 2  # loans, not new slots
            if child != "b.3":  # (a has ended by then: its slot went to whoever was next)
                assert h.record("other")["state"] == "QUEUED"  # loans go to children only
            h.gates.open(child, n)
    h.wait_ended("a", "b")
    for parent in ("a", "b"):
        record = h.record(parent)
        assert (record["state"], record["code"], record["outcome"]) == (
            "FAILED", 3, {"codes": [1, 2, 3]}
        )  # fmt: skip
    run_children(h, {"other": 0})
    h.wait_ended("other")


def test_a_parent_queued_behind_another_s_children_gets_its_turn(h: Harness) -> None:
    # The interleaving the test above rules out, made certain: a's first child takes the
    # free slot before b is submitted, its second a's loan. b then waits for a slot, and
    # gets the first one freed; its child runs in b's loan.
    assert h.submit("a", kind="fanout", params=gates(2))["ok"]
    h.gates.wait_started("a.2")  # a.1 in the free slot, a.2 in a's loan
    assert h.submit("b", kind="fanout", params=gates(1))["ok"]
    assert h.record("b")["state"] == "QUEUED"
    run_children(h, {"a.1": 0})
    h.gates.wait_started("b.1")  # b took a.1's slot, then lent it to b.1
    assert h.gates.started == ["a.1", "a.2", "b.1"]
    assert h.service.scheduler.machines[0].used_slots == 2
    run_children(h, {"a.2": 0, "b.1": 0})
    h.wait_ended("a", "b")
    assert [h.record(p)["state"] for p in ("a", "b")] == ["SUCCEEDED", "SUCCEEDED"]


def test_children_left_running_when_the_run_returns_are_cancelled(h: Harness) -> None:
    assert h.submit("p", attach=True, kind="fanout", params={**gates(2), "leave": True})["ok"]
    items = h.client.read_until_end(1)
    end = items[-1]
    assert isinstance(end, End) and (end.state, end.code) == (State.SUCCEEDED, 0)
    # Its end came after theirs.
    assert [c.state for c in h.fanout.children["p"]] == ["CANCELLED", "CANCELLED"]
    notices = b"".join(data for stream, data in (i for i in items if isinstance(i, tuple))
                       if stream == STDERR)  # fmt: skip
    assert b"orcha: p returned before its child petition(s) p.1, p.2 ended" in notices
    # The parent waited for its children's states; their records follow their announced
    # ends, which may come a moment after the parent's.
    h.wait_ended("p.1", "p.2")
    for kid in ("p.1", "p.2"):
        record = h.record(kid)
        assert (record["state"], record["message"]) == ("CANCELLED", "its parent p returned first")


def test_a_stopping_service_does_not_keep_queued_children(h: Harness) -> None:
    assert h.submit("p", kind="fanout", params=gates(3))["ok"]
    h.gates.wait_started("p.2")  # p.1 in the free slot, p.2 in the loan, p.3 queued
    h.service.begin_stop()
    h.wait_ended("p", "p.1", "p.2", "p.3")
    assert h.record("p.3")["state"] == "CANCELLED"
    assert h.service.store is not None
    assert [r["id"] for r in h.service.store.live(str(h.settings.address))] == []


def test_a_parent_that_times_out_cancels_its_children(h: Harness) -> None:
    reply = h.submit("p", kind="fanout", params=gates(2), schedule={"timeout": 0.2})
    assert reply["ok"]
    h.wait_ended("p", "p.1", "p.2")  # nobody opens a gate: the timeout ends it all
    parent = h.record("p")
    assert (parent["state"], parent["code"]) == ("FAILED", int(ExitCode.TIMEOUT))
    for kid in ("p.1", "p.2"):
        record = h.record(kid)
        assert (record["state"], record["message"]) == ("CANCELLED", "its parent p timed out")


def test_a_child_id_in_use_is_refused_and_the_parent_hears_why(h: Harness) -> None:
    assert h.submit("taken")["ok"]
    params = {"children": [{"id": "taken"}]}
    assert h.submit("p", attach=True, kind="fanout", params=params)["ok"]
    end = h.client.read_until_end(1)[-1]
    assert isinstance(end, End) and end.state is State.FAILED
    assert "taken" in (end.message or "")
    assert "children" not in h.record("p")
    assert h.record("taken")["parent"] is None


def test_a_parent_that_asked_for_no_child_closes_without_the_schedulers_lock() -> None:
    """The end of a petition that never submitted a child (most) closes its family
    without taking the scheduler's lock; a child asked for afterwards is refused."""
    import threading
    from types import SimpleNamespace

    from orcha.errors import PetitionError
    from orcha.service.children import Family

    lock = threading.RLock()
    service = SimpleNamespace(scheduler=SimpleNamespace(lock=lock))
    parent = SimpleNamespace(id="p", cancel_requested=False)
    family = Family(service, parent)  # type: ignore[arg-type]
    taken = threading.Event()
    holder = threading.Thread(target=lambda: (lock.acquire(), taken.set()), daemon=True)
    holder.start()  # another thread holds the lock for good: cancel_left must not wait
    assert taken.wait(10)
    family.cancel_left()
    with pytest.raises(PetitionError, match="cannot submit children"):
        family.check_open()
