"""An array's name in --after (in process, see harness): it stands for every member, as
Slurm's afterok of an array job; a member's own ID keeps naming that member."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.unit.service.harness import DEADLINE, Harness


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, max_running=4)
    yield harness
    harness.close()


def _array(h: Harness, name: str, indices: list[int], **submit: Any) -> dict[str, Any]:
    template = {"kind": "gate", "id": name, "params": {}, "cwd": "/", "env": {},
                "attach": False, **submit}  # fmt: skip
    return h.request(
        "submit_array", submit=template, members=[[i, None] for i in indices], limit=None
    )


def test_after_an_array_starts_once_every_member_succeeded(h: Harness) -> None:
    assert _array(h, "ar", [1, 2, 3])["ok"] is True
    assert h.submit("x", schedule={"after": ["ar"]})["ok"] is True
    assert h.submit("one", schedule={"after": ["ar_3"]})["ok"] is True  # a member
    assert h.record("x")["schedule"]["after"] == ["ar"]
    assert h.record("x")["waiting"] == "after ar (array: 3 of 3 not ended)"
    h.run_to_end("ar_3")
    h.gates.wait_started("one")
    h.run_to_end("ar_1")
    assert h.record("x")["waiting"] == "after ar (array: 1 of 3 not ended)"
    assert h.record("x")["state"] == "QUEUED"
    h.run_to_end("ar_2")
    h.gates.wait_started("x")
    h.run_to_end("x")
    # Ended: a new dependant starts at once.
    assert h.submit("late", schedule={"after": ["ar"]})["ok"] is True
    h.gates.wait_started("late")


def test_after_an_array_fails_when_a_member_fails_after_any_waits_for_all(h: Harness) -> None:
    _array(h, "ar", [1, 2, 3])
    h.submit("x", schedule={"after": ["ar"]})
    h.submit("anyway", schedule={"after_any": ["ar"]})
    h.run_to_end("ar_2", code=3)
    h.wait_ended("x")  # at once: the others are still running
    record = h.record("x")
    assert record["state"] == "FAILED" and record["code"] == 210, record
    assert record["message"] == "dependency ar_2 (array ar) ended FAILED (code 3)"
    assert h.record("anyway")["state"] == "QUEUED"
    h.call("cancel", ids=["ar_1"])
    h.run_to_end("ar_3")
    h.gates.wait_started("anyway")
    # Ended with a member cancelled (the first in order of index): new ones fail at once.
    h.submit("later", schedule={"after": ["ar"]})
    h.wait_ended("later")
    assert h.record("later")["message"] == ("dependency ar_1 (array ar) ended CANCELLED (code 130)")


def test_after_an_array_survives_a_restart_with_members_partly_ended(tmp_path: Path) -> None:
    first = Harness(tmp_path, max_running=2)
    _array(first, "ar", [1, 2, 3], schedule={"hold": True})
    first.submit("x", schedule={"after": ["ar"]})
    first.call("release", ids=["ar_1"])
    first.run_to_end("ar_1")
    first.service.begin_stop()
    first.close()
    second = Harness(tmp_path, max_running=2)
    try:
        assert second.record("x")["waiting"] == "after ar (array: 2 of 3 not ended)"
        second.call("release", ids=["ar_2", "ar_3"])
        second.run_to_end("ar_2")
        second.run_to_end("ar_3")
        second.gates.wait_started("x")
        assert second.service.store is not None
        second.service.store.flush()
        assert second.service.store.named("x", 0)["deps_met"] == 1  # type: ignore[index]
    finally:
        second.close()


def test_an_array_whose_members_were_all_cleaned_is_like_a_cleaned_petition(h: Harness) -> None:
    _array(h, "ar", [1, 2])
    h.run_to_end("ar_1")
    h.run_to_end("ar_2")
    h.call("clean", ids=["ar"])
    reply = h.request("submit", id="x", kind="gate", params={}, cwd="/", env={},
                      attach=False, schedule={"after": ["ar"]})  # fmt: skip
    assert reply["error"] == "no_petition", reply
    assert reply["message"] == "there is no petition 'ar' to run after; see 'orcha status'"


def test_edit_after_an_array_and_a_cycle_through_it(h: Harness) -> None:
    _array(h, "ar", [1, 2], schedule={"hold": True})
    h.submit("x", schedule={"hold": True})
    assert h.call("edit", id="x", changes={"after": ["ar"]})["schedule"]["after"] == ["ar"]
    reply = h.request("edit", id="ar_2", changes={"after": ["x"]})
    assert reply["error"] == "refused", reply
    assert "(ar_2 -> x -> ar -> ar_2)" in reply["message"], reply


def test_after_an_array_still_being_recorded_waits_for_its_members(h: Harness) -> None:
    store = h.service.store
    assert store is not None
    recording, go = threading.Event(), threading.Event()
    add_many = store.add_many

    def slow(*args: Any, **kwargs: Any) -> Any:
        recording.set()
        assert go.wait(DEADLINE)
        return add_many(*args, **kwargs)

    store.add_many = slow  # type: ignore[method-assign]
    done: list[dict[str, Any]] = []
    submitter = threading.Thread(target=lambda: done.append(_array(h, "ar", [1, 2])))
    submitter.start()
    assert recording.wait(DEADLINE)
    replies: list[dict[str, Any]] = []
    dependant = threading.Thread(
        target=lambda: replies.append(h.submit("x", schedule={"after": ["ar"]}))
    )
    dependant.start()
    assert wait_for(lambda: "x" in h.service._intake)  # it has taken its ID
    go.set()
    submitter.join(DEADLINE)
    dependant.join(DEADLINE)
    assert done[0]["ok"] is True and replies[0]["ok"] is True, (done, replies)
    assert h.record("x")["waiting"] == "after ar (array: 2 of 2 not ended)"
    h.run_to_end("ar_1")
    h.run_to_end("ar_2")
    h.gates.wait_started("x")


def test_cancelling_all_cancels_a_dependant_of_an_array_before_its_members(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, max_running=1)
    try:
        h.submit("blocker")
        h.gates.wait_started("blocker")
        _array(h, "ar", [1, 2])
        h.submit("x", schedule={"after": ["ar"]})
        results = h.call("cancel", all=True)["results"]
        assert set(results.values()) == {"cancelled"}, results
        h.wait_ended("x")
        assert h.record("x")["state"] == "CANCELLED"  # as asked, not failed by ar_1's end
    finally:
        h.close()


def test_an_array_named_like_an_ended_petition_is_what_after_means_then(h: Harness) -> None:
    h.submit("ar")
    h.run_to_end("ar")
    h.submit("d", schedule={"after": ["ar"]})  # the petition ar: met at once
    h.gates.wait_started("d")
    _array(h, "ar", [1, 2])  # newer: 'ar' names the array from now on
    h.submit("x", schedule={"after": ["ar"]})
    assert h.record("x")["waiting"] == "after ar (array: 2 of 2 not ended)"
    h.run_to_end("ar_1")
    h.run_to_end("ar_2")
    h.gates.wait_started("x")


def test_a_petition_or_an_array_after_itself_is_refused_at_once(h: Harness) -> None:
    _array(h, "ar", [1])
    h.run_to_end("ar_1")
    began = time.monotonic()
    reply = _array(h, "ar", [1, 2], schedule={"after": ["ar"]})
    assert reply["error"] == "refused", reply
    assert reply["message"] == "array 'ar' cannot run after itself; check --after"
    reply = h.submit("x", schedule={"after": ["x"]})
    assert reply["message"] == "petition 'x' cannot run after itself; check --after"
    assert time.monotonic() - began < 2  # not held up by their own recording
