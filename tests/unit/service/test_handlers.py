"""The service's handlers, driven in process through the operations table (see harness).

Every reply the harness gets is checked against the table: only the declared fields, only
the declared errors."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orcha.errors import WIRE_ERRORS, ExitCode, PetitionError
from orcha.protocol import messages
from orcha.protocol.messages import STDOUT
from orcha.protocol.operations import OPERATIONS
from orcha.service.handlers import HANDLERS, MODULES, perform
from orcha.service.job import End, Started
from orcha.states import State
from tests.unit.service.harness import DEADLINE, FakeClock, Harness


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, max_running=1)
    yield harness
    harness.close()


def test_every_operation_has_exactly_one_handler() -> None:
    import importlib
    import pkgutil

    import orcha.service.handlers as package

    found = {
        importlib.import_module(f"{package.__name__}.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
    }
    assert found == set(MODULES)  # every handler module is registered
    assert sum(len(m.HANDLERS) for m in MODULES) == len(HANDLERS)  # no name registered twice
    assert set(HANDLERS) == set(OPERATIONS)


def test_submit_attached_streams_output_then_the_end(h: Harness) -> None:
    reply = h.submit("a", attach=True, params={"out": "hello\n"})
    assert reply == {"re": "submit", "ok": True, "handle": 1, "id": "a", "state": "RUNNING"}
    h.gates.wait_started("a")
    h.gates.open("a", 3)
    items = h.client.read_until_end(1)
    assert isinstance(items[0], Started)
    assert (STDOUT, b"hello\n") in items
    end = items[-1]
    assert isinstance(end, End)
    assert (end.state, end.code, end.by_client) == (State.FAILED, 3, False)
    assert h.record("a")["state"] == "FAILED"


def test_a_duplicate_id_is_refused_with_its_exit_code(h: Harness) -> None:
    assert h.submit("a")["ok"] is True
    reply = h.submit("a")
    assert reply["ok"] is False
    assert WIRE_ERRORS[reply["error"]] == ExitCode.DUPLICATE
    assert "a" in reply["message"]


def test_invalid_requests_are_refused_with_the_tables_words(h: Harness) -> None:
    reply = h.request("submit", kind="gate", id="bad id", params={})
    assert reply["error"] == "refused"
    assert reply["message"].startswith("invalid petition: ")
    reply = h.request("status", ids="a")
    assert reply["message"] == "'ids', 'states' and 'groups' must be lists of strings"
    reply = h.request("pause")
    assert reply["message"] == "invalid request: name petition IDs, groups, or all"
    reply = h.request("nonsense")
    assert reply["re"] == "nonsense" and reply["message"].startswith("unknown operation")
    assert "submit" in reply["message"] and "watch" in reply["message"]


def test_status_says_why_a_petition_waits(h: Harness) -> None:
    h.submit("a")
    h.gates.wait_started("a")
    h.submit("b", priority=5)
    a, b = h.record("a"), h.record("b")
    assert (a["state"], b["state"]) == ("RUNNING", "QUEUED")
    assert "waiting" not in a
    assert "CPU" in b["waiting"], b
    assert b["effective_priority"] == 5.0


def test_aging_improves_a_waiting_petitions_priority_on_the_fake_clock(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_running=1, aging=60.0)
    try:
        h.submit("a")
        h.gates.wait_started("a")
        h.submit("b", priority=5)
        assert h.record("b")["effective_priority"] == 5.0
        h.clock.advance(120)
        assert h.record("b")["effective_priority"] == 3.0
    finally:
        h.close()


def test_cancel_a_queued_and_a_running_petition(h: Harness) -> None:
    h.submit("a")
    h.gates.wait_started("a")
    h.submit("b")
    reply = h.call("cancel", ids=["b", "a", "nope"])
    assert reply["results"] == {
        "b": "cancelled",
        "a": "cancelled",
        "nope": "no petition has ID 'nope'",
    }
    h.wait_ended("a", "b")
    a, b = h.record("a"), h.record("b")
    assert (a["state"], a["message"]) == ("CANCELLED", "cancelled with 'orcha cancel'")
    assert (b["state"], b["message"]) == ("CANCELLED", "cancelled with 'orcha cancel'")
    assert "b" not in h.gates.started
    assert any(token for _, token, _ in h.procs.stopped)  # a's tree was asked to stop
    again = h.call("cancel", ids=["a"])["results"]["a"]
    assert again == "petition 'a' has already ended (CANCELLED)"


def test_cancel_replies_once_the_running_ones_have_ended(h: Harness) -> None:
    # 'orcha cancel build; orcha run build -- ...': the ID is free when cancel returns.
    h.submit("build")
    h.gates.wait_started("build")
    assert h.call("cancel", ids=["build"])["results"] == {"build": "cancelled"}
    assert h.record("build")["state"] == "CANCELLED"
    assert h.service.scheduler.peek("build") is None  # neither queued nor running
    assert h.submit("build")["ok"] is True  # not refused as a duplicate
    h.gates.open("build")
    h.wait_ended("build")
    assert h.record("build")["state"] == "SUCCEEDED"


def test_a_client_that_goes_away_cancels_what_it_submitted(h: Harness) -> None:
    client = h.peer()
    h.submit("a", client, attach=True)
    h.gates.wait_started("a")
    h.service.peer_closed(client)
    h.wait_ended("a")
    assert h.record("a")["state"] == "CANCELLED"
    assert client not in h.service.peers


def test_what_a_client_that_goes_away_submitted_ends_cancelled_in_any_order(
    h: Harness,
) -> None:
    client = h.peer()
    names = [f"p{i}" for i in range(8)]
    h.submit(names[0], client, attach=True, schedule={"hold": True})
    for before, name in itertools.pairwise(names):  # a chain: each after the last
        h.submit(name, client, attach=True, schedule={"after": [before]})
    h.service.peer_closed(client)
    h.wait_ended(*names)
    assert [h.record(name)["state"] for name in names] == ["CANCELLED"] * len(names)


def test_wait_and_watch_deliver_the_events(h: Harness) -> None:
    watcher = h.peer()
    assert h.call("watch", watcher, ids=[]) == {"re": "watch", "ok": True, "missing": []}
    h.submit("a")
    h.gates.wait_started("a")
    waiter = h.peer()
    reply = h.call("wait", waiter, ids=["a", "nope"])
    assert (reply["pending"], reply["missing"]) == (["a"], ["nope"])
    h.gates.open("a")
    ended = waiter.expect(event="ended", id="a")
    assert (ended["state"], ended["code"]) == ("SUCCEEDED", 0)
    watcher.expect(event="finished", petition="a")
    events = [f["event"] for f in watcher.frames if f.get("petition") == "a"]
    assert events == ["submitted", "started", "finished"]
    # Waiting for a petition that has ended answers at once.
    assert h.call("wait", ids=["a"])["ended"][0]["state"] == "SUCCEEDED"


def test_follow_replays_the_log_of_an_ended_petition(h: Harness) -> None:
    h.submit("a", params={"out": "one\n"})
    h.gates.wait_started("a")
    h.run_to_end("a")

    fields, after = perform(h.service, h.client, OPERATIONS["follow"], {"ids": ["a"]})
    assert fields["handles"] == {"a": 1}
    frames = list(after)
    assert frames[0] == messages.output_frame(STDOUT, 1, b"one\n")
    assert messages.decode(frames[1])["event"] == "end"


def test_group_limits_hold_petitions_back(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_running=2)
    try:
        reply = h.call("group", name="g", max_running=1)
        (g,) = [group for group in reply["groups"] if group["name"] == "g"]
        assert g["max_running"] == 1
        h.submit("a", schedule={"group": "g"})
        h.gates.wait_started("a")
        h.submit("b", schedule={"group": "g"})
        assert h.record("b")["waiting"] == "group g full (1/1)"
        h.run_to_end("a")
        h.gates.wait_started("b")
        assert h.gates.started == ["a", "b"]
        refused = h.request("group", name="g", max_running=0)
        assert (
            refused["message"] == "invalid request: 'max_running' must be an integer >= 1 or null"
        )
    finally:
        h.close()


def test_pause_and_resume(h: Harness) -> None:
    reply = h.call("pause", ids=["nope"], all=True)
    assert reply["results"] == {"nope": "there is no queued or running petition 'nope'"}
    h.submit("a")
    assert h.record("a")["waiting"] == "all petitions are paused ('orcha resume --all')"
    assert h.call("health")["paused"] is True
    assert h.call("pause", ids=["a"])["results"] == {"a": "paused"}
    h.call("resume", all=False, groups=["default"])
    assert h.record("a")["waiting"] == "all petitions are paused ('orcha resume --all')"
    h.call("resume", all=True)
    h.gates.wait_started("a")
    assert h.call("health")["paused"] is False
    assert h.record("a")["state"] == "RUNNING"


def test_clean_drops_ended_records_and_their_logs(h: Harness) -> None:
    h.submit("a", params={"out": "x\n"})
    h.gates.wait_started("a")
    log_path = h.service.scheduler.get("a").log.path  # type: ignore[union-attr]
    h.run_to_end("a")
    assert os.path.exists(log_path)
    assert h.call("clean", older_than=3600)["removed"] == 0
    h.clock.advance(7200)
    assert h.call("clean", older_than=3600)["removed"] == 1
    assert not os.path.exists(log_path)
    assert h.call("status", ids=["a"])["missing"] == ["a"]
    reply = h.request("logs", id="a")
    assert WIRE_ERRORS[reply["error"]] == ExitCode.NO_PETITION


def test_health_and_info(h: Harness) -> None:
    health = h.call("health")
    assert health["healthy"] is True and health["capacity"] == 1
    info = h.call("info")
    assert info["kinds"] == ["fanout", "gate"]
    assert info["max_running"] == 1 and info["sessions"] == 1


def test_a_stop_keeps_the_queued_and_cancels_the_running(h: Harness) -> None:
    h.submit("a", attach=True)
    h.gates.wait_started("a")
    h.submit("b", attach=True)
    h.service.begin_stop()
    a_end, b_end = h.client.read_until_end(1)[-1], h.client.read_until_end(2)[-1]
    assert isinstance(a_end, End) and a_end.state is State.CANCELLED
    assert a_end.message == "the service is stopping"
    assert "stays queued" in b_end.message
    h.wait_ended("a")
    assert h.record("b")["state"] == "QUEUED"
    refused = h.submit("c")
    assert refused["error"] == "refused" and "stopping" in refused["message"]


def test_a_message_of_the_original_api_that_is_no_message_is_refused(h: Harness) -> None:
    with pytest.raises(PetitionError) as refused:
        perform(h.service, h.client, OPERATIONS["send"], 42)
    assert refused.value.exit_code == ExitCode.REFUSED
    assert refused.value.message.startswith("the service could not use the message")


def test_runtime_kinds_run_as_their_parent(h: Harness) -> None:
    assert h.call("kinds")["kinds"] == []
    kind = h.call("kinds", action="add", name="greeting", **{"from": "gate"},
                  set={"out": "hi\n", "group": "g"})["kind"]  # fmt: skip
    assert (kind["from"], kind["params"], kind["available"]) == ("gate", {"out": "hi\n"}, True)
    h.submit("a", kind="greeting")
    h.gates.wait_started("a")
    record = h.record("a")
    assert (record["kind"], record["schedule"]["group"]) == ("greeting", "g")
    unknown = h.request("kinds", action="add", name="other", **{"from": "nope"})
    assert WIRE_ERRORS[unknown["error"]] == ExitCode.UNKNOWN
    assert h.call("kinds", action="rm", name="greeting")["removed"] is True
    assert h.call("kinds", action="rm", name="greeting")["removed"] is False


def test_state_of_a_plugin_that_is_not_loaded_is_refused(h: Harness) -> None:
    reply = h.request("state", action="ls", plugin="nope")
    assert WIRE_ERRORS[reply["error"]] == ExitCode.UNKNOWN
    assert reply["message"] == "the service has no plugin 'nope' (loaded: test)"


def test_health_names_a_thread_that_holds_the_scheduler_for_more_than_3s(h: Harness) -> None:
    # Whatever holds the scheduler (here a thread standing for a kind's start that
    # blocks, or a slow write under the lock) holds up admission: health says so at
    # once, on its lock's clock (a fake one here), without waiting for the lock.
    ticks = FakeClock()
    h.service.scheduler.lock.clock = ticks
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with h.service.scheduler.lock:
            holding.set()
            release.wait(DEADLINE)

    holder = threading.Thread(target=hold, name="stuck-start")
    holder.start()
    try:
        assert holding.wait(DEADLINE)
        ticks.advance(3.0)
        assert h.call("health")["healthy"] is True  # 3 s: not yet
        ticks.advance(1.0)
        began = time.monotonic()
        health = h.call("health")
        assert time.monotonic() - began < 1.0  # it did not wait for the lock
    finally:
        release.set()
        holder.join(DEADLINE)
    assert health["healthy"] is False
    assert health["scheduler"] == (
        "held by thread stuck-start for 4s: no petition starts; submissions and 'status' wait"
    )
    assert "scheduler" not in h.call("health") and h.call("health")["healthy"] is True


def test_a_runtime_kind_of_a_bad_request_is_still_refused_by_the_service(h: Harness) -> None:
    # The CLI refuses it before sending (exit 2); a client that sends it anyway gets 204.
    reply = h.request("kinds", action="add", name="k", **{"from": "gate"}, set={"cpus": 0})
    assert WIRE_ERRORS[reply["error"]] == ExitCode.REFUSED
    assert reply["message"] == (
        "invalid settings for kind 'k': 'cpus' must be an integer from 1 to 65536, got 0"
    )


def test_a_petition_waiting_for_a_machine_after_its_own_was_lost_can_be_cancelled(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its Dask worker lost (here: its attempt says so), a petition with a retry left waits
    # for a machine to take it (Machine.relocate, until cancelled): a cancel is heard
    # then, as during --retry-delay (it was refused in silence, and a stop waited forever).
    kind = h.service.manager.registry.plugin_kind("gate")
    asked = threading.Event()

    def lost_run(ctx: Any) -> int:
        job = h.service.scheduler.get(ctx.id)
        assert job is not None
        job.lost = job.message = "worker w1 was lost"
        return 1

    def relocate(job: Any) -> bool:
        asked.set()
        return not job.cancel_event.wait(DEADLINE)  # False: cancelled while it waited

    monkeypatch.setattr(kind, "run", lost_run)
    monkeypatch.setattr(type(h.service.scheduler.machines[0]), "relocate",
                        lambda self, job: relocate(job))  # fmt: skip
    h.submit("pinned", schedule={"retries": 1})
    assert asked.wait(DEADLINE)
    began = time.monotonic()
    assert h.call("cancel", ids=["pinned"])["results"] == {"pinned": "cancelled"}
    h.wait_ended("pinned")
    assert time.monotonic() - began < DEADLINE / 2  # not once relocate gave up
    record = h.record("pinned")
    assert (record["state"], record["attempt"]) == ("CANCELLED", 1), record
