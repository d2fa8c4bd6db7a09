"""Served streams and the session that waits on them: an ended stream leaks nothing."""

from __future__ import annotations

import os
import pickle
import socket
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from orcha.protocol.outputs import OutputQueue
from orcha.service.job import End
from orcha.service.session import Session
from orcha.service.streams import PetitionStream
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
    petition's output and end, then the client hangs up. The answers it got."""
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
        queue.put((b"o"[0], b"hello"))
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
