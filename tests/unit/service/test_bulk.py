"""Bulk operations in the service (in process, see harness): cancel by selection or
with a signal, clean by IDs, states, groups and age."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.service.harness import Harness


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, max_running=2)
    yield harness
    harness.close()


def test_cancel_a_selection_takes_the_queued_ones_first(h: Harness) -> None:
    for name, group in (("r1", "g"), ("r2", "h"), ("q1", "g"), ("q2", "h")):
        h.submit(name, schedule={"group": group})
    h.gates.wait_started("r2")
    reply = h.call("cancel", ids=[], groups=["g"], states=[])
    assert list(reply["results"]) == ["q1", "r1"]  # queued first: r1's slot goes to no one
    h.gates.wait_started("q2")  # r1's slot, once it ended
    assert h.gates.started == ["r1", "r2", "q2"]
    reply = h.call("cancel", ids=[], states=["QUEUED"])
    assert reply["results"] == {}
    reply = h.call("cancel", ids=["nope"], all=True)
    assert reply["results"] == {
        "nope": "no petition has ID 'nope'",
        "r2": "cancelled",
        "q2": "cancelled",
    }
    h.wait_ended("r2", "q2")


@pytest.mark.parametrize(
    "how",
    [{"ids": ["p1", "q1", "r1", "x"]}, {"ids": [], "all": True}, {"ids": [], "states": ["QUEUED"]}],
)
def test_petitions_cancelled_together_end_cancelled_whatever_they_run_after(
    h: Harness, how: dict[str, object]
) -> None:
    h.submit("p1", schedule={"hold": True})
    h.submit("q1", schedule={"after": ["p1"]})
    h.submit("r1", schedule={"after": ["q1"], "after_any": ["p1"]})
    h.submit("x", schedule={"after": ["r1"], "hold": True})
    reply = h.call("cancel", **{"states": [], "groups": [], **how})
    assert sorted(reply["results"]) == ["p1", "q1", "r1", "x"]
    assert set(reply["results"].values()) == {"cancelled"}
    h.wait_ended("p1", "q1", "r1", "x")
    for name in ("p1", "q1", "r1", "x"):
        record = h.record(name)
        assert (record["state"], record["code"]) == ("CANCELLED", None), record
    # Cancelled, not failed: 'restart --failed' leaves them alone.
    assert h.call("restart", failed=True)["results"] == {}


def test_cancel_with_a_signal_signals_running_trees_only(h: Harness) -> None:
    h.submit("a")
    h.submit("b")
    h.submit("c")  # queued: 2 slots
    h.gates.wait_started("b")
    reply = h.call("cancel", ids=["a", "c"], signal=int(signal.SIGUSR1))
    assert reply["results"] == {
        "a": "signalled",
        "c": "petition 'c' is queued, not running; no SIGUSR1 sent",
    }
    assert [sig for _, _, sig in h.procs.signalled] == [signal.SIGUSR1]
    assert h.record("a")["state"] == "RUNNING"  # signalled, not cancelled
    h.call("cancel", ids=[], all=True, states=["RUNNING"], signal=int(signal.SIGHUP))
    assert [sig for _, _, sig in h.procs.signalled][1:] == [signal.SIGHUP] * 2


def test_clean_by_ids_states_groups_and_age(h: Harness) -> None:
    h.submit("ok", schedule={"group": "g"})
    h.run_to_end("ok")
    h.submit("bad", schedule={"group": "g"})
    h.run_to_end("bad", 3)
    h.submit("other")
    h.run_to_end("other", 4)
    h.submit("live")
    h.gates.wait_started("live")
    reply = h.call("clean", ids=["ok", "live", "nope"], older_than=None)
    assert reply["removed"] == 1
    assert reply["results"] == {
        "live": "petition 'live' is running; cancel it first",
        "nope": "no petition has ID 'nope'",
    }
    assert h.call("clean", states=["FAILED"], groups=["g"], older_than=60)["removed"] == 0
    h.clock.advance(120)
    assert h.call("clean", states=["FAILED"], groups=["g"], older_than=60)["removed"] == 1
    assert [p["id"] for p in h.call("status", ids=[])["petitions"]] == ["other", "live"]
    assert h.call("clean", groups=["default"])["removed"] == 1  # 'other'; 'live' runs
