"""Batches of output on the wire, written and read without copying their data.

A batch is the managers answer ``("#RETURN", items)`` to a ``get_batch`` of a petition's
output; most of its bytes are the data of ``("stdout"|"stderr", data)`` chunks. The
service writes it (:func:`answer_pieces`, :func:`write_pieces`) as an ordinary pickle
that any ``multiprocessing.managers`` client reads, spelled so that each chunk's data is
a piece of its own, written straight from the bytes the petition's pipe gave (never
copied into a pickle buffer). orcha's client reads it back (:func:`output_batch`) as
views into the frame it received (never copied out of it).

Imports nothing the client does not already have (the C ``_struct``, not ``struct.py``):
it is on ``orcha run``'s path.
"""

from __future__ import annotations

import _struct as struct  # the C module: struct.py itself costs the client start-up
import os

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from typing import Any

_RETURN = b"\x80\x04\x8c\x07#RETURN]("  # PROTO 4, "#RETURN", EMPTY_LIST, MARK
_END = b"e\x86."  # APPENDS, TUPLE2, STOP
_NAMES = ("stdout", "stderr")
_STREAM = {name: b"\x8c" + bytes([len(name)]) + name.encode() for name in _NAMES}
_BINBYTES8 = b"\x8e"
#: A chunk's header: its stream's name (SHORT_BINUNICODE), BINBYTES8 and the data's length.
_CHUNK = struct.Struct("<9sQ")
_NAME_OF = {_STREAM[name] + _BINBYTES8: name for name in _NAMES}
_TUPLE2 = b"\x86"
_FRAME_LENGTH = struct.Struct("!i")


def answer_pieces(items: list[Any]) -> list[bytes] | None:
    """The frame of the managers answer ``("#RETURN", items)`` as pieces to write one
    after the other (the frame's length header first); None if ``items`` holds no output
    chunk (the ordinary path is as good)."""
    if not any(_is_chunk(x) for x in items):
        return None
    pieces: list[bytes] = [b"", _RETURN]
    for x in items:
        if _is_chunk(x):
            pieces.append(_STREAM[x[0]] + _BINBYTES8 + len(x[1]).to_bytes(8, "little"))
            pieces.append(x[1])
            pieces.append(_TUPLE2)
        else:
            import pickle

            # Protocol 3 has no framing: a whole pickle's opcodes, without its PROTO and
            # STOP, push the item inside another pickle (its memo is only used within).
            pieces.append(pickle.dumps(x, 3)[2:-1])
    pieces.append(_END)
    length = sum(len(p) for p in pieces)
    if length > 0x7FFFFFFF:
        return None  # beyond the short length header: the ordinary path frames it
    pieces[0] = _FRAME_LENGTH.pack(length)
    return pieces


def _is_chunk(x: Any) -> bool:
    return type(x) is tuple and len(x) == 2 and x[0] in _STREAM and type(x[1]) is bytes


def write_pieces(fd: int, pieces: list[bytes]) -> None:
    """Write every piece to the blocking descriptor ``fd``, in order, in as few system
    calls as it takes (OSError if one fails)."""
    views = [memoryview(p) for p in pieces if p]
    while views:
        done = os.writev(fd, views[:1024])  # IOV_MAX
        while views and done >= len(views[0]):
            done -= len(views[0])
            views.pop(0)
        if done:
            views[0] = views[0][done:]


def output_batch(frame: memoryview) -> list[Any] | None:
    """The items of an answer frame written by :func:`answer_pieces` whose items are all
    output chunks: ``(name, data)`` with ``data`` a view into ``frame`` (valid as long as
    the frame is). None for any other frame: the caller unpickles it."""
    end = len(frame) - len(_END)
    if frame[: len(_RETURN)] != _RETURN or frame[end:] != _END:
        return None
    items: list[Any] = []
    pos = len(_RETURN)
    while pos < end:
        if end - pos < _CHUNK.size + 1:
            return None
        prefix, size = _CHUNK.unpack_from(frame, pos)
        name = _NAME_OF.get(prefix)
        if name is None:
            return None
        start = pos + _CHUNK.size
        pos = start + size
        if pos >= end or frame[pos] != _TUPLE2[0]:
            return None
        items.append((name, frame[start:pos]))
        pos += 1
    return items
