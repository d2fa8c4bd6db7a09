"""In process (see harness): what ``status`` selects in the service, runtime kinds that
cannot fit, request options over a template's, and the errors that say which service
serves which kinds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orcha.errors import WIRE_ERRORS, ExitCode, InvalidPetitionError, UnknownKindError
from orcha.interfaces import Message
from orcha.protocol.messages import SubmitRequest
from orcha.service.manager import Manager
from tests.unit.service.harness import Harness


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, max_running=2)
    yield harness
    harness.close()


def ids(reply: dict[str, Any]) -> list[str]:
    return [r["id"] for r in reply["petitions"]]


def test_status_selects_by_group_last_and_ended_in_the_service(h: Harness) -> None:
    for n in range(4):
        h.submit(f"e{n}", schedule={"group": "batch"} if n % 2 else {})
        h.run_to_end(f"e{n}")
    h.submit("run", schedule={"group": "batch"})
    h.submit("q1", schedule={"cpus": 2})
    everything = h.call("status")
    assert ids(everything) == ["e0", "e1", "e2", "e3", "run", "q1"]
    assert everything["hidden"] == 0
    recent = h.call("status", ended=2)
    assert ids(recent) == ["e2", "e3", "run", "q1"] and recent["hidden"] == 2
    batch = h.call("status", groups=["batch"])
    assert ids(batch) == ["e1", "e3", "run"]
    assert ids(h.call("status", last=2)) == ["run", "q1"]
    both = h.call("status", groups=["batch"], states=["SUCCEEDED"], ended=1)
    assert ids(both) == ["e3"] and both["hidden"] == 1
    bad = h.request("status", last=-1)
    assert bad["ok"] is False and "'last' must be a whole number" in bad["message"]


def test_status_shows_the_first_queued_ones_and_lists_every_record_in_pages(h: Harness) -> None:
    for n in range(3):
        h.submit(f"e{n}")
        h.run_to_end(f"e{n}")
    h.submit("run1")
    h.submit("run2")
    h.gates.wait_started("run1")
    h.gates.wait_started("run2")
    for n in range(4):
        h.submit(f"q{n}")
    view = h.call("status", ended=1, queued=2)
    assert ids(view) == ["e2", "run1", "run2", "q0", "q1"]
    assert (view["hidden"], view["hidden_queued"]) == (2, 2)
    assert view["petitions"][3]["waiting"]  # the ones shown say why they wait
    pages, after = [], None
    while True:
        reply = h.call("status", page=3, **({"after": after} if after is not None else {}))
        pages.append(ids(reply))
        if reply["next"] is None:
            break
        after = reply["next"]
    assert pages == [["e0", "e1", "e2"], ["run1", "run2", "q0"], ["q1", "q2", "q3"], []]
    assert [r.get("waiting") is not None for r in h.call("status", page=9)["petitions"]] == [
        False, False, False, False, False, True, True, True, True,
    ]  # fmt: skip
    queued = h.call("status", page=2, states=["QUEUED"])
    assert ids(queued) == ["q0", "q1"] and queued["next"] is not None
    bad = h.request("status", page=2, last=1)
    assert bad["ok"] is False and "'page'" in bad["message"]


@pytest.mark.parametrize("text", [False, True])
def test_a_page_of_some_states_is_filled_past_records_whose_state_is_not_saved_yet(
    h: Harness, text: bool
) -> None:
    for name in ("run1", "run2"):  # every slot taken: the next ones stay queued
        h.submit(name)
        h.gates.wait_started(name)
    for n in range(4):
        h.submit(f"q{n}")
    store = h.service.store
    assert store is not None
    first = h.record("q0")["seq"]
    with store.saver.order:  # held: the writer cannot commit the change meanwhile
        store.update_later(first, state="CANCELLED")  # saved as QUEUED, CANCELLED now
        reply = h.call("status", page=2, states=["QUEUED"], text=text)
        assert first in store.saver.pending_seqs()
    listed = json.loads(f"[{reply['text']}]") if text else reply["petitions"]
    assert [r["id"] for r in listed] == ["q1", "q2"] and reply["next"] is not None


def test_a_runtime_kind_no_machine_can_run_is_refused_at_add(h: Harness) -> None:
    reply = h.request("kinds", action="add", name="big", **{"from": "gate"}, set={"cpus": 8})
    assert reply["ok"] is False and WIRE_ERRORS[reply["error"]] == ExitCode.REFUSED
    assert reply["message"] == (
        "kind 'big' would ask for 8 CPUs but this service has 2 ('orcha serve "
        "--max-running'); set fewer with --set cpus=N (nothing defined)"
    )
    gpus = h.request("kinds", action="add", name="g", **{"from": "gate"}, set={"gpus": 1})
    assert "set fewer with --set gpus=N" in gpus["message"]
    mem = h.request("kinds", action="add", name="m", **{"from": "gate"}, set={"mem": 1 << 50})
    assert "set less with --set mem=N" in mem["message"]
    assert h.call("kinds")["kinds"] == []  # nothing defined


def test_request_options_override_a_runtime_kinds_even_at_their_default(h: Harness) -> None:
    h.call("kinds", action="add", name="pair", **{"from": "gate"},
           set={"cpus": 2, "timeout": 60})  # fmt: skip
    h.submit("own", kind="pair", schedule={"cpus": 1})
    h.submit("templated", kind="pair")
    assert h.record("own")["schedule"] == {"timeout": 60.0}  # 1 CPU: the default
    assert h.record("templated")["schedule"] == {"cpus": 2, "timeout": 60.0}
    assert h.record("own")["state"] == "RUNNING"
    assert h.record("templated")["waiting"] == "needs 2 CPUs, 1 free"


def test_a_plugins_own_service_says_it_serves_no_kinds_and_what_to_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class TutorialManager(Manager):
        pass

    request = SubmitRequest("hello", "x", {}, None, "/", {})
    monkeypatch.setattr("sys.argv", ["/venv/bin/orcha", "hw", "serve", "--address", "a"])
    with pytest.raises(UnknownKindError) as caught:
        TutorialManager().petition_from_request(request, None)
    message = caught.value.message
    assert caught.value.exit_code == ExitCode.UNKNOWN
    assert message.startswith("this service is a plugin's own ('orcha hw serve', manager ")
    assert "TutorialManager" in message and "so not 'hello'" in message
    assert "Send with that plugin's commands ('orcha hw --help'), or start" in message
    assert "'orcha serve --address PATH'" in message
    # Served by a script of one's own (start_service): named as it was started.
    monkeypatch.setattr("sys.argv", ["/srv/my_service.py"])
    with pytest.raises(UnknownKindError) as caught:
        TutorialManager().petition_from_request(request, None)
    assert "('my_service.py', manager " in caught.value.message
    assert "Send with that plugin's commands, or start" in caught.value.message


def test_orcha_serve_says_a_message_without_a_kind_needs_its_plugins_service(h: Harness) -> None:
    message = Message(id="m1", extras={"queue": object(), "counter": 1})
    with pytest.raises(InvalidPetitionError) as caught:
        h.service.manager.convert_to_petition(message)
    text = caught.value.message
    assert text.startswith("this service ('orcha serve') runs petitions of kinds fanout, gate;")
    assert "message 'm1' names no kind" in text and "'orcha ls'" in text
