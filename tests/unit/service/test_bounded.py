"""What the service keeps per petition is dropped once the petition has ended (and per
client once it has gone): many petitions through the in-process service leave its
structures as they were. The soak's RSS slope (docs/reliability.rst, "The soak") is
explained by memory that plateaus, not by these; this keeps it so."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orcha.service import predicates
from orcha.service.job import Job
from tests.unit.service.harness import DEADLINE, Harness

ROUNDS = 30


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, max_running=2)
    yield harness
    harness.close()


def live_jobs(h: Harness) -> list[Job]:
    """The Job objects alive of ``h``'s service, not those of another test's harness in
    this process (which the test's own objects may keep alive until it is collected:
    the fanout kind keeps its children's handles, each holding its Job)."""
    gc.collect()
    events = h.service.events
    return [o for o in gc.get_objects() if isinstance(o, Job) and o.events is events]


def settles_at(h: Harness, most: int) -> bool:
    """Whether at most ``most`` Job objects of ``h`` are alive within the harness's
    deadline (the threads that ended the last petitions let go of them a moment later)."""
    deadline = time.monotonic() + DEADLINE
    while len(live_jobs(h)) > most:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def one_round(h: Harness, i: int) -> None:
    """What the soak's clients do, once each: an attached run (its client then goes), a
    detached submit followed, waited for and watched, one after it, and a cancel."""
    client, follower, watcher = h.peer(), h.peer(), h.peer()
    h.call("watch", watcher, ids=[])
    h.submit(f"a{i}", client, attach=True, params={"out": "x\n"})
    h.submit(f"d{i}", params={"out": "y\n"})
    h.submit(f"after{i}", schedule={"after": [f"d{i}"]})
    h.gates.wait_started(f"a{i}")
    h.call("follow", follower, ids=[f"a{i}"])
    h.service.peer_closed(client)  # its client went: a{i} is cancelled
    h.gates.wait_started(f"d{i}")
    h.run_to_end(f"d{i}", code=0)
    h.call("cancel", ids=[f"after{i}"])
    h.wait_ended(f"a{i}", f"d{i}", f"after{i}")
    for peer in (follower, watcher):
        h.service.peer_closed(peer)


def test_ended_petitions_and_gone_clients_leave_nothing_behind(h: Harness) -> None:
    for i in range(ROUNDS):
        one_round(h, i)
    # The harness's own waiters (of run_to_end, wait_ended) are still open: long-lived
    # clients. No Job object outlives its petition (once the threads that ended the last
    # ones, and the pool's idle workers, have let go of them).
    assert settles_at(h, 0), len(live_jobs(h))
    h.clock.advance(7200)
    # clean deletes committed records: the last ends may still be in the writer's queue.
    assert h.service.store is not None and h.service.store.flush(5)
    assert h.call("clean", older_than=60)["removed"] == 3 * ROUNDS
    scheduler, events = h.service.scheduler, h.service.events
    assert scheduler.jobs() == []
    assert (scheduler._live, scheduler._waiting, scheduler._running) == ({}, {}, {})
    assert scheduler._dependents == {}
    assert events._waiters == {} and events._followers == {} and events._watchers == {}
    assert all(not p.submitted and not p.subscribed for p in h.service.peers)
    for peer in list(h.service.peers - {h.client}):
        h.service.peer_closed(peer)
    assert h.service.peers == {h.client}
    assert not h.client.legacy_ended
    store = h.service.store
    assert store is not None and store.flush(5) and store.saver.pending == 0


def test_a_long_lived_client_keeps_no_ended_petition(h: Harness) -> None:
    # One connection that waits for and follows petition after petition (the Python API
    # on one session): each ended job is forgotten by its peer, not kept until it goes.
    client = h.peer()
    for i in range(ROUNDS):
        h.submit(f"p{i}", params={"out": "z\n"})
        h.gates.wait_started(f"p{i}")
        h.call("follow", client, ids=[f"p{i}"])
        assert h.call("wait", client, ids=[f"p{i}"])["pending"] == [f"p{i}"]
        h.gates.open(f"p{i}")
        client.expect(event="ended", id=f"p{i}")
    h.wait_ended(f"p{ROUNDS - 1}")
    assert client.subscribed == set()
    assert settles_at(h, 0), len(live_jobs(h))


def test_the_ends_kept_for_dependants_are_bounded(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # How each recent petition ended is kept for the --after checks of its dependants (a
    # record read saved): at most RECENT_ENDS of them, oldest forgotten first.
    monkeypatch.setattr(predicates, "RECENT_ENDS", 5)
    for i in range(12):
        h.submit(f"p{i}")
        h.gates.wait_started(f"p{i}")
        h.run_to_end(f"p{i}")
    scheduler = h.service.scheduler

    def kept() -> list[str]:
        with scheduler.lock:
            return list(scheduler._deps.recent)

    # The scheduler remembers an end just after it is announced (run_to_end returns then).
    deadline = time.monotonic() + DEADLINE
    while kept()[-1:] != ["p11"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert kept() == [f"p{i}" for i in range(7, 12)]
