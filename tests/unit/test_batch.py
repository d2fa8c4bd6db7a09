"""Output batches written without copying their data, read back as views."""

from __future__ import annotations

import os
import pickle
import socket
import struct
import threading
from multiprocessing.connection import Connection
from typing import Any

import pytest

from orcha.protocol.batch import answer_pieces, output_batch, write_pieces
from orcha.protocol.wire import WireConnection, answer

MIXED: list[Any] = [
    {"event": "started", "id": "a"},
    ("stdout", b"x" * 200_000),
    ("stderr", b"e\n"),
    ("stdout", b""),
    {"event": "end", "id": "a", "code": 0, "timestamp": 1.5, "message": None, "raw": b"\x00"},
]


@pytest.mark.parametrize("items", [MIXED, MIXED[1:4], [("stderr", b"z")]])
def test_the_pieces_spell_an_ordinary_pickle_of_the_answer(items: list[Any]) -> None:
    pieces = answer_pieces(items)
    assert pieces is not None
    frame = b"".join(pieces)
    (length,) = struct.unpack("!i", frame[:4])
    assert length == len(frame) - 4
    assert pickle.loads(frame[4:]) == ("#RETURN", items)


def test_the_data_of_a_chunk_is_a_piece_itself_not_a_copy() -> None:
    data = os.urandom(1 << 20)
    pieces = answer_pieces([("stdout", data)])
    assert pieces is not None and any(p is data for p in pieces)


def test_answers_without_output_take_the_ordinary_path() -> None:
    assert answer_pieces([{"event": "end"}]) is None
    assert answer_pieces([]) is None
    assert answer_pieces([("stdout", "text, not bytes")]) is None


def test_a_batch_of_chunks_reads_back_as_views_of_the_frame() -> None:
    items = [("stdout", b"a" * 70_000), ("stderr", b"b\n"), ("stdout", b"")]
    frame = memoryview(b"".join(answer_pieces(items) or [])[4:])
    got = output_batch(frame)
    assert got is not None
    assert [(name, bytes(data)) for name, data in got] == items
    assert all(isinstance(data, memoryview) for _, data in got)


@pytest.mark.parametrize(
    "value", [MIXED, [1, 2], {"event": "end"}, [("stdout", b"x"), ("stdin", b"y")]]
)
def test_any_other_frame_is_left_to_the_unpickler(value: Any) -> None:
    pieces = answer_pieces(value) if isinstance(value, list) else None
    frame = b"".join(pieces)[4:] if pieces else pickle.dumps(("#RETURN", value), 4)
    assert output_batch(memoryview(frame)) is None
    assert answer(frame) == value


def test_a_cut_or_altered_frame_is_never_read_as_a_batch() -> None:
    frame = b"".join(answer_pieces([("stdout", b"a" * 100)]) or [])[4:]
    for bad in (frame[:-4] + frame[-3:], frame.replace(b"stdout", b"stdoux"), frame[:20]):
        assert output_batch(memoryview(bad)) is None


def test_written_pieces_reach_both_kinds_of_reader_whole() -> None:
    """The service writes the pieces; multiprocessing's Connection and orcha's lean
    client both read the one frame they make."""
    items = [("stdout", os.urandom(3 << 20)), ("stderr", b"tail\n")]
    for reader in ("multiprocessing", "orcha"):
        a, b = socket.socketpair()
        with a, b:
            pieces = answer_pieces(items)
            assert pieces is not None

            writer = threading.Thread(target=write_pieces, args=(a.fileno(), pieces))
            writer.start()
            if reader == "multiprocessing":
                conn = Connection(os.dup(b.fileno()))
                got = pickle.loads(conn.recv_bytes())
                conn.close()
                assert got == ("#RETURN", items)
            else:
                batch = output_batch(WireConnection(b).recv_frame())
                assert batch is not None
                assert [(n, bytes(d)) for n, d in batch] == items
            writer.join()
