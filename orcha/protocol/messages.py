"""The session protocol: what a client and the service say to each other.

A session is one authenticated connection whose first frame is
:data:`~orcha.defaults.SESSION_MAGIC`. After it:

* client -> service: JSON requests ``{"op": ..., ...}`` (plain data only), or a
  :data:`LEGACY` frame carrying a pickled :class:`orcha.interfaces.Message` from the
  original Orcha API.
* service -> client: JSON replies ``{"re": op, "ok": true, ...}`` or
  ``{"re": op, "ok": false, "error": NAME, "message": TEXT}``; JSON events
  ``{"event": "started"|"end", "handle": N, ...}``; and output frames: one tag byte
  (:data:`STDOUT` or :data:`STDERR`), a 4-byte petition handle, then the raw bytes.

Closing the session connection detaches the client: the service cancels every petition
the session submitted and has not finished (a vanished client is the same as Ctrl+C).
"""

from __future__ import annotations

import json
import struct

from orcha.protocol import operations as _operations

# Re-exported: clients import them from here.
from orcha.protocol.ids import check_id as check_id
from orcha.protocol.operations import SubmitRequest as SubmitRequest

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from typing import Any

STDOUT = b"o"[0]
STDERR = b"e"[0]
JSON = b"{"[0]
LEGACY = b"P"[0]

_HANDLE = struct.Struct("!I")

#: Operations a client may request in a JSON frame (declared in orcha.protocol.operations).
OPS = _operations.OPS


def encode(obj: dict[str, Any]) -> bytes:
    """A JSON frame."""
    return json.dumps(obj, separators=(",", ":")).encode()


def decode(frame: bytes) -> dict[str, Any]:
    """Parse a JSON frame; ValueError if it is not a JSON object."""
    try:
        obj = json.loads(frame)
    except RecursionError:
        raise ValueError("the request is nested too deeply") from None
    if not isinstance(obj, dict):
        raise ValueError("a request must be a JSON object")
    return obj


def output_frame(tag: int, handle: int, data: bytes) -> bytes:
    """An output frame: tag byte, handle, data."""
    return bytes((tag,)) + _HANDLE.pack(handle) + data


def split_output(frame: bytes) -> tuple[int, int, memoryview]:
    """(tag, handle, data) of an output frame."""
    (handle,) = _HANDLE.unpack_from(frame, 1)
    return frame[0], handle, memoryview(frame)[5:]


def reply(op: str, **fields: Any) -> bytes:
    return encode({"re": op, "ok": True, **fields})


def error_reply(op: str, error: str, message: str) -> bytes:
    return encode({"re": op, "ok": False, "error": error, "message": message})
