"""The intake of the manager server: unauthenticated connections are bounded in number
and in time, a thread that cannot start costs one connection, and the log is throttled."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

import pytest

from orcha.service import server as server_module
from orcha.service.server import TOO_MANY, TOO_SLOW, Intake, ManagerServer, Pending


class FakeConn:
    def __init__(self, name: str) -> None:
        self.name = name
        self.hung_up = False
        self.closed = False

    def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """An intake whose threads never run (their handshakes last until told)."""

    def __init__(self, limit: int = 3, fail_threads: bool = False) -> None:
        self.clock = Clock()
        self.started: list[tuple[FakeConn, Pending]] = []
        self.fail_threads = fail_threads
        self.intake = Intake(
            self.handle, limit=limit, deadline=5.0, log_interval=10.0, clock=self.clock,
            start_thread=self.start, hang_up=self.hang_up, reaper=False,
        )  # fmt: skip

    def handle(self, conn: Any, pending: Pending) -> None:
        self.started.append((conn, pending))

    def start(self, target: Callable[[], None]) -> None:
        if self.fail_threads:
            raise RuntimeError("can't start new thread")
        target()

    def hang_up(self, conn: Any) -> None:
        conn.hung_up = True


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "orcha.service.server"]


def test_beyond_the_cap_the_oldest_is_hung_up() -> None:
    h = Harness(limit=3)
    conns = [FakeConn(str(i)) for i in range(5)]
    for conn in conns:
        h.intake.admit(conn)  # type: ignore[arg-type]
    assert len(h.intake) == 3
    assert [c.hung_up for c in conns] == [True, True, False, False, False]


def test_an_authenticated_connection_is_no_longer_pending() -> None:
    h = Harness(limit=2)
    a, b, c = FakeConn("a"), FakeConn("b"), FakeConn("c")
    h.intake.admit(a)  # type: ignore[arg-type]
    h.intake.done(h.started[0][1])  # authenticated: served, never hung up by the intake
    h.intake.admit(b)  # type: ignore[arg-type]
    h.intake.admit(c)  # type: ignore[arg-type]
    assert not a.hung_up and not b.hung_up
    assert len(h.intake) == 2


def test_the_deadline_is_for_the_whole_handshake() -> None:
    h = Harness()
    slow = FakeConn("slow")
    h.intake.admit(slow)  # type: ignore[arg-type]
    h.clock.now += 4.9
    h.intake.expire()
    assert not slow.hung_up  # however many bytes trickled in meanwhile...
    h.clock.now += 0.2
    h.intake.expire()
    assert slow.hung_up  # ...5 s after it was accepted, it is gone
    assert len(h.intake) == 0


def test_a_thread_that_cannot_start_costs_only_its_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness(fail_threads=True)
    conn = FakeConn("x")
    with caplog.at_level(logging.WARNING):
        h.intake.admit(conn)  # type: ignore[arg-type]
    assert conn.closed and len(h.intake) == 0
    assert "can't start new thread" in warnings(caplog)[0]


def test_refusals_are_logged_at_most_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(limit=1)
    with caplog.at_level(logging.WARNING):
        for i in range(300):
            h.intake.admit(FakeConn(str(i)))  # type: ignore[arg-type]
            h.clock.now += 0.01  # 300 connections in 3 s
        assert len(warnings(caplog)) == 1
        h.clock.now += 10
        h.intake.expire()
    lines = warnings(caplog)
    assert len(lines) == 2
    assert "closed 299 connections" in lines[1] and TOO_MANY in lines[1]
    assert TOO_SLOW in lines[1]


def test_a_dropped_connection_is_not_logged_again_by_its_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness(limit=1)
    with caplog.at_level(logging.WARNING):
        h.intake.admit(FakeConn("a"))  # type: ignore[arg-type]
        h.intake.admit(FakeConn("b"))  # type: ignore[arg-type]  (a is dropped: 1 line)
        h.clock.now += 20
        h.intake.done(h.started[0][1], "left before authenticating")  # a's thread ends
        h.intake.expire()  # b too slow: counted and due
    lines = warnings(caplog)
    assert len(lines) == 2 and "closed 1 connection " in lines[1]


class _Listener:
    """accept() fails with EMFILE a few times, then has nothing."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def accept(self) -> tuple[socket.socket, Any]:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        raise BlockingIOError


def test_out_of_descriptors_accept_backs_off_and_makes_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(server_module.time, "sleep", sleeps.append)
    srv = ManagerServer({}, "addr", b"k", None)  # type: ignore[arg-type]
    h = Harness()
    srv.intake = h.intake
    old = FakeConn("old")
    h.intake.admit(old)  # type: ignore[arg-type]
    srv.accept_pending(_Listener(1))
    assert sleeps == [server_module.ACCEPT_BACKOFF]  # one pause, no spinning
    assert old.hung_up  # the oldest keyless connection made room
    srv.accept_pending(_Listener(0))
    assert len(sleeps) == 1
