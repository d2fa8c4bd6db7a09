"""Events: the fan-out of petition events, on its own (a stub scheduler, in-process peers)."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace
from typing import Any

from orcha.model import Petition
from orcha.protocol.messages import STDOUT
from orcha.protocol.outputs import DISCARD
from orcha.service.events import Events
from orcha.service.job import Job
from orcha.states import State
from tests.unit.service.harness import FakePeer


def job(petition_id: str) -> Job:
    petition = Petition(id=petition_id, queue=DISCARD, action=None, condition=None)  # type: ignore[arg-type]
    return Job(petition, native=True, token_prefix="t")


def events_over(*jobs: Job) -> Events:
    get = lambda i: next((j for j in jobs if j.id == i), None)  # noqa: E731
    by_seq = lambda s: next((j for j in jobs if j.seq == s), None)  # noqa: E731
    scheduler: Any = SimpleNamespace(
        jobs=lambda: list(jobs), views=lambda: list(jobs), get=get, peek=get, job=lambda j: j,
        held=by_seq, built=by_seq, lock=threading.RLock(),
    )  # fmt: skip
    return Events(scheduler)


def ended(j: Job, state: State = State.SUCCEEDED) -> Job:
    j.set_state(State.RUNNING)
    j.code = 0
    j.set_state(state)
    return j


def test_a_watcher_of_a_petition_that_has_just_ended_hears_it_ended() -> None:
    # Its end was announced before the watcher came, and the scheduler has not forgotten
    # it yet: the watcher must still hear "finished", not only its state.
    done = ended(job("done"))
    events = events_over(done)
    events.ended(done)  # announced to nobody yet
    peer = FakePeer()
    assert events.watch(peer, ["done"]) == {"missing": [], "ends": ["done"]}
    assert [f["event"] for f in peer.frames] == ["finished"]
    assert peer.frames[0]["data"]["state"] == "SUCCEEDED"


def test_a_watcher_of_a_live_petition_gets_its_state_then_its_end() -> None:
    running = job("run")
    running.set_state(State.RUNNING)
    events = events_over(running)
    peer = FakePeer()
    events.watch(peer, ["run"])
    running.code = 0
    running.set_state(State.SUCCEEDED)
    events.ended(running)
    assert [f["event"] for f in peer.frames] == ["state", "finished"]


def test_followers_are_kept_by_events_and_dropped_at_the_end() -> None:
    running = job("f")
    running.set_state(State.RUNNING)
    running.events = events = events_over(running)
    events.scheduler.get = lambda i: running if i == "f" else None
    running.log = SimpleNamespace(path="/nonexistent", size=0, write=lambda *a: None)  # type: ignore[assignment]
    peer = FakePeer()
    outputs: list[tuple[int, int, bytes]] = []
    peer.deliver_output = lambda handle, stream, data, log=None: outputs.append(  # type: ignore[method-assign]
        (handle, stream, data)
    )
    plan, missing = events.follow(peer, ["f"])
    assert missing == [] and plan[0]["ended"] is None
    running.emit(STDOUT, b"hello\n")
    assert outputs == [(plan[0]["handle"], STDOUT, b"hello\n")]
    running.code = 0
    running.set_state(State.SUCCEEDED)
    events.ended(running)
    assert [f["event"] for f in peer.frames] == ["end"]
    running.emit(STDOUT, b"late\n")  # no follower any more
    assert len(outputs) == 1
    # A follower that comes after the end is told it has ended, with nothing to wait for.
    plan, _ = events.follow(FakePeer(), ["f"])
    assert plan[0]["ended"]["state"] == "SUCCEEDED"


def test_a_waiter_of_a_petition_ended_but_not_yet_announced_waits_for_the_announcement() -> None:
    # Its state is final a moment before its record is written and its end announced: a
    # waiter coming then must not be told "ended" before the record says so.
    done = ended(job("w"))
    events = events_over(done)
    events.scheduler.get = lambda i: done if i == "w" else None
    peer = FakePeer()
    assert events.wait_for(peer, ["w"]) == {"ended": [], "pending": ["w"], "missing": []}
    events.ended(done)
    assert [f["event"] for f in peer.frames] == ["ended"]
    # After the announcement, a new waiter is answered at once.
    assert events.wait_for(FakePeer(), ["w"])["ended"][0]["state"] == "SUCCEEDED"


class SoonPeer(FakePeer):
    """Records which ends it was given only ``soon`` (batched with what follows)."""

    def __init__(self) -> None:
        super().__init__()
        self.soon: list[str] = []

    def deliver_soon(self, frame: bytes) -> None:
        self.soon.append(json.loads(frame)["id"])
        super().deliver_soon(frame)


def test_a_waiter_of_several_has_each_end_soon_and_the_last_at_once() -> None:
    a, b = job("a"), job("b")
    events = events_over(a, b)
    peer, alone = SoonPeer(), SoonPeer()
    assert events.wait_for(peer, ["a", "b"])["pending"] == ["a", "b"]
    assert events.wait_for(alone, ["a"])["pending"] == ["a"]
    events.ended(ended(a))
    assert peer.soon == ["a"]  # it still waits for b: this end may go with b's
    assert alone.soon == []  # all it waited for: at once
    events.ended(ended(b, State.FAILED))
    assert peer.soon == ["a"]  # its last: at once
    assert [(f["id"], f["state"]) for f in peer.frames] == [("a", "SUCCEEDED"), ("b", "FAILED")]
    assert [f["id"] for f in alone.frames] == ["a"]
