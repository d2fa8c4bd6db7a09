"""OutputQueue: FIFO, timeouts, drain, eventfd readiness, back-pressure, discard, close."""

from __future__ import annotations

import os
import queue
import select
import threading
import time
from collections.abc import Iterator

import pytest

from orcha.protocol.outputs import OutputQueue

JOIN = 5.0  # seconds a helper thread may take before the test fails


@pytest.fixture
def q() -> Iterator[OutputQueue]:
    oq = OutputQueue()
    yield oq
    oq.close()


def readable(fd: int, timeout: float = 0.05) -> bool:
    r, _, _ = select.select([fd], [], [], timeout)
    return fd in r


def test_fifo_order(q: OutputQueue) -> None:
    items = ["a", b"b", 3, None, ("o", b"x")]
    for item in items:
        q.put(item)
    assert q.qsize() == len(items)
    assert not q.empty()
    assert [q.get() for _ in items] == items
    assert q.empty()


def test_get_timeout_raises_empty(q: OutputQueue) -> None:
    start = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    assert time.monotonic() - start >= 0.04


def test_get_nowait_on_empty_raises(q: OutputQueue) -> None:
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(block=False)
    q.put_nowait("x")
    assert q.get_nowait() == "x"


def test_get_wakes_when_item_arrives(q: OutputQueue) -> None:
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(q.get(timeout=JOIN)))
    reader.start()
    time.sleep(0.02)
    q.put("late")
    reader.join(JOIN)
    assert not reader.is_alive()
    assert got == ["late"]


def test_drain_returns_everything_in_order(q: OutputQueue) -> None:
    for i in range(5):
        q.put(f"line {i}")
    assert q.drain() == [f"line {i}" for i in range(5)]
    assert q.drain() == []
    assert q.empty()
    with pytest.raises(queue.Empty):
        q.get_nowait()


def test_fileno_readable_after_put_and_not_after_drain(q: OutputQueue) -> None:
    fd = q.fileno()
    assert q.fileno() == fd  # created once
    assert not readable(fd)
    q.put(b"data")
    assert readable(fd)
    q.put(b"more")
    assert readable(fd)
    assert q.drain() == [b"data", b"more"]
    assert not readable(fd)
    q.put("again")
    assert readable(fd)


def test_an_item_put_without_waking_waits_for_the_next_or_for_wake(q: OutputQueue) -> None:
    fd = q.fileno()
    q.put(b"quiet", wake=False)
    assert not readable(fd)  # its reader is not woken for it
    q.put(b"loud")  # the next one wakes it, for both (the queue was not empty)
    assert readable(fd)
    assert q.drain() == [b"quiet", b"loud"]
    assert not readable(fd)
    q.put(b"quiet", wake=False)
    q.wake()
    assert readable(fd)
    assert q.drain() == [b"quiet"]
    q.wake()  # nothing waiting: nothing to see
    assert not readable(fd)
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(q.get(timeout=JOIN)))
    reader.start()
    q.put("for a blocking reader", wake=False)  # a blocking get is woken all the same
    reader.join(JOIN)
    assert got == ["for a blocking reader"]


def test_fileno_not_readable_after_get_takes_last_item(q: OutputQueue) -> None:
    # documented: "readable while items are waiting"
    fd = q.fileno()
    q.put("a")
    q.put("b")
    assert q.get_nowait() == "a"
    assert readable(fd)  # "b" still waits
    assert q.get(timeout=1) == "b"
    assert q.empty()
    assert not readable(fd)


def test_fileno_created_late_is_readable_if_items_wait(q: OutputQueue) -> None:
    q.put("early")
    fd = q.fileno()
    assert readable(fd)
    assert q.drain() == ["early"]
    assert not readable(fd)


def test_bounded_put_blocks_until_reader_drains() -> None:
    oq = OutputQueue(max_bytes=10)
    try:
        oq.put(b"x" * 11)  # an empty queue always takes an item, even a large one
        done = threading.Event()

        def writer() -> None:
            oq.put(b"y" * 4)
            done.set()

        t = threading.Thread(target=writer)
        t.start()
        assert not done.wait(0.1)  # over the limit: the writer waits
        assert oq.qsize() == 1
        assert oq.drain() == [b"x" * 11]
        t.join(JOIN)
        assert not t.is_alive()
        assert done.is_set()
        assert oq.drain() == [b"y" * 4]
    finally:
        oq.close()


def test_bounded_put_unblocks_on_get() -> None:
    oq = OutputQueue(max_bytes=4)
    try:
        oq.put("12345")
        t = threading.Thread(target=oq.put, args=("abc",))
        t.start()
        time.sleep(0.05)
        assert t.is_alive()
        assert oq.get(timeout=JOIN) == "12345"
        t.join(JOIN)
        assert not t.is_alive()
        assert oq.get_nowait() == "abc"
    finally:
        oq.close()


def test_bounded_put_with_timeout_raises_full() -> None:
    oq = OutputQueue(max_bytes=3)
    try:
        oq.put("four")
        start = time.monotonic()
        with pytest.raises(queue.Full):
            oq.put("more", timeout=0.05)
        assert time.monotonic() - start >= 0.04
        assert oq.drain() == ["four"]  # the refused item was not queued
    finally:
        oq.close()


def test_bounded_queue_takes_sizeless_items() -> None:
    oq = OutputQueue(max_bytes=3)
    try:
        oq.put("four")
        oq.put(7, timeout=0.01)  # not text or bytes (an exit code, an end marker): never waits
        oq.put(None, timeout=0.01)
        assert oq.drain() == ["four", 7, None]
    finally:
        oq.close()


def test_up_to_max_bytes_does_not_block() -> None:
    oq = OutputQueue(max_bytes=10)
    try:
        oq.put(b"12345")
        oq.put(b"67890", timeout=0.01)  # 5 <= 10 buffered before this put
        oq.put(b"!", timeout=0.01)  # 10 <= 10
        with pytest.raises(queue.Full):
            oq.put(b"?", timeout=0.01)  # 11 > 10
    finally:
        oq.close()


def test_discard_drops_queued_and_later_puts(q: OutputQueue) -> None:
    fd = q.fileno()
    q.put("a")
    q.discard()
    assert q.empty()
    q.put("b")
    q.put_nowait(b"c")
    assert q.qsize() == 0
    assert q.drain() == []
    assert not readable(fd)


def test_discard_wakes_blocked_putter() -> None:
    oq = OutputQueue(max_bytes=2)
    try:
        oq.put("abc")
        t = threading.Thread(target=oq.put, args=("def",))
        t.start()
        time.sleep(0.05)
        assert t.is_alive()
        oq.discard()
        t.join(JOIN)
        assert not t.is_alive()
        assert oq.empty()
        oq.put("x" * 100, timeout=0.01)  # never blocks once discarded
        assert oq.empty()
    finally:
        oq.close()


def test_stop_waiting_releases_a_blocked_put_and_keeps_the_bound_and_the_events() -> None:
    """A petition being stopped never waits for a client that stopped reading: output
    beyond the bound is dropped (the log keeps it), its end is still queued; with
    ``stop=False`` (its next attempt) puts wait again."""
    oq = OutputQueue(max_bytes=2)
    try:
        oq.put((1, b"abc"))
        t = threading.Thread(target=oq.put, args=((1, b"def"),))
        t.start()  # waits for room (if it has got that far: either way it returns)
        oq.stop_waiting()
        t.join(JOIN)
        assert not t.is_alive()
        assert not oq.would_block()
        oq.put((1, b"ghi"))  # never waits now
        oq.put(0)  # an exit code (its end): still queued
        assert oq.drain() == [(1, b"abc"), 0]
        oq.put((1, b"jkl"))  # room again: queued
        assert oq.drain() == [(1, b"jkl")]
        oq.stop_waiting(False)
        oq.put((1, b"mno"))
        assert oq.would_block()
        with pytest.raises(queue.Full):
            oq.put((1, b"pqr"), timeout=0.01)
    finally:
        oq.close()


def test_close_releases_descriptor_and_is_idempotent() -> None:
    oq = OutputQueue()
    fd = oq.fileno()
    oq.put("x")
    oq.close()
    with pytest.raises(OSError):
        os.fstat(fd)
    oq.close()
    oq.put("dropped")
    assert oq.empty()


def test_queue_interface() -> None:
    oq = OutputQueue()
    assert oq.full() is False
    assert oq.empty() is True
    oq.put("x", True, None)  # queue.Queue's positional signature
    assert oq.get(True, None) == "x"
    oq.close()


def test_the_cap_counts_the_data_of_output_chunks() -> None:
    """orcha's own petitions queue (stream, data) chunks: they count against the cap as
    bytes do, so a slow reader holds the writer back."""
    from orcha.protocol.messages import STDERR, STDOUT
    from orcha.protocol.outputs import _size

    assert _size((STDOUT, b"x" * 7)) == 7
    assert _size(b"xy") == _size("xy") == 2
    assert _size(("stdout", 3)) == _size(42) == 0
    oq = OutputQueue(max_bytes=10)
    try:
        oq.put((STDOUT, b"x" * 11))
        done = threading.Event()

        def writer() -> None:
            oq.put((STDERR, b"y" * 4))
            done.set()

        t = threading.Thread(target=writer)
        t.start()
        assert not done.wait(0.1)  # over the limit: the writer waits
        assert oq.drain() == [(STDOUT, b"x" * 11)]
        t.join(JOIN)
        assert done.is_set()
        assert oq.drain() == [(STDERR, b"y" * 4)]
    finally:
        oq.close()


def test_get_batch_waits_for_one_item_and_returns_all_queued(q: OutputQueue) -> None:
    assert q.get_batch(timeout=0) == []
    got: list[list[object]] = []
    t = threading.Thread(target=lambda: got.append(q.get_batch()))
    t.start()
    q.put(1)
    t.join(JOIN)
    assert not t.is_alive()
    q.put(2)
    q.put(3)
    assert got[0] + q.get_batch() == [1, 2, 3]
    assert q.take is not None and q.take() == []


def test_offer_refuses_beyond_the_bound_and_never_blocks() -> None:
    q = OutputQueue(max_bytes=10)
    assert q.offer(b"x" * 50)  # an empty queue takes anything: never refused for ever
    assert not q.offer(b"y")
    q.drain()
    assert q.offer(b"a" * 6) and q.offer(b"b" * 4)
    assert not q.offer(b"c")
    assert q.offer(("event", 1))  # sizeless items always fit
    q.close()


def test_a_batch_lent_to_a_session_counts_until_it_is_released() -> None:
    """A session writing a batch to a slow client still holds it: the writer waits for the
    release, so queued and in-flight output together stay within the bound."""
    oq = OutputQueue(max_bytes=10)
    try:
        oq.put(("o", b"x" * 11))
        assert oq.lend() == [("o", b"x" * 11)]
        assert oq.held == 11
        done = threading.Event()
        t = threading.Thread(target=lambda: (oq.put(("o", b"y")), done.set()))
        t.start()
        assert not done.wait(0.1)  # the batch is still being written: the writer waits
        oq.release()
        t.join(JOIN)
        assert done.is_set() and oq.held == 1
        assert oq.lend() == [("o", b"y")]
        assert oq.qsize() == 0
        oq.put(("o", b"z" * 3))
        assert oq.get() == ("o", b"z" * 3)  # a reader back for more released the batch
        assert oq.held == 0
    finally:
        oq.close()


def test_the_peak_held_is_recorded_for_bounded_queues_only() -> None:
    OutputQueue.peak_bytes = 0
    unbounded = OutputQueue()
    unbounded.put(b"x" * 1000)
    assert OutputQueue.peak_bytes == 0
    bounded = OutputQueue(max_bytes=100)
    bounded.put(("o", memoryview(b"x" * 60)))
    bounded.lend()
    bounded.put(("o", b"y" * 30))
    assert OutputQueue.peak_bytes == 90  # lent and queued together
    bounded.release()
    bounded.put(("o", b"z" * 5))
    assert OutputQueue.peak_bytes == 90
    unbounded.close()
    bounded.close()


def test_every_kind_of_output_chunk_counts() -> None:
    from orcha.protocol.outputs import _size

    assert _size(("stdout", memoryview(b"abc"))) == 3
    assert _size(("stdout", 7, b"abcd")) == 4  # a followed petition's (stream, handle, data)
    assert _size(bytearray(b"ab")) == _size(memoryview(b"ab")) == 2
    assert _size(("stdout", None)) == _size(()) == 0
