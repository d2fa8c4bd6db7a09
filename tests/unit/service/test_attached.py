"""What goes between an attached client and its petition besides output, in process:
the petition's stdin (operation ``stdin``) and why it waits (``Queued`` items)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orcha.defaults import STDIN_WINDOW_BYTES
from orcha.service.job import End, Queued, Started
from orcha.states import State
from tests.unit.service.harness import DEADLINE, Harness


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, max_running=1)
    yield harness
    harness.close()


def test_stdin_is_kept_within_the_window_and_dropped_once_it_ended(h: Harness) -> None:
    reply = h.submit("fed", attach=True, stdin=True)
    handle = reply["handle"]
    h.gates.wait_started("fed")
    assert h.call("stdin", handle=handle, data=b"abc")["buffered"] == 3
    refused = h.request("stdin", handle=handle, data=b"x" * STDIN_WINDOW_BYTES)
    assert (refused["ok"], refused["error"]) == (False, "refused")
    assert "window" in refused["message"]
    job = h.service.scheduler.get("fed")
    assert job is not None and job.stdin is not None
    feed = job.stdin
    h.gates.open("fed")
    items = h.client.read_until_end(handle)
    assert isinstance(items[-1], End)
    assert feed.closed  # its end closed it: nothing more is kept
    # Input still in flight when the end was read is dropped, not refused.
    assert h.call("stdin", handle=handle, data=b"late")["buffered"] == 0


def test_stdin_is_refused_for_a_petition_submitted_without_it(h: Harness) -> None:
    handle = h.submit("plain", attach=True)["handle"]
    refused = h.request("stdin", handle=handle, data=b"x")
    assert (refused["ok"], refused["error"]) == (False, "refused")
    assert "/dev/null" in refused["message"]
    refused = h.request("submit", id="x", cwd="/", env={}, attach=False, kind="gate",
                        params={}, stdin=True)  # fmt: skip
    assert (refused["ok"], refused["error"]) == (False, "refused")


def test_a_waiting_attached_petition_is_told_why_before_it_starts(h: Harness) -> None:
    h.submit("first")
    h.gates.wait_started("first")
    handle = h.submit("second", attach=True)["handle"]
    queue = h.client.queues[handle]
    item = queue.get(timeout=DEADLINE)  # a moment after its submission
    assert item == Queued("waiting for a free slot (1/1 CPUs in use)")
    h.gates.open("first")
    h.gates.wait_started("second")
    assert isinstance(queue.get(timeout=DEADLINE), Started)
    h.gates.open("second")
    assert isinstance(h.client.read_until_end(handle)[-1], End)


def test_a_stop_cancels_a_queued_petition_whose_client_sends_its_stdin(h: Harness) -> None:
    # Its input lives in the client, which the stop disconnects: kept queued, it would
    # run at the next start on an empty stdin as if that were its input.
    h.submit("first", attach=True)
    h.gates.wait_started("first")
    fed = h.submit("fed", attach=True, stdin=True)["handle"]
    assert h.call("stdin", handle=fed, data=b"1\n2\n", eof=True)["buffered"] == 4
    plain = h.submit("plain", attach=True)["handle"]
    h.service.begin_stop()
    end = h.client.read_until_end(fed)[-1]
    assert isinstance(end, End) and end.state is State.CANCELLED and not end.by_client
    assert "stdin" in end.message and "submit it again" in end.message
    assert "stays queued" in h.client.read_until_end(plain)[-1].message
    h.wait_ended("first", "fed")
    record = h.record("fed")
    assert (record["state"], record["message"]) == ("CANCELLED", end.message)
    assert h.record("plain")["state"] == "QUEUED"


def test_shutdown_counts_as_kept_only_the_queued_petitions_a_stop_keeps(h: Harness) -> None:
    h.submit("first")
    h.gates.wait_started("first")
    h.submit("fed", attach=True, stdin=True)
    h.submit("plain")
    answer = h.call("shutdown")
    assert (answer["running"], answer["queued"]) == (1, 1)  # 'fed' is cancelled, not kept
