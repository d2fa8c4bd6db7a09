"""Served streams and the session that waits on them: an ended stream leaks nothing; a
subscriber that reads too slowly is bounded and told what it skipped."""

from __future__ import annotations

import os
import pickle
import socket
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from orcha.protocol import messages
from orcha.protocol.messages import STDOUT
from orcha.protocol.outputs import OutputQueue
from orcha.service.job import End
from orcha.service.logs import PetitionLog
from orcha.service.session import Session
from orcha.service.streams import EventStream, PetitionStream
from orcha.states import State

JOIN = 5.0


class _Job:
    """What a stream reads of its job: the ID (hashable, as a Job is)."""

    def __init__(self, petition_id: str) -> None:
        self.id = petition_id


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class _Service:
    def peer_opened(self, peer: Any) -> None:
        pass

    def peer_closed(self, peer: Any) -> None:
        pass


class _Server:
    """The part of ManagerServer a session uses: served objects by id."""

    public: list[str] = []

    def __init__(self) -> None:
        self.service = _Service()
        self.objects: dict[str, Any] = {}

    def serve(self, obj: Any) -> str:
        ident = f"{id(obj):x}"
        self.objects[ident] = obj
        return ident

    def lookup(self, ident: str) -> tuple[Any, set[str]]:
        return self.objects[ident], {"get_batch"}

    def release(self, ident: str | None) -> None:
        self.objects.pop(ident or "", None)


def _attached_run(server: _Server) -> list[Any]:
    """One attached run as ``orcha run`` does it: two batched reads in flight, the
    petition's end, then the client hangs up. The answers it got."""
    ours, theirs = socket.socketpair()
    session = Session(Connection(theirs.detach()), server)  # type: ignore[arg-type]
    queue = OutputQueue()
    job = _Job("p1")
    session.attach(job, queue)  # type: ignore[arg-type]
    stream = session.streams[1]
    thread = threading.Thread(target=session.serve)
    thread.start()
    client = Connection(ours.detach())
    try:
        client.send_bytes(pickle.dumps((stream.ident, "get_batch", (), {})))
        client.send_bytes(pickle.dumps((stream.ident, "get_batch", (), {})))
        deadline = time.monotonic() + JOIN
        while len(session._answers) < 2:  # both reads are waiting, as in the leak
            assert time.monotonic() < deadline, "the session did not read both requests"
            time.sleep(0.001)
        # One put: the first read gets the end, the second is the read after the end.
        queue.put(End(State.SUCCEEDED, 0, None, False))
        answers = []
        for _ in range(2):  # the second read, after the end, is answered empty
            assert client.poll(JOIN), "no answer to a read"
            answers.append(client.recv())
    finally:
        client.close()
    thread.join(JOIN)
    assert not thread.is_alive()
    return answers


def test_many_attached_runs_leave_no_descriptor_behind() -> None:
    server = _Server()
    _attached_run(server)  # the first may open what stays (selectors, caches)
    before = open_fds()
    for _ in range(50):
        first, second = _attached_run(server)
        assert first[0] == "#RETURN" and first[1][-1]["event"] == "end"
        assert second == ("#RETURN", [])
    assert open_fds() - before <= 2


def test_a_closed_queue_never_creates_a_descriptor_again() -> None:
    queue = OutputQueue()
    queue.fileno()
    queue.close()
    before = open_fds()
    try:
        queue.fileno()
    except ValueError:
        pass
    else:
        raise AssertionError("fileno of a closed queue must raise")
    assert queue.closed
    assert open_fds() == before


def test_a_stream_is_closed_once_its_end_is_taken() -> None:
    server = _Server()
    session = Session(None, server)  # type: ignore[arg-type]
    queue = OutputQueue()
    session.attach(_Job("p1"), queue)  # type: ignore[arg-type]
    stream: PetitionStream = session.streams[1]
    queue.put(End(State.FAILED, 3, "boom", False))
    assert not stream.closed
    items = stream.take()
    assert items[-1]["event"] == "end"
    assert stream.closed
    assert stream.take() == []


# -- a subscriber that reads too slowly (reliability, point 6) -----------------------------
def _write(log: PetitionLog, stream: EventStream, handle: int, data: bytes) -> None:
    """What a petition's emit does for a follower: log, then push (under its lock)."""
    log.write(STDOUT, data)
    stream.push_output(handle, messages.output_frame(STDOUT, handle, data), log.size)


def _read_all(stream: EventStream) -> list[Any]:
    items: list[Any] = []
    while batch := stream.take():
        items.extend(batch)
    return items


def test_a_follower_behind_skips_to_the_log_and_misses_nothing(tmp_path: Path) -> None:
    log = PetitionLog(str(tmp_path / "p.log"), cap=1 << 20)
    stream = EventStream(max_bytes=100)
    log.write(STDOUT, b"before-follow;")  # replayed by follow itself
    stream.follow(1, log.path, log.size)
    chunks = [b"%03d:" % i + b"x" * 20 for i in range(40)]  # ~1000 bytes against 100
    for chunk in chunks[:20]:
        _write(log, stream, 1, chunk)
    assert stream.skips == 1
    assert stream.queue.qsize() < 20  # bounded: the rest stays in the log
    stream.push(messages.encode({"event": "end", "handle": 1, "state": "SUCCEEDED"}))
    items = _read_all(stream)
    kinds = [x["event"] if isinstance(x, dict) else "output" for x in items]
    assert "skipped" in kinds and kinds[-1] == "end"  # the end waits for the catch-up
    data = b"".join(x[2] for x in items if isinstance(x, tuple))
    assert data == b"".join(chunks[:20])  # in order, nothing lost, nothing twice
    for chunk in chunks[20:22]:  # caught up: live again
        _write(log, stream, 1, chunk)
    assert [x[2] for x in stream.take()] == chunks[20:22]
    stream.close()
    log.close()


def test_a_slow_watcher_is_told_how_many_events_were_dropped() -> None:
    stream = EventStream(max_bytes=200)
    output = messages.encode({"event": "output", "petition": "p", "data": {"text": "y" * 50}})
    for _ in range(10):
        stream.push(output, droppable=True)
    finished = messages.encode({"event": "finished", "petition": "p", "data": {}})
    stream.push(finished)  # never dropped: a watcher of p waits for it
    stream.push(output, droppable=True)  # after the finish: still behind, dropped
    events = [x["event"] for x in stream.take()]
    kept = events.count("output")
    assert 0 < kept < 10
    # Told before what came after the drops (a watcher may stop at "finished").
    assert events[kept:] == ["dropped", "finished", "dropped"]
    stream.push(output, droppable=True)  # caught up: delivered again
    assert [x["event"] for x in stream.take()] == ["output"]
    stream.close()
