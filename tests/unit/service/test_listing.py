"""In process (see harness): ``status`` pages as JSON text (``page`` with ``text``, what
``status --all --json`` prints) are byte for byte the ``json.dumps`` of the records the
reference builds (``page`` alone), for records with every field set, unicode, control
characters, NULLs, odd values, ended, running, queued, paused, stopped, parents, and
changes not saved yet."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from orcha.service import listing
from tests.unit.service.harness import FakeClock, Harness


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """One service holding every kind of record (built once: the tests only read)."""
    clock = FakeClock()
    harness = Harness(tmp_path_factory.mktemp("listing"), max_running=2, aging=600.0,
                      clock=clock, gpus=("0", "1"))  # fmt: skip
    store = harness.service.store
    assert store is not None
    harness.submit("ok", params={"out": "x"})
    harness.run_to_end("ok")
    harness.submit("échec\u2603", params={"argv": ["é", "\u2603", 'quote " back \\ slash']})
    harness.run_to_end("échec\u2603", code=3)
    harness.submit("every", priority=-2, schedule={"group": "batch", "timeout": 30.5})
    harness.run_to_end("every", code=1)
    seq = harness.record("every")["seq"]
    store.update(seq, outcome={"k": ["v", 1.25, None, True], "ü": "\u2603"},
                 notify_error="webhook said 500\nand more", message="line\x01\x7f\ttab",
                 machine="node-ü", log_truncated="disk full", leftovers=2, cpu_time=1.5,
                 peak_rss=1 << 40, restart_of=1)  # fmt: skip
    harness.submit("fan", kind="fanout", params={"children": [{}], "leave": True})
    harness.wait_ended("fan", "fan.1")  # its child is cancelled as its run returns
    harness.submit("slow")
    harness.submit("gpu", schedule={"gpus": 1})
    harness.gates.wait_started("gpu")
    slow = harness.service.scheduler.get("slow")
    assert slow is not None
    slow.progress = {"value": 3, "target": 10, "unit": "files"}
    slow.stopped = True  # as 'orcha pause --running' leaves it
    gpu = harness.service.scheduler.get("gpu")
    assert gpu is not None
    gpu.waits_for = "worker w1 was lost; waiting for it to rejoin (--on) for attempt 2"
    for n in range(5):  # queued: two slots are taken
        harness.submit(f"q{n}", priority=n % 3, schedule={"group": "batch"} if n % 2 else {})
    harness.call("pause", ids=["q1"])
    clock.advance(123.456)  # aging at work: effective priorities with fractions
    # Odd values the reference still writes: a fraction, text and infinity in columns
    # that hold integers and floats.
    odd = harness.record("ok")["seq"]
    store._write(lambda db: db.execute(
        "UPDATE petitions SET priority = 1.5, code = 'x', cpu_time = 1e999 WHERE seq = ?",
        (odd,)), "test")  # fmt: skip
    yield harness
    harness.close()


def reference(h: Harness, page: int, **fields: Any) -> list[str]:
    """The pages of records as the reference builds them, each as ``json.dumps`` would
    print its records (what the client printed from them)."""
    pages, after = [], None
    while True:
        reply = h.call("status", page=page, **fields, **({"after": after} if after else {}))
        pages.append(", ".join(json.dumps(r) for r in reply["petitions"]))
        if reply["next"] is None:
            return pages
        after = reply["next"]


def texts(h: Harness, page: int, **fields: Any) -> list[str]:
    pages, after = [], None
    while True:
        reply = h.call("status", page=page, text=True, **fields,
                       **({"after": after} if after else {}))  # fmt: skip
        assert reply["count"] == (len(json.loads(f"[{reply['text']}]")))
        pages.append(reply["text"])
        if reply["next"] is None:
            return pages
        after = reply["next"]


@pytest.mark.parametrize("page", [1, 3, 500])
@pytest.mark.parametrize(
    "fields", [{}, {"states": ["QUEUED", "FAILED"]}, {"groups": ["batch"]}], ids=str
)
def test_pages_of_text_are_the_reference_records_encoded(
    h: Harness, page: int, fields: dict[str, Any]
) -> None:
    assert texts(h, page, **fields) == reference(h, page, **fields)


def test_every_kind_of_record_is_listed_as_the_reference_lists_it(h: Harness) -> None:
    (whole,) = texts(h, 500)
    records = {r["id"]: r for r in json.loads(f"[{whole}]")}
    assert "\\u00e9chec\\u2603" in whole and "\\u007f" in whole  # ensure_ascii, as before
    assert records["fan"]["children"] == ["fan.1"] and records["gpu"]["gpus"]
    assert records["slow"]["progress"] == {"value": 3, "target": 10, "unit": "files"}
    assert records["slow"]["paused"] is True and "SIGSTOP" in records["slow"]["waiting"]
    assert records["slow"]["wall_time"] > 0 and records["slow"]["state"] == "RUNNING"
    assert records["gpu"]["state"] == "RUNNING"  # between attempts, its worker lost
    assert records["gpu"]["waiting"] == (
        "worker w1 was lost; waiting for it to rejoin (--on) for attempt 2"
    )
    assert records["q1"]["paused"] is True and records["q1"]["waiting"]
    assert records["q2"]["effective_priority"] == round(2 - 123.456 / 600, 3)
    assert records["every"]["outcome"] == {"k": ["v", 1.25, None, True], "ü": "\u2603"}
    assert records["every"]["message"] == "line\x01\x7f\ttab"
    assert (records["ok"]["priority"], records["ok"]["code"]) == (1.5, "x")
    assert records["ok"]["cpu_time"] == float("inf")
    assert whole == reference(h, 500)[0]


def test_changes_not_saved_yet_are_listed_with_their_record(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = h.service.store
    assert store is not None
    seq, ok = h.record("every")["seq"], h.record("q0")["seq"]
    monkeypatch.setattr(listing, "_FEW", 1)  # read again in several queries
    try:
        with store.saver.order:  # held: the writer cannot commit the change meanwhile
            store.update_later(seq, message="not saved yet ü", state="CANCELLED")
            store.update_later(ok, message="queued, not saved")
            assert seq in store.saver.pending_seqs()
            listed, expected = texts(h, 2), reference(h, 2)
            assert texts(h, 500) == reference(h, 500)  # both read again, in two queries
            cancelled = texts(h, 1, states=["CANCELLED"])
            assert cancelled == reference(h, 1, states=["CANCELLED"])
    finally:
        store.update_later(seq, message="line\x01\x7f\ttab", state="FAILED")
        store.update_later(ok, message=None)
        assert store.flush(10)
    assert listed == expected and '"not saved yet \\u00fc"' in "".join(listed)
    assert '"queued, not saved"' in "".join(listed)
    assert [json.loads(t)["id"] for t in cancelled if t] == ["every", "fan.1"]


def test_a_record_saved_during_the_read_is_listed_only_in_its_saved_state(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = h.service.store
    assert store is not None
    ended = h.record("ok")["seq"]
    answers = iter([[ended], []])  # not saved as the read begins, saved once it is done
    monkeypatch.setattr(store.saver, "pending_seqs", lambda: next(answers))
    (page,) = texts(h, 500, states=["QUEUED"])
    assert [r["state"] for r in json.loads(f"[{page}]")] == ["QUEUED"] * 5


class _NothingLive:
    """A scheduler with no live petition (what the texts of saved rows ask of one)."""

    def peek(self, petition_id: str) -> None:
        return None

    def peek_each(self, petition_ids: list[str]) -> list[None]:
        return [None for _ in petition_ids]

    def effective_priority(self, job: Any) -> float:
        raise AssertionError("no petition is live")


def test_values_an_array_shares_are_formatted_once_and_never_taken_for_others() -> None:
    # An array's queued members share kind to cwd and outcome to array (formatted once a
    # page); a member differing in one of them, or in a value equal to another but
    # written otherwise (-0.0), is written as its own.
    base = dict.fromkeys(listing.STATUS_COLUMNS)
    base.update(id="a_1", kind="shell", state="QUEUED", priority=0, submitted=1796317175.9338324,
                user="u", host="h", cwd="/w", params='{"argv": ["true"]}', schedule="{}",
                attempt=1, paused=0, array="a", array_index=1)  # fmt: skip
    changes: list[dict[str, Any]] = [
        {}, {}, {"message": "m"}, {"priority": 2}, {"cwd": "/w\u2603"}, {"submitted": 0.0},
        {"submitted": -0.0}, {"submitted": 0.0}, {"machine": "n"}, {"leftovers": 0},
        {"array": None}, {"state": "CANCELLED", "ended": 1796317176.5},
        {"started": 1796317176.25, "ended": 1796317177.5, "state": "FAILED", "code": 2},
        {"outcome": '{"k": 1}'}, {"outcome": '{"k": 1.0}'}, {},
    ]  # fmt: skip
    rows = [
        tuple({**base, "seq": n, "id": f"a_{n}", **change}[c] for c in listing._ROW_COLUMNS)
        for n, change in enumerate(changes, 1)
    ]
    scheduler: Any = _NothingLive()
    built = listing._texts(rows, set(), {}, {}, 1796317180.0, scheduler)
    records = [dict(zip(listing._ROW_COLUMNS, row, strict=True)) for row in rows]
    for record in records:  # as the store gives them: JSON fields decoded
        for name in ("params", "schedule", "outcome"):
            record[name] = None if record[name] is None else json.loads(record[name])
    assert built == [json.dumps(listing.record_of(r, {}, scheduler, {}, 1796317180.0))
                     for r in records]  # fmt: skip
    assert '"submitted": -0.0' in str(built[6]) and '"submitted": 0.0' in str(built[7])
    assert '"outcome": {"k": 1.0}' in str(built[14])
