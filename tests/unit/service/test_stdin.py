"""StdinFeed: an attached client's input, written to its petition's stdin pipe."""

from __future__ import annotations

import os
import threading

import pytest

from orcha.service.stdin import StdinFeed
from tests.conftest import wait_for


class Reports:
    def __init__(self) -> None:
        self.items: list[tuple[int, bool]] = []
        self.lock = threading.Lock()

    def __call__(self, read: int, closed: bool) -> None:
        with self.lock:
            self.items.append((read, closed))

    @property
    def last(self) -> tuple[int, bool] | None:
        with self.lock:
            return self.items[-1] if self.items else None


def _pipe() -> tuple[int, object]:
    r, w = os.pipe()
    return r, os.fdopen(w, "wb", buffering=0)


def test_what_is_put_reaches_the_pipe_and_eof_closes_it() -> None:
    reports = Reports()
    feed = StdinFeed(1 << 16, reports)
    r, w = _pipe()
    feed.put(b"hello ")
    feed.attach(w)  # type: ignore[arg-type]
    feed.put(b"world", eof=True)
    got = b""
    while chunk := os.read(r, 100):
        got += chunk
    os.close(r)
    assert got == b"hello world"  # and then EOF: the feed closed its end
    assert wait_for(lambda: reports.last == (11, False))
    feed.close()


def test_the_window_bounds_what_is_buffered() -> None:
    feed = StdinFeed(10, Reports())
    assert feed.put(b"12345") == 5
    with pytest.raises(ValueError, match="window"):
        feed.put(b"123456")
    feed.put(b"", eof=True)
    with pytest.raises(ValueError, match="closed by its client"):
        feed.put(b"x")
    feed.close()
    assert feed.put(b"x" * 100) == 0  # ended: dropped, never refused


def test_a_petition_that_closes_its_stdin_is_reported_closed() -> None:
    reports = Reports()
    feed = StdinFeed(1 << 20, reports)
    r, w = _pipe()
    os.close(r)  # the petition stopped reading
    feed.attach(w)  # type: ignore[arg-type]
    feed.put(b"x" * 1000)
    assert wait_for(lambda: reports.last == (0, True))
    assert feed.closed
    assert feed.put(b"more") == 0


def test_a_slow_reader_gets_everything_in_order_and_close_stops_the_writer() -> None:
    reports = Reports()
    feed = StdinFeed(1 << 20, reports)
    r, w = _pipe()
    feed.attach(w)  # type: ignore[arg-type]
    data = os.urandom(300_000)  # more than a pipe holds: the writer waits for the reader
    feed.put(data)
    got = b""
    while len(got) < len(data):
        got += os.read(r, 7000)
    assert got == data
    assert wait_for(lambda: reports.last == (len(data), False))
    feed.close()  # the petition ended: the writer closes the pipe, reports nothing more
    assert os.read(r, 10) == b""
    os.close(r)
    count = len(reports.items)
    feed.put(b"late")
    assert len(reports.items) == count


def test_a_feed_never_attached_releases_its_descriptors() -> None:
    before = len(os.listdir("/proc/self/fd"))
    feed = StdinFeed(10, Reports())
    feed.close()
    assert len(os.listdir("/proc/self/fd")) == before
