"""Ordered capture: writes to two SEQPACKET channels come back in the order made."""

from __future__ import annotations

import os
import selectors
import socket
import time
from collections.abc import Iterator

import pytest

from orcha.protocol.messages import STDERR, STDOUT
from orcha.service.capture import (
    SO_TIMESTAMPNS,
    Channels,
    OrderedReader,
    capture_channels,
    is_ordered,
)


@pytest.fixture
def channels() -> Iterator[Channels]:
    c = Channels()
    yield c
    c.close()


class _Proc:
    stdout: object = None
    stderr: object = None


def _round_trip(channels: Channels, writes: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    out, err = channels.child[0].fileno(), channels.child[1].fileno()
    for stream, data in writes:
        os.write(out if stream == STDOUT else err, data)
    proc = _Proc()
    channels.started(proc)
    reader = OrderedReader(settle_ns=0)
    got: list[tuple[int, bytes]] = []
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, STDOUT)
        sel.register(proc.stderr, selectors.EVENT_READ, STDERR)
        while sel.get_map():
            reader.round(sel, lambda s, d: got.append((s, d)))
    reader.close()
    return got


def test_writes_to_both_streams_come_back_in_the_order_made(channels: Channels) -> None:
    writes = [(STDOUT, b"1\n"), (STDERR, b"2\n"), (STDOUT, b"3\n"), (STDERR, b"4\n")] * 50
    assert _round_trip(channels, writes) == writes


def test_the_petition_can_write_what_its_raised_buffer_holds(channels: Channels) -> None:
    big = os.urandom(1 << 20)  # over the default socket buffer (about 200 KiB)
    assert channels.largest >= 2 << 20
    writes = [(STDERR, b"first\n"), (STDOUT, big), (STDERR, b"last\n")]
    assert _round_trip(channels, writes) == writes


def test_the_service_ends_are_read_only_for_the_petition(channels: Channels) -> None:
    with pytest.raises(OSError):
        channels.ours[0].send(b"x")  # shut for writing: nothing reaches the petition


def test_a_message_stamped_after_the_round_began_waits_for_the_next() -> None:
    """The fake clock runs a second behind the kernel's: what the kernel stamps now is
    later than the round's start, so it is held until a round that starts after it."""
    now = [time.time_ns() - 1_000_000_000]
    reader = OrderedReader(largest=64, stamp=lambda: now[0], settle_ns=100)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        a.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        b.send(b"x")
        reader.begin()
        assert reader.read(a, STDOUT)
        assert reader.ready() == []
        assert 0.5 < (reader.due_in() or 0) < 2  # due once the clock has passed its stamp
        now[0] += 2_000_000_000
        reader.begin()
        assert reader.read(a, STDOUT)
        assert reader.ready() == [(STDOUT, b"x")] and reader.due_in() is None
        b.send(b"y")
        b.close()
        assert not reader.read(a, STDOUT)  # after "y": no message, no stamp, the end
        assert reader.ready(final=True) == [(STDOUT, b"y")]
    reader.close()


def test_pipes_stay_the_default() -> None:
    proc = _Proc()
    pipes = capture_channels(False)
    pipes.started(proc)
    assert proc.stdout is None and not is_ordered(proc)
    ordered = capture_channels(True)
    assert isinstance(ordered, Channels)
    ordered.started(proc)
    assert is_ordered(proc)
    ordered.close()
