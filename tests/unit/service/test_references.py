"""References (orcha.service.references): record numbers, names, NAME~N, and every
handler resolving them the same way; petitions without an ID numbered by the service;
history kept when a name is reused. Driven in process (see harness)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orcha.errors import WIRE_ERRORS, ExitCode
from orcha.protocol import messages
from orcha.protocol.ids import check_name, split
from orcha.protocol.messages import STDOUT
from orcha.protocol.operations import OPERATIONS
from orcha.service.handlers import perform
from orcha.service.references import resolve, resolve_all
from tests.unit.service.harness import Harness


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, max_running=1)
    yield harness
    harness.close()


def _resolve(h: Harness, ref: str) -> list[tuple[int | None, str, bool]]:
    service = h.service
    return [(t.seq, t.id, t.job is not None)
            for t in resolve(ref, service.scheduler, service.store)]  # fmt: skip


@pytest.mark.parametrize(
    ("ref", "parts"),
    [("12", None), ("a", ("a", 0)), ("a~2", ("a", 2)), ("a~0", ("a", 0)), ("~3", ("~3", 0)),
     ("a~", ("a~", 0)), ("a~b", ("a~b", 0)), ("x~1~2", ("x~1", 2)), ("١٢", ("١٢", 0))],
)  # fmt: skip
def test_split_tells_numbers_names_and_older_names(ref: str, parts: object) -> None:
    assert split(ref) == parts


@pytest.mark.parametrize("name", ["12", "0", "a~1", "build~0", "~1", "~~2"])
def test_a_new_name_may_not_look_like_a_reference(name: str) -> None:
    with pytest.raises(ValueError, match="number"):
        check_name(name)


@pytest.mark.parametrize("name", ["a,b", ",", "a,"])
def test_a_new_name_may_not_hold_a_comma_which_separates_after_ids(name: str) -> None:
    with pytest.raises(ValueError, match="comma, which separates the IDs of --after"):
        check_name(name)


@pytest.mark.parametrize("name", ["a", "a1", "1a", "a~", "a~b", "-x", "~"])
def test_other_names_are_fine(name: str) -> None:
    assert check_name(name) == name


def test_a_petition_without_an_id_is_named_by_its_record_number(h: Harness) -> None:
    first = h.request("submit", kind="gate", params={}, cwd="/", env={}, attach=False)
    second = h.request("submit", kind="gate", id=None, params={}, cwd="/", env={}, attach=False)
    assert first["ok"] and second["ok"]
    assert first["id"].isdigit() and int(second["id"]) == int(first["id"]) + 1
    assert h.record(first["id"])["seq"] == int(first["id"])
    h.gates.wait_started(first["id"])
    assert h.run_to_end(first["id"])["state"] == "SUCCEEDED"


def test_numbers_and_older_names_are_refused_as_new_names(h: Harness) -> None:
    for name in ("7", "a~1"):
        reply = h.submit(name)
        assert reply["ok"] is False and WIRE_ERRORS[reply["error"]] == ExitCode.REFUSED, reply
        assert "number" in reply["message"]


def test_a_reused_name_keeps_every_record_and_names_the_newest(h: Harness) -> None:
    seqs = []
    for code in (3, 0):
        assert h.submit("a", params={"out": f"run {code}\n"})["ok"]
        seqs.append(h.record("a")["seq"])
        h.gates.wait_started("a")
        assert h.run_to_end("a", code)["code"] == code
        h.gates.started.clear()
    old, new = seqs
    assert old < new
    # The newest by name; the older by NAME~1 or by number; NAME~2 names none.
    assert _resolve(h, "a") == [(new, "a", False)]
    assert _resolve(h, "a~0") == [(new, "a", False)]
    assert _resolve(h, "a~1") == [(old, "a", False)]
    assert _resolve(h, str(old)) == [(old, "a", False)]
    assert _resolve(h, "a~2") == [] and _resolve(h, "999") == [] and _resolve(h, "b") == []
    # Every command reads the same record: status, logs, wait.
    assert [r["seq"] for r in h.call("status")["petitions"]] == [old, new]
    assert [r["code"] for r in h.call("status", ids=["a~1", "a"])["petitions"]] == [3, 0]
    assert h.call("status", ids=["a~2"])["missing"] == ["a~2"]
    assert h.call("logs", id="a~1", tail=None)["output"] == [["stdout", "run 3\n"]]
    assert h.call("logs", id=str(new), tail=None)["output"] == [["stdout", "run 0\n"]]
    ended = h.call("wait", ids=["a~1", str(old), "a"])
    assert [e["code"] for e in ended["ended"]] == [3, 0] and not ended["pending"]
    # Each record its own log file.
    store = h.service.store
    assert store is not None
    assert len({store.get(seq)["log_path"] for seq in (old, new)}) == 2  # type: ignore[index]


def test_a_live_petition_is_reached_by_name_and_number_alike(h: Harness) -> None:
    assert h.submit("a")["ok"]
    h.gates.wait_started("a")
    assert h.run_to_end("a")["state"] == "SUCCEEDED"
    h.gates.started.clear()  # before the submit: the second "a" may start at once
    assert h.submit("a")["ok"]  # the name again, while the first has ended
    h.gates.wait_started("a")
    live = h.record("a")["seq"]
    assert _resolve(h, "a") == [(live, "a", True)]
    assert _resolve(h, str(live)) == [(live, "a", True)]
    assert _resolve(h, "a~1")[0][2] is False
    # A second live "a" is refused: a name belongs to one live petition at most.
    reply = h.submit("a")
    assert WIRE_ERRORS[reply["error"]] == ExitCode.DUPLICATE
    # pause, wait and cancel by number reach it.
    assert h.call("pause", ids=[str(live)], groups=[], all=False)["results"] == {
        str(live): "paused"
    }
    assert h.call("resume", ids=[str(live)], groups=[], all=False)["results"] == {
        str(live): "resumed"
    }
    waiter = h.peer()
    assert h.call("wait", waiter, ids=[str(live), "a"])["pending"] == ["a"]  # once
    assert h.call("cancel", ids=[str(live)], force=False)["results"] == {str(live): "cancelled"}
    assert waiter.expect(event="ended", id="a")["state"] == "CANCELLED"
    assert h.call("cancel", ids=["a~1"], force=False)["results"]["a~1"].startswith(
        "petition 'a~1' has already ended"
    )


def test_after_pins_an_older_record_by_its_number(h: Harness) -> None:
    for _ in range(2):
        assert h.submit("dep")["ok"]
        h.gates.wait_started("dep")
        h.run_to_end("dep", 0)
        h.gates.started.clear()
    old_seq = h.call("status", ids=["dep~1"])["petitions"][0]["seq"]
    assert h.submit("later", schedule={"after": ["dep~1", "dep"]})["ok"]
    h.gates.wait_started("later")
    # dep~1 would name another record once dep runs again: kept by its number.
    assert h.record("later")["schedule"]["after"] == [str(old_seq), "dep"]
    h.run_to_end("later")
    reply = h.submit("never", schedule={"after": ["nothing~3"]})
    assert WIRE_ERRORS[reply["error"]] == ExitCode.NO_PETITION


def test_resolve_all_names_each_record_once_and_lists_the_unknown(h: Harness) -> None:
    assert h.submit("a")["ok"]
    seq = h.record("a")["seq"]
    service = h.service
    targets, missing = resolve_all(["a", str(seq), "zz", "a~1"], service.scheduler, service.store)
    assert [(t.ref, t.seq) for t in targets] == [("a", seq)]
    assert missing == ["zz", "a~1"]


def test_follow_names_each_record_by_the_reference_given(h: Harness) -> None:
    for out in ("one\n", "two\n"):
        assert h.submit("a", params={"out": out})["ok"]
        h.gates.wait_started("a")
        h.run_to_end("a")
        h.gates.started.clear()
    fields, after = perform(h.service, h.client, OPERATIONS["follow"], {"ids": ["a~1", "a"]})
    assert fields["handles"] == {"a~1": 1, "a": 2}
    frames = list(after)
    assert frames[0] == messages.output_frame(STDOUT, 1, b"one\n")
    assert messages.output_frame(STDOUT, 2, b"two\n") in frames


def test_labels_name_each_target_by_the_reference_given_else_its_id_else_its_number() -> None:
    from orcha.service.references import Target, label, labeller

    targets = [Target("a", 1, "a", None), Target("b", 2, "x", None), Target("b", 3, "y", None),
               Target("c", 4, "z", None), Target("c", 5, "z", None)]  # fmt: skip
    name = labeller(targets)
    assert [name(t) for t in targets] == ["a", "x", "y", "4", "5"]
    assert [label(t, targets) for t in targets] == [name(t) for t in targets]


HUGE = "99999999999999999999"  # beyond SQLite's integers


@pytest.mark.parametrize("ref", [HUGE, str(2**63), f"a~{HUGE}", f"a~{2**63}"])
def test_a_number_beyond_any_record_names_none(h: Harness, ref: str) -> None:
    assert h.submit("a")["ok"]
    assert _resolve(h, ref) == []
    assert h.call("status", ids=[ref])["missing"] == [ref]
    reply = h.submit("later", schedule={"after": [ref]})
    assert WIRE_ERRORS[reply["error"]] == ExitCode.NO_PETITION, reply
    assert _resolve(h, str(2**63 - 1)) == []  # the largest it can look up


def test_watch_of_an_ended_name_n_concerns_that_record_only(h: Harness) -> None:
    # As 'watch SEQ' of an ended record: its end, then nothing of the later petitions
    # that took its name.
    h.submit("nm")
    h.run_to_end("nm", code=3)
    h.submit("nm")
    h.gates.wait_started("nm")
    h.submit("other")  # queued: keeps the watch open past nm~1's end
    watcher = h.peer()
    assert h.call("watch", watcher, ids=["nm~1", "other"])["missing"] == []
    h.run_to_end("nm")  # the later nm: not watched
    h.gates.wait_started("other")
    h.run_to_end("other")
    watcher.expect(event="finished", petition="other")
    about_nm = [(f["event"], (f.get("data") or {}).get("code")) for f in watcher.frames
                if f.get("petition") == "nm"]  # fmt: skip
    assert about_nm == [("finished", 3)], watcher.frames
