"""TopModel: the state ``orcha top`` builds from events, replayed from a real recording
(tests/fixtures/top_events.jsonl) and from made-up races."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orcha.client.top_model import KEEP_ENDED, TopModel

RECORDING = Path(__file__).parent.parent / "fixtures" / "top_events.jsonl"


def _recording() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    first, *events = (json.loads(line) for line in RECORDING.read_text().splitlines())
    return first["recent"], events


def _event(event: str, petition: str | None, stamp: float, **data: Any) -> dict[str, Any]:
    return {"event": event, "petition": petition, "kind": "shell", "timestamp": stamp,
            "data": data}  # fmt: skip


def _usage(running: list[str], waiting: list[str], stamp: float = 10.0) -> dict[str, Any]:
    return _event(
        "usage", None, stamp, cpus={"used": len(running), "capacity": 2}, paused=False,
        queued=len(waiting), gpus=[], groups=[],
        running=[{"id": i, "cpu_percent": 50.0, "rss": 1 << 20, "cpus": 1} for i in running],
        waiting=[{"id": i, "why": "waiting for a free slot"} for i in waiting],
    )  # fmt: skip


def test_the_recording_replayed_step_by_step() -> None:
    recent, events = _recording()
    model = TopModel(recent)
    assert [p["id"] for p in model.ended] == ["done1"] and not model.usage_seen
    # The state events come first: the petitions are known before any usage.
    model.apply(events[0])
    model.apply(events[1])
    assert list(model.running) == ["hog"] and list(model.waiting) == ["later"]
    model.apply(events[2])  # the first usage completes the picture
    assert model.usage_seen
    hog, later = model.running["hog"], model.waiting["later"]
    assert hog["command"] == "sleep 100000" and hog["processes"] == 1 and hog["rss"] > 0
    assert later["why"] == "waiting for a free slot (1/1 CPUs in use)"
    assert model.cpus == {"used": 1, "capacity": 1} and model.queued == 1
    # extra is submitted: it waits at once, before the next usage says why.
    submitted = next(i for i, e in enumerate(events) if e["event"] == "submitted")
    for event in events[3 : submitted + 1]:
        model.apply(event)
    assert list(model.waiting) == ["later", "extra"]
    assert model.waiting["extra"]["why"] == "queued just now" and model.queued == 2
    # hog is cancelled: it is among the ended at once, newest first.
    cancelled = next(i for i, e in enumerate(events) if e["event"] == "finished")
    for event in events[submitted + 1 : cancelled + 1]:
        model.apply(event)
    assert "hog" not in model.running
    assert model.ended[0]["id"] == "hog" and model.ended[0]["code"] == 143
    assert model.ended[0]["message"] == "cancelled with 'orcha cancel'"
    for event in events[cancelled + 1 :]:
        model.apply(event)
    assert not model.running and not model.waiting and model.queued == 0
    assert [p["id"] for p in model.ended] == ["later", "extra", "hog", "done1"]
    assert [p["state"] for p in model.ended] == ["SUCCEEDED", "SUCCEEDED", "CANCELLED", "FAILED"]
    assert model.cpus == {"used": 0, "capacity": 1}
    assert model.updated == events[-1]["timestamp"]


def test_to_json_has_every_section() -> None:
    recent, events = _recording()
    model = TopModel(recent)
    for event in events[:3]:
        model.apply(event)
    snapshot = json.loads(json.dumps(model.to_json()))
    assert set(snapshot) == {"cpus", "paused", "queued", "running", "waiting", "gpus",
                             "groups", "ended"}  # fmt: skip
    assert [p["id"] for p in snapshot["running"]] == ["hog"]
    assert snapshot["groups"][0]["name"] == "default"


def test_an_older_usage_does_not_undo_what_events_said_since() -> None:
    # A usage is measured a moment before it is delivered: a petition that started or
    # ended in between is where its event put it until a usage agrees.
    model = TopModel()
    model.apply(_usage(["a"], ["b", "c"]))
    model.apply(_event("finished", "a", 11.0, id="a", state="SUCCEEDED", code=0, message=None))
    model.apply(_event("started", "b", 11.0))
    model.apply(_event("submitted", "d", 11.0, priority=0))
    model.apply(_usage(["a"], ["b", "c"], stamp=10.5))  # measured before those events
    assert list(model.running) == ["b"]
    assert list(model.waiting) == ["c", "d"]
    assert model.ended[0]["id"] == "a"
    # The next usage is newer: it settles everything (d's reason arrives).
    model.apply(_usage(["b"], ["c", "d"], stamp=12.0))
    assert list(model.running) == ["b"] and model.running["b"]["cpu_percent"] == 50.0
    assert model.waiting["d"]["why"] == "waiting for a free slot"


def test_a_usage_newer_than_an_event_still_in_flight_waits_for_the_event() -> None:
    # The usage shows b running before b's "started" arrives: b stays waiting until then.
    model = TopModel()
    model.apply(_event("submitted", "b", 1.0, priority=0))
    model.apply(_usage(["b"], []))
    assert list(model.waiting) == ["b"] and not model.running
    model.apply(_event("started", "b", 2.0))
    assert list(model.running) == ["b"] and not model.waiting


def test_progress_attempts_pauses_and_drops() -> None:
    model = TopModel()
    model.apply(_usage(["a"], ["b"]))
    assert model.apply(_event("progress", "a", 1.0, value=3, target=10, unit="files"))
    assert model.running["a"]["progress"] == {"value": 3, "target": 10, "unit": "files"}
    assert model.apply(_event("attempt", "a", 1.0, attempt=2))
    assert model.running["a"]["attempt"] == 2
    assert model.apply(_event("paused", "b", 1.0)) and model.waiting["b"]["paused"]
    assert model.apply(_event("resumed", "b", 1.0)) and not model.waiting["b"]["paused"]
    assert model.apply(_event("dropped", None, 1.0, count=7)) and model.dropped == 7
    # Output, a plugin's own events and events of unknown petitions change nothing.
    assert not model.apply(_event("output", "a", 1.0, stream="stdout", text="x\n"))
    assert not model.apply(_event("hello.greeted", "a", 1.0))
    assert not model.apply(_event("progress", "zzz", 1.0, value=1, target=None, unit=""))


def test_an_id_used_again_waits_anew_and_the_ended_list_is_bounded() -> None:
    model = TopModel()
    for n in range(KEEP_ENDED + 5):
        model.apply(_event("submitted", "x", n, priority=0))
        model.apply(_event("started", "x", n + 0.1))
        assert list(model.running) == ["x"] and not model.waiting
        model.apply(_event("finished", "x", n + 0.2, id="x", state="FAILED", code=n, message=None))
    assert len(model.ended) == KEEP_ENDED and model.ended[0]["code"] == KEEP_ENDED + 4
    assert model.ended[0]["started"] == KEEP_ENDED + 4.1
