"""What travels in orcha's requests and streams, as plain data.

Requests and replies go over the ``multiprocessing.managers`` protocol (see
``orcha.protocol.wire`` and ``orcha.protocol.managed``); this module defines the plain
data inside them:

* :class:`SubmitRequest`, the checked request of ``submit`` (``to_wire`` gives the dict
  a client sends);
* the items a served stream returns (``get_batch``): output chunks ``("stdout"|"stderr",
  data)`` (with the petition's handle in the middle for ``follow``), and event dicts
  ``{"event": "started"|"progress"|"end"|"detached"|"ended"|..., ...}``;
* inside the service, the frames pushed to a client's event queue (:func:`encode`d event
  dicts and output frames), turned into those items by :func:`item` before they
  leave the service.
"""

from __future__ import annotations

from _struct import Struct  # struct's C module: struct.py costs client start-up

# Re-exported: clients import it from here.
from orcha.protocol.ids import check_id as check_id

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from typing import Any

    from orcha.protocol.schedule import Schedule

STDOUT = b"o"[0]
STDERR = b"e"[0]
#: The stream names of output items, by tag.
STREAM_NAMES = {STDOUT: "stdout", STDERR: "stderr"}
#: The words in a petition's message once the service gave up on its action (it ignored
#: a stop: orcha.service.runner); ``orcha cancel`` looks for them in the record.
ABANDONED = "and was abandoned"

_HANDLE = Struct("!I")


def encode(obj: dict[str, Any]) -> bytes:
    """An event frame (JSON) pushed to a client's event queue inside the service."""
    import json

    return json.dumps(obj, separators=(",", ":")).encode()


def decode(frame: bytes) -> dict[str, Any]:
    """Parse an event frame; ValueError if it is not a JSON object."""
    import json

    try:
        obj = json.loads(frame)
    except RecursionError:
        raise ValueError("the frame is nested too deeply") from None
    if not isinstance(obj, dict):
        raise ValueError("an event must be a JSON object")
    return obj


def output_frame(tag: int, handle: int, data: bytes) -> bytes:
    """An output frame pushed to a follower: tag byte, handle, data."""
    return bytes((tag,)) + _HANDLE.pack(handle) + data


def split_output(frame: bytes) -> tuple[int, int, memoryview]:
    """(tag, handle, data) of an output frame."""
    (handle,) = _HANDLE.unpack_from(frame, 1)
    return frame[0], handle, memoryview(frame)[5:]


def item(frame: bytes) -> tuple[str, int, bytes] | dict[str, Any]:
    """The plain item a pushed frame stands for: ``(stream, handle, data)`` or a dict."""
    if frame[0] in STREAM_NAMES:
        tag, handle, data = split_output(frame)
        return STREAM_NAMES[tag], handle, bytes(data)
    return decode(frame)


class SubmitRequest:
    """A validated ``submit`` request (plain data: strings, numbers, lists, dicts)."""

    __slots__ = (
        "attach", "cwd", "env", "host", "id", "kind", "params", "priority", "schedule",
        "stdin", "user",
    )  # fmt: skip

    def __init__(
        self,
        kind: str,
        id: str | None,
        params: dict[str, Any],
        priority: int | None,
        cwd: str,
        env: dict[str, str],
        attach: bool = True,
        user: str = "",
        host: str = "",
        schedule: Schedule | None = None,
        stdin: bool = False,
    ) -> None:
        self.kind = kind
        self.id = id  # None: the service names it by its record number
        self.params = params
        self.priority = priority
        self.cwd = cwd
        self.env = env
        self.attach = attach  # False: the petition does not end when this client goes
        self.user = user  # who submitted it, from where (for records; informational)
        self.host = host
        self.schedule = schedule  # None: the defaults (orcha.protocol.schedule)
        # The client sends the petition's stdin (operation ``stdin``); else /dev/null.
        self.stdin = stdin

    def to_wire(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__}
        out["schedule"] = self.schedule.to_wire(given=True) if self.schedule is not None else {}
        return out

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> SubmitRequest:
        """Check every field's type; ValueError naming the bad field otherwise."""
        kind = obj.get("kind")
        if not isinstance(kind, str) or not kind:
            raise ValueError("'kind' must be a non-empty string")
        petition_id = None if obj.get("id") is None else check_id(obj.get("id"))
        params = obj.get("params", {})
        if not isinstance(params, dict):
            raise ValueError("'params' must be an object")
        priority = obj.get("priority")
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
            raise ValueError("'priority' must be an integer")
        from orcha.defaults import MAX_PRIORITY

        if priority is not None and not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
            raise ValueError(
                f"'priority' must be between {-MAX_PRIORITY} and {MAX_PRIORITY}, got {priority}"
            )
        cwd = obj.get("cwd", "/")
        if not isinstance(cwd, str) or not cwd.startswith("/"):
            raise ValueError("'cwd' must be an absolute path")
        env = obj.get("env", {})
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise ValueError("'env' must map strings to strings")
        attach = obj.get("attach", True)
        if not isinstance(attach, bool):
            raise ValueError("'attach' must be true or false")
        user, host = obj.get("user", ""), obj.get("host", "")
        if not isinstance(user, str) or not isinstance(host, str):
            raise ValueError("'user' and 'host' must be strings")
        from orcha.protocol.schedule import Schedule

        schedule = Schedule.from_wire(obj.get("schedule"))
        stdin = obj.get("stdin", False)
        if not isinstance(stdin, bool) or (stdin and not attach):
            raise ValueError("'stdin' must be true or false, and true only with 'attach'")
        return cls(
            kind, petition_id, params, priority, cwd, env, attach, user, host, schedule, stdin
        )


class StdinRequest:
    """A validated ``stdin`` request: ``data`` for the stdin of the petition this client
    submitted attached (with ``stdin``) under ``handle``; ``eof``: its input ends there.
    The client sends at most STDIN_WINDOW_BYTES beyond what the petition has read (its
    output stream says, see ``orcha.service.stdin``)."""

    __slots__ = ("data", "eof", "handle")

    def __init__(self, handle: int, data: bytes, eof: bool = False) -> None:
        self.handle = handle
        self.data = data
        self.eof = eof

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__
        )

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> StdinRequest:
        """Check every field's type; ValueError naming the bad field otherwise."""
        handle, data, eof = obj.get("handle"), obj.get("data", b""), obj.get("eof", False)
        if isinstance(handle, bool) or not isinstance(handle, int):
            raise ValueError("'handle' must be the integer the submit's reply gave")
        if not isinstance(data, bytes):
            raise ValueError("'data' must be bytes")
        if not isinstance(eof, bool):
            raise ValueError("'eof' must be true or false")
        return cls(handle, data, eof)
