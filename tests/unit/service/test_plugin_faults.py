"""A kind cannot hurt the service: whatever it raises, whatever code it returns, its
petition ends FAILED with the reason, and the service keeps serving (see harness)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orcha.errors import ExitCode
from orcha.states import FINISHED
from tests.unit.service.harness import DEADLINE, Harness

FAILED = int(ExitCode.FAILED)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, max_running=1)
    yield harness
    harness.close()


def ended(h: Harness, petition_id: str) -> dict[str, Any]:
    """How the petition ended, by 'wait' (its end event if it is still running)."""
    waiter = h.peer()
    reply = h.call("wait", waiter, ids=[petition_id])
    if reply["pending"]:
        return waiter.expect(event="ended", id=petition_id)
    (summary,) = reply["ended"]
    return dict(summary)


def record_of_ended(h: Harness, petition_id: str) -> dict[str, Any]:
    """The status record of a petition that has ended. 'wait' can tell of an end a moment
    before the record has it (the job's state is set, then recorded): poll for it."""
    deadline = time.monotonic() + DEADLINE
    while (record := h.record(petition_id))["state"] not in {str(s) for s in FINISHED}:
        assert time.monotonic() < deadline, record
        time.sleep(0.005)
    return record


@pytest.mark.parametrize("code", [-1, 256, 300, 2**63, 2**70])
def test_a_code_out_of_range_fails_the_petition_and_says_so(h: Harness, code: int) -> None:
    h.submit("a")
    h.gates.wait_started("a")
    summary = h.run_to_end("a", code)
    message = f"exit code {code} is out of range 0-255"
    assert (summary["state"], summary["code"], summary["message"]) == ("FAILED", FAILED, message)
    record = record_of_ended(h, "a")
    assert (record["state"], record["code"], record["message"]) == ("FAILED", FAILED, message)
    h.submit("next")  # the records' writer is alive: the next petition is recorded too
    h.gates.wait_started("next")
    assert h.run_to_end("next", 255)["code"] == 255  # the edges of the range are kept
    assert record_of_ended(h, "next")["state"] == "FAILED"


@pytest.mark.parametrize(
    "error", [KeyboardInterrupt("typed ^C"), SystemExit(3), GeneratorExit("odd")]
)
def test_a_kind_raising_any_base_exception_fails_its_petition(
    h: Harness, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    gate_run = h.gates.run

    def run(petition_id: str, cancelled: Any) -> int:
        if petition_id == "bad":
            raise error
        return gate_run(petition_id, cancelled)

    monkeypatch.setattr(h.gates, "run", run)
    h.submit("bad")
    message = f"petition bad failed: {type(error).__name__}: {error}"
    summary = ended(h, "bad")
    assert (summary["state"], summary["code"], summary["message"]) == ("FAILED", FAILED, message)
    record = record_of_ended(h, "bad")
    assert (record["state"], record["code"], record["message"]) == ("FAILED", FAILED, message)
    # The runner's thread survived and the service goes on serving.
    h.submit("good")
    h.gates.wait_started("good")
    assert h.run_to_end("good", 0)["state"] == "SUCCEEDED"


@pytest.mark.parametrize("code", [-9, 256, 2**63])
def test_the_original_apis_finish_maps_a_code_out_of_range(code: int) -> None:
    # An original-API action ends its petition with petition.finish(ret): its client
    # reads the integer put on the queue, and the record keeps the same.
    from orcha.service.job import Job
    from tests.unit.test_interfaces import ListQueue, hw

    q = ListQueue()
    petition = hw(q=q)
    job = Job(petition, native=False, token_prefix="t")
    petition.finish(code)
    assert (job.code, job.message) == (FAILED, f"exit code {code} is out of range 0-255")
    assert q.items == [FAILED]


@pytest.mark.parametrize(
    ("returned", "shown"),
    [
        ("hello", "'hello' (str)"),
        (1.5, "1.5 (float)"),
        ([0], "[0] (list)"),
        # A run that forgets its return on some path (after ctx.fail, say): not a success.
        (None, "None (NoneType)"),
    ],
)
def test_a_run_returning_no_int_fails_saying_what_run_must_return(
    h: Harness, monkeypatch: pytest.MonkeyPatch, returned: Any, shown: str
) -> None:
    monkeypatch.setattr(h.gates, "run", lambda petition_id, cancelled: returned)
    h.submit("odd")
    message = (
        f"kind 'gate': run returned {shown}; it must return the exit code, an int in 0-255 "
        "(0: success)"
    )
    summary = ended(h, "odd")
    assert (summary["state"], summary["code"], summary["message"]) == ("FAILED", FAILED, message)
    record = record_of_ended(h, "odd")
    assert (record["state"], record["code"], record["message"]) == ("FAILED", FAILED, message)


def test_a_cancelled_run_returning_none_ends_cancelled_with_no_code(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that returns None once it is cancelled: CANCELLED (no code is known), not
    FAILED for what it returned."""
    gate_run = h.gates.run

    def run(petition_id: str, cancelled: Any) -> Any:
        gate_run(petition_id, cancelled)
        return None

    monkeypatch.setattr(h.gates, "run", run)
    h.submit("c")
    h.gates.wait_started("c")
    h.call("cancel", ids=["c"])
    summary = ended(h, "c")
    assert (summary["state"], summary["code"]) == ("CANCELLED", None)
    assert summary["message"] == "cancelled with 'orcha cancel'"
